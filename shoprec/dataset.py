"""What a data set's files mean: raw schema, column roles, funnel, labels, features.

A config's ``dataset:`` section is parsed into a :class:`DatasetConfig`; a config
without one gets :func:`generated`, the description of the shop ``shoprec
generate`` writes. Where the files are and their format stay in ``inputs:``, so
the same description serves any copy of a data set (``--data DIR``).

Every input table has a raw schema (``columns``: type, required, range, allowed
values, timestamp format) that every row is checked against; the registry
features then say which columns become which features.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Dict, Mapping, Optional, Tuple

from transforms import features as F

# Our funnel, in the order its events happen at equal timestamps. 'other' is an
# interaction that is no funnel step (e.g. Taobao's 'fav'): history only.
FUNNEL = ("impression", "click", "add_to_cart", "purchase", "other")
LABEL_MODES = ("impressions", "funnel", "sampled")
DEDUP_POLICIES = ("dead_letter", "quantity")
COLUMN_TYPES = ("string", "int", "float", "timestamp")
# Keys of a parsed event; event columns kept beside them must not collide.
EVENT_KEYS = (F.TIMESTAMP_KEY, F.USER_KEY, F.ITEM_KEY, "event_type")

_PLACEHOLDER = re.compile(r"\{(\w+)(?:\[(-?\d*):(-?\d*)\])?\}")


@dataclasses.dataclass(frozen=True)
class ColumnSpec:
    """One raw column: its type and the values it may hold.

    ``format`` (timestamps): ``auto`` (unix seconds or ISO-8601), ``unix_s``,
    ``unix_ms``, ``iso`` or a ``strptime`` pattern (naive times are UTC).
    """

    name: str
    type: str = "string"
    required: bool = True
    min: Optional[float] = None
    max: Optional[float] = None
    values: Tuple[str, ...] = ()
    format: str = "auto"


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """A raw input table: schema, key column, optional image path pattern.

    ``image_path`` (items) is a column name or a pattern over columns such as
    ``images/{article_id[:3]}/{article_id}.jpg``. ``from_events`` (items): no
    items file; the item table is built from the events' columns.
    """

    columns: Tuple[ColumnSpec, ...] = ()
    key: Optional[str] = None
    image_path: Optional[str] = None
    from_events: bool = False

    def column(self, name: str) -> Optional[ColumnSpec]:
        return next((c for c in self.columns if c.name == name), None)


@dataclasses.dataclass(frozen=True)
class EventsSpec:
    """The event log: schema, role columns, and the mapping to our funnel.

    ``event_type`` names the column holding the event type, mapped through
    ``event_types`` (raw value → funnel stage); without one every row is an
    ``event_value`` event (a purchase-only log). ``time_range`` is the
    ``[start, end)`` outside which a timestamp is out of range.
    """

    columns: Tuple[ColumnSpec, ...] = ()
    user_id: str = "user_id"
    item_id: str = "item_id"
    timestamp: str = "timestamp"
    event_type: Optional[str] = "event_type"
    event_value: Optional[str] = None
    event_types: Tuple[Tuple[str, str], ...] = ()
    time_range: Tuple[str, ...] = ()

    def column(self, name: str) -> Optional[ColumnSpec]:
        return next((c for c in self.columns if c.name == name), None)


@dataclasses.dataclass(frozen=True)
class HistorySpec:
    """Point-in-time history: which funnel events count as interactions.

    ``bucket_s``: events are summarised per user per bucket, so no worker
    holds more than one bucket of a user's events plus N per bucket.
    """

    event_types: Tuple[str, ...] = ("click", "add_to_cart", "purchase", "other")
    bucket_s: int = 86400


@dataclasses.dataclass(frozen=True)
class NegativesSpec:
    """Sampled negatives (label mode ``sampled``): K per positive, seeded.

    Candidates are the items bought in the ``window_days`` days before the
    positive's day, weighted by their purchases there.
    """

    per_positive: int = 4
    window_days: int = 28
    seed: int = 13


@dataclasses.dataclass(frozen=True)
class AnomalySpec:
    """Robot filter: a user with more than ``max_events`` events in one
    ``window_s`` bucket is robotic from that bucket on (0: no filter)."""

    window_s: int = 60
    max_events: int = 0


@dataclasses.dataclass(frozen=True)
class QualitySpec:
    """The job fails when an input's dead-letter fraction exceeds ``max_bad_fraction``.

    ``max_bad_fraction_by_reason`` gives a reason its own limit (a known
    property of a data set); those rows are then not counted in the total.
    """

    max_bad_fraction: float = 0.01
    max_bad_fraction_by_reason: Tuple[Tuple[str, float], ...] = ()


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    name: str = "generated"
    labels: str = "impressions"
    dedup: str = "dead_letter"
    events: EventsSpec = EventsSpec()
    items: TableSpec = TableSpec()
    users: TableSpec = TableSpec()
    features: Tuple[F.Feature, ...] = F.DEFAULT.features
    history: HistorySpec = HistorySpec()
    negatives: NegativesSpec = NegativesSpec()
    anomaly: AnomalySpec = AnomalySpec()
    quality: QualitySpec = QualitySpec()

    @property
    def registry(self) -> F.Registry:
        return F.Registry(self.features)

    @property
    def funnel_of(self) -> Dict[str, str]:
        """Raw event-type value (lower case) → funnel stage."""
        return {raw.lower(): stage for raw, stage in self.events.event_types}

    def event_columns_kept(self) -> Tuple[str, ...]:
        """Event columns parsed events carry: label conditions, item attributes."""
        kept = [f.column for f in self.features if f.kind == F.Kind.LABEL and f.column]
        if self.items.from_events:
            kept += [f.source_column for f in self.features if f.source == F.Source.ITEM]
        return tuple(dict.fromkeys(kept))


def image_path(pattern: str, row: Mapping[str, Any]) -> str:
    """Fills ``pattern``'s ``{column}`` / ``{column[a:b]}`` from a raw row.

    A pattern without braces names the column holding the path.

    Raises:
        KeyError: a placeholder names a column the row lacks.
    """
    if "{" not in pattern:
        value = row.get(pattern)
        return "" if value is None else str(value).strip()

    def fill(match):
        value = str(row[match.group(1)]).strip()
        if match.group(2) is None and match.group(3) is None:
            return value
        start, stop = (int(g) if g else None for g in match.groups()[1:])
        return value[start:stop]

    return _PLACEHOLDER.sub(fill, pattern)


def pattern_columns(pattern: Optional[str]) -> Tuple[str, ...]:
    if not pattern:
        return ()
    if "{" not in pattern:
        return (pattern,)
    return tuple(m.group(1) for m in _PLACEHOLDER.finditer(pattern))


def _columns_from_features(features, source: F.Source) -> Tuple[ColumnSpec, ...]:
    types = {"string": "string", "float32": "float", "int64": "int"}
    out = []
    for f in features:
        if f.source == source and f.kind not in (F.Kind.EMBEDDING, F.Kind.FLAG):
            out.append(ColumnSpec(f.source_column, types[f.dtype], f.required))
    return tuple(out)


def generated(registry: F.Registry = F.DEFAULT) -> DatasetConfig:
    """The data set ``shoprec generate`` writes, described over ``registry``.

    Value ranges stay on the registry features, so a bad price is
    ``out_of_range`` whichever way it is checked.
    """
    funnel = ("impression", "click", "purchase")
    events = EventsSpec(
        columns=(ColumnSpec(F.TIMESTAMP_KEY, "timestamp"), ColumnSpec(F.USER_KEY),
                 ColumnSpec(F.ITEM_KEY), ColumnSpec("event_type")),
        event_types=tuple((s, s) for s in funnel))
    items = TableSpec(
        columns=(ColumnSpec(registry.item_key),)
        + _columns_from_features(registry.features, F.Source.ITEM)
        + (ColumnSpec("image_path", required=False),),
        key=registry.item_key, image_path="image_path")
    users = TableSpec(columns=(ColumnSpec(registry.user_key),)
                      + _columns_from_features(registry.features, F.Source.USER),
                      key=registry.user_key)
    return DatasetConfig(events=events, items=items, users=users, features=registry.features)


def _build(cls, data: Any, where: str, **converted):
    """Builds dataclass ``cls`` from a mapping, rejecting unknown keys."""
    if data is None:
        return cls(**converted)
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    kwargs.update(converted)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"{where}: {err}") from err


def _columns(data: Any, where: str) -> Tuple[ColumnSpec, ...]:
    """``{column: {type: ..., ...}}`` (``{column: type}`` for short) → ColumnSpecs."""
    if data is None:
        return ()
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping of column name to spec")
    out = []
    for name, spec in data.items():
        spec = {"type": spec} if isinstance(spec, str) else dict(spec or {})
        if "values" in spec:
            spec["values"] = [str(v) for v in spec["values"]]
        out.append(_build(ColumnSpec, spec, f"{where}.{name}", name=str(name)))
    return tuple(out)


def _table(cls, data: Any, where: str):
    data = dict(data or {})
    columns = _columns(data.pop("columns", None), f"{where}.columns")
    if cls is EventsSpec:
        types = data.pop("event_types", None) or {}
        if not isinstance(types, dict):
            raise ValueError(f"{where}.event_types: expected a mapping raw value -> funnel stage")
        return _build(cls, data, where, columns=columns,
                      event_types=tuple((str(k), str(v)) for k, v in types.items()))
    return _build(cls, data, where, columns=columns)


def from_dict(data: Any, where: str = "dataset") -> DatasetConfig:
    """Parses a config's ``dataset:`` section and checks it.

    Each part given replaces that part of :func:`generated` whole.

    Raises:
        ValueError: unknown keys, bad values, or parts that do not fit together.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping")
    data = dict(data)
    parts: Dict[str, Any] = {}
    for name, cls in (("events", EventsSpec), ("items", TableSpec), ("users", TableSpec)):
        if name in data:
            parts[name] = _table(cls, data.pop(name), f"{where}.{name}")
    if "features" in data:
        features = []
        for i, spec in enumerate(data.pop("features") or []):
            try:
                features.append(F.feature_from_dict(spec))
            except (TypeError, ValueError, KeyError) as err:
                raise ValueError(f"{where}.features[{i}]: {err}") from err
        parts["features"] = tuple(features)
    for name, cls in (("history", HistorySpec), ("negatives", NegativesSpec),
                      ("anomaly", AnomalySpec)):
        if name in data:
            parts[name] = _build(cls, data.pop(name), f"{where}.{name}")
    if "quality" in data:
        quality = dict(data.pop("quality") or {})
        by_reason = quality.pop("max_bad_fraction_by_reason", None) or {}
        parts["quality"] = _build(QualitySpec, quality, f"{where}.quality",
                                  max_bad_fraction_by_reason=tuple(
                                      (str(k), float(v)) for k, v in by_reason.items()))
    fields = {f.name for f in dataclasses.fields(DatasetConfig)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    # Parts not given are the generated shop's, so `dataset: {quality: ...}` tunes the demo.
    dataset = dataclasses.replace(generated(), **data, **parts)
    from shoprec.dataset_check import check  # Imported here: it imports this module.

    check(dataset, where)
    return dataset
