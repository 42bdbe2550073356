"""What a data set's files mean: raw schema, column roles, funnel, labels, features.

A config's ``dataset:`` section is parsed into a :class:`DatasetConfig` by
``shoprec.core.dataset_yaml``; a config without one gets the description of
the shop ``shoprec generate`` writes (``shoprec.core.generated_shop``). Where
the files are and their format stay in ``inputs:``, so the same description
serves any copy of a data set (``--data DIR``).

Every input table has a raw schema (``columns``: type, required, range, allowed
values, timestamp format) that every row is checked against; the registry
features then say which columns become which features.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Optional, Tuple

from shoprec.core import registry as F
from shoprec.core.sections import ConfigError

# Our funnel, in the order its events happen at equal timestamps. 'other' is an
# interaction that is no funnel step (e.g. Taobao's 'fav'): history only.
FUNNEL = ("impression", "click", "add_to_cart", "purchase", "other")
LABEL_MODES = ("impressions", "funnel", "sampled", "candidates")
DEDUP_POLICIES = ("dead_letter", "quantity")
COLUMN_TYPES = ("string", "int", "float", "timestamp")
# Keys of a parsed event; event columns kept beside them must not collide.
EVENT_KEYS = (F.TIMESTAMP_KEY, F.USER_KEY, F.ITEM_KEY, "event_type")

def is_missing(value: Any) -> bool:
    """Blank strings, None and NaN (Parquet nulls) all mean 'no value'."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and not value.strip()


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
class CandidatesSpec:
    """Label mode ``candidates``: the ranker learns from the lists it will rank.

    At each cut-off, every user with a positive of any event label in the
    ``label_days`` that follow gets the candidates ``recommend`` would build
    for them from the events strictly before it (``recommend.sources``); a
    candidate's label is whether that user had the label's event with it in
    those days. Train cut-offs are ``cutoffs`` of them, ``every_days`` apart,
    the latest ``label_days`` before the eval start (so no train label reads
    the eval window); eval and test have one each, at their split's start,
    labelled up to the next split's start (or the log's end).
    """

    every_days: int = 7
    cutoffs: int = 8
    label_days: int = 7


@dataclasses.dataclass(frozen=True)
class AnomalySpec:
    """Robot filter: a user with more than ``max_events`` events in one
    ``window_s`` bucket is robotic from that bucket on (0: no filter).

    ``pass_flagged``: robotic users' events are kept (counted, not dropped),
    so a model can learn bot detection from them as labelled examples.
    """

    window_s: int = 60
    max_events: int = 0
    pass_flagged: bool = False


@dataclasses.dataclass(frozen=True)
class QualitySpec:
    """The job fails when an input's dead-letter fraction exceeds ``max_bad_fraction``.

    ``max_bad_fraction_by_reason`` gives a reason its own limit (a known
    property of a data set); those rows are then not counted in the total.
    An input with fewer than ``min_rows`` data rows, or a split with fewer
    examples, fails the stage too: an empty day is an error, not a result.
    """

    max_bad_fraction: float = 0.01
    max_bad_fraction_by_reason: Tuple[Tuple[str, float], ...] = ()
    min_rows: int = 1


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    """A data set: its tables' raw schemas, label mode, features and policies.

    ``features`` has no default: a description always names its own registry.
    """

    features: Tuple[F.Feature, ...]
    name: str = "generated"
    labels: str = "impressions"
    dedup: str = "dead_letter"
    events: EventsSpec = EventsSpec()
    items: TableSpec = TableSpec()
    users: TableSpec = TableSpec()
    history: HistorySpec = HistorySpec()
    negatives: NegativesSpec = NegativesSpec()
    candidates: CandidatesSpec = CandidatesSpec()
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
        kept = [f.column for f in self.features
                if f.kind == F.Kind.LABEL and f.column and f.source == F.Source.EVENT]
        if self.items.from_events:
            kept += [f.source_column for f in self.features if f.source == F.Source.ITEM]
        return tuple(dict.fromkeys(kept))


def check(dataset: DatasetConfig, where: str = "dataset") -> None:
    """Checks that the parts of a data set description fit together.

    Raises:
        ConfigError: the first misfit found, naming the key.
    """
    try:
        registry = dataset.registry
    except ValueError as err:
        raise ConfigError(f"{where}.features: {err}") from err
    if dataset.labels not in LABEL_MODES:
        raise ConfigError(f"{where}.labels must be one of {LABEL_MODES}")
    if dataset.dedup not in DEDUP_POLICIES:
        raise ConfigError(f"{where}.dedup must be one of {DEDUP_POLICIES}")
    events = dataset.events
    for table in (events, dataset.items, dataset.users):
        for column in table.columns:
            if column.type not in COLUMN_TYPES:
                raise ConfigError(f"{where}: column {column.name} has type {column.type!r}; "
                                 f"known: {COLUMN_TYPES}")
    for role in ("user_id", "item_id", "timestamp") + (("event_type",) if events.event_type
                                                        else ()):
        column = getattr(events, role)
        if events.column(column) is None:
            raise ConfigError(f"{where}.events: {role} column {column!r} is not in its columns")
    if events.column(events.timestamp).type != "timestamp":
        raise ConfigError(f"{where}.events: column {events.timestamp!r} must be a timestamp")
    stages = set(events.event_types and dict(events.event_types).values())
    if not events.event_type:
        stages = {events.event_value}
    if not stages or not stages <= set(FUNNEL):
        raise ConfigError(f"{where}.events: event types must map to {FUNNEL}, got {sorted(stages)}")
    if len(events.time_range) not in (0, 2):
        raise ConfigError(f"{where}.events.time_range: expected [start, end]")
    for column in dataset.event_columns_kept():
        if column in EVENT_KEYS or events.column(column) is None:
            raise ConfigError(f"{where}: event column {column!r} is not a kept column of events")
    sources = {F.Source.ITEM: dataset.items, F.Source.USER: dataset.users}
    for f in registry.features:
        table = sources.get(f.source)
        # The photo embedding and its flag come from `shoprec embed`, not a column.
        derived = f.kind in (F.Kind.EMBEDDING, F.Kind.FLAG) and f.source == F.Source.ITEM
        if table is None or derived or table.from_events:
            continue
        if table.column(f.source_column) is None:
            raise ConfigError(f"{where}: feature {f.name} reads column {f.source_column!r}, "
                             f"which its table's columns do not declare")
        if f.event_type and f.event_type not in FUNNEL:
            raise ConfigError(f"{where}: feature {f.name}: event_type {f.event_type!r}")
    for f in registry.event_labels() + registry.of_source(F.Source.NEXT):
        if f.event_type not in stages:
            raise ConfigError(f"{where}: label {f.name} counts {f.event_type!r} events, which "
                             f"the events never map to ({sorted(stages)})")
    if registry.embedding_feature() is not None and not dataset.items.image_path:
        raise ConfigError(f"{where}.items.image_path: the registry has a photo embedding "
                         "feature, so items need photos")
    if dataset.labels == "sampled":
        if dataset.negatives.per_positive < 1:
            raise ConfigError(f"{where}.negatives.per_positive must be >= 1")
        if len({f.event_type for f in registry.event_labels()}) != 1:
            raise ConfigError(f"{where}: sampled labels must all count one funnel event")
    spec = dataset.candidates
    if min(spec.every_days, spec.cutoffs, spec.label_days) < 1:
        raise ConfigError(f"{where}.candidates: every_days, cutoffs and label_days must be >= 1")
    for f in registry.candidate_features():
        if f.event_type and f.event_type not in FUNNEL:
            raise ConfigError(f"{where}: candidate feature {f.name} counts {f.event_type!r}; "
                             f"known: {FUNNEL}")
    for f in registry.aggregates():
        counted = {f.event_type, f.ratio_to} - {None}
        if not counted <= set(FUNNEL):
            raise ConfigError(f"{where}: aggregate {f.name} counts {sorted(counted)}; "
                             f"known: {FUNNEL}")
        if (f not in registry.item_aggregates()
                and not registry.of_source(F.Source.HISTORY)):
            raise ConfigError(f"{where}: aggregate {f.name} is keyed by the user, so it is "
                             "served from the history table: the registry needs history "
                             "features")
    unknown = set(dataset.history.event_types) - set(FUNNEL)
    if unknown:
        raise ConfigError(f"{where}.history.event_types: unknown {sorted(unknown)}")
