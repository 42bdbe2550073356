"""The feature registry: one frozen record per feature, gathered in a frozen ``Registry``.

Ingest validates and joins rows with it, ``preprocessing_fn`` featurizes from
it, the trainer builds its inputs and heads from it, and scoring builds raw
examples from it; a DERIVED feature (a cross, a bucketized numeric) has no raw
value and exists only from ``preprocessing_fn`` on. Every stage receives the
registry it works with (a run's is ``config.registry``); nothing keeps a
parallel list, and no function falls back to a registry of its own: the
generated shop's is ``shoprec.core.generated_shop.REGISTRY``, and a real data
set declares its own in YAML (see ``shoprec.core.dataset``).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Dict, Iterable, Optional, Tuple


class Kind(str, enum.Enum):
    """How a feature is featurized and consumed by the model."""

    ID = "id"  # High-cardinality identifier: vocabulary + OOV buckets + embedding.
    CATEGORICAL = "categorical"  # Low-cardinality string: vocabulary + embedding.
    NUMERIC = "numeric"  # Float: z-score (optionally after log1p).
    # Fixed-width float vector computed once per item and joined in by ingest
    # (the image encoder's embedding of the item photo): z-scored per dimension.
    EMBEDDING = "embedding"
    FLAG = "flag"  # 0/1 integer passed through as float.
    LABEL = "label"  # 0/1 integer target; never a model input.
    # Variable-length list of string ids (a user's recent items or categories):
    # vocabulary indices padded to ``max_length`` with -1, mean-pooled embeddings.
    HISTORY = "history"
    # Very high-cardinality string: hashed into ``hash_buckets``, no vocabulary pass.
    HASHED = "hashed"
    # Two or more ID / CATEGORICAL / HASHED raw values joined by CROSS_SEPARATOR
    # and hashed into ``hash_buckets``; DERIVED.
    CROSS = "cross"
    # A NUMERIC's raw value as a bucket index: explicit ``boundaries`` or
    # ``num_buckets`` quantiles of train; DERIVED.
    BUCKETIZED = "bucketized"
    # Free text: lower-cased tokens split on non-alphanumerics, vocabulary
    # (``top_k`` + OOV) indices padded to ``max_length`` with -1, mean-pooled.
    TEXT = "text"
    # 1.0 when the raw value of the one ID feature it is derived from (an item
    # or user key) falls in the held-out ``fraction`` of a fixed hash
    # (``transforms.holdout``); DERIVED, never a model input. A task naming it
    # as ``holdout`` trains only on the other keys and is evaluated on these.
    HOLDOUT = "holdout"


class Source(str, enum.Enum):
    """The table a feature's raw value comes from."""

    EVENT = "event"
    USER = "user"
    ITEM = "item"
    # Derived by ingest from the user's events strictly before the example.
    HISTORY = "history"
    # No raw value of its own: computed in preprocessing_fn from ``derived_from``.
    DERIVED = "derived"
    # A point-in-time count or smoothed ratio per ``aggregate_key``, computed by
    # ingest from every user's events strictly before the example.
    AGGREGATE = "aggregate"
    # Derived by ingest from the user's next ``event_type`` event after the
    # example (on another item): a target only, never a model input. A
    # CATEGORICAL holds that event's item's ``history_of`` attribute (in that
    # feature's vocabulary; ``default`` when there is none), a LABEL is 1 when
    # there is one (the mask of a task on the CATEGORICAL).
    NEXT = "next"
    # A candidate's own signal at the cut-off it was generated at (which
    # sources proposed it and how high, the user's own events on it, the item's
    # recent trend): computed by the candidate sources (``pipelines.sources``)
    # from events strictly before the cut-off, in ingest and recommend alike.
    CANDIDATE = "candidate"


# Joins a cross's raw values before hashing: the ASCII unit separator, which no
# id or category holds, so ("a b", "c") and ("a", "b c") never share a string.
CROSS_SEPARATOR = "\x1f"
# Kinds hashed into ``hash_buckets``: no vocabulary to analyse.
HASHED_KINDS = (Kind.HASHED, Kind.CROSS)
# Kinds a cross may join: single strings read from a table.
CROSSABLE_KINDS = (Kind.ID, Kind.CATEGORICAL, Kind.HASHED)
# A CANDIDATE feature's ``signal``: ``<source>.rank`` (1 / its rank in that
# source's list, 0 when the source did not propose it), ``<source>.score``
# (the source's own score of the item, 0 where it has none), or one of these,
# over ``event_type`` events strictly before the cut-off: the user's on the
# item (``pair.count``), days since the user's last one (``pair.days_since``),
# the item's in the ``window_days`` before (``item.count``; 0: all time), their
# ratio to the window before that (``item.trend``, both counts + 1), days since
# the item's first one (``item.days_since_first``). Where there is no such
# event, a ``days_since`` signal is the feature's ``default``.
CANDIDATE_RANK, CANDIDATE_SCORE = "rank", "score"
PAIR_SIGNALS = ("pair.count", "pair.days_since")
ITEM_SIGNALS = ("item.count", "item.trend", "item.days_since_first")
DAYS_SIGNALS = ("pair.days_since", "item.days_since_first")


@dataclasses.dataclass(frozen=True)
class Feature:
    """One feature, as every stage sees it.

    Attributes:
        name: Feature key in raw and transformed tf.Examples.
        source: Table the raw value is read from.
        kind: Featurization and model treatment.
        column: Column name in the source file (defaults to ``name``). For a
            LABEL, an event column that must hold one of ``positive_values``.
        required: Whether a row missing this value is a dead letter.
        oov_buckets: Out-of-vocabulary buckets (ID / CATEGORICAL).
        top_k: Cap on vocabulary size, most frequent first (None: no cap).
        embedding_dim: Embedding width in the model (ID / CATEGORICAL and the
            other indexed kinds); for an EMBEDDING, the width of its learned
            projection.
        min_value: Inclusive lower bound for NUMERIC validation.
        max_value: Inclusive upper bound for NUMERIC validation.
        log: Apply log1p before the z-score (heavy-tailed numerics).
        default: Value used when an optional raw value is missing.
        width: EMBEDDING: floats per example (the embedder's output width).
        vocabulary: Another ID / CATEGORICAL feature whose vocabulary and
            embedding table this one shares (HISTORY lists of item ids share
            ``item_id``'s); None: its own.
        history_of: HISTORY: the item key or item feature whose values the list
            holds. NUMERIC from HISTORY: how often the example's own value of
            that feature occurs in the user's history list.
        max_length: HISTORY: the most recent entries kept (N). TEXT: the
            leading tokens kept.
        event_type: LABEL: the funnel event that makes it positive. NUMERIC
            from HISTORY: the funnel event counted before the example.
        positive_values: LABEL: values of ``column`` that make it positive.
        hash_buckets: HASHED / CROSS: number of hash buckets (the embedding
            table's rows).
        derived_from: DERIVED: the features whose raw values it is computed
            from: two or more to CROSS, one NUMERIC to BUCKETIZE, one ID to
            HOLDOUT.
        boundaries: BUCKETIZED: ascending bucket edges; the index is the number
            of edges <= the value (``tft.apply_buckets``).
        num_buckets: BUCKETIZED without boundaries: quantile buckets of the
            train split (``tft.bucketize``).
        aggregate_key: AGGREGATE: what the events are counted per: the user
            key, the item key, an item feature, or the user key and an item
            feature (in that order).
        window_days: AGGREGATE: the example's UTC day so far and the
            ``window_days - 1`` whole days before it; 0: all time.
        ratio_to: AGGREGATE: the funnel event of the denominator; the value is
            then ``(n + smoothing * p) / (d + smoothing)`` with ``p`` the rate
            of all events on the days before the example's day.
        smoothing: AGGREGATE ratios and target encodings: the pseudo-count of
            the additive smoothing toward the global rate.
        target: DERIVED NUMERIC: the LABEL whose train rate per value of the
            one ``derived_from`` feature it encodes (target encoding).
        folds: Target encoding: rows are split by user into this many folds
            and a row's rate leaves out its own fold's rows.
        fraction: HOLDOUT: the share of the key's values held out, in (0, 1).
        signal: CANDIDATE: what the value measures (see ``CANDIDATE_RANK`` and
            ``PAIR_SIGNALS`` / ``ITEM_SIGNALS`` above).
    """

    name: str
    source: Source
    kind: Kind
    column: Optional[str] = None
    required: bool = True
    oov_buckets: int = 1
    top_k: Optional[int] = None
    embedding_dim: int = 8
    min_value: Optional[float] = None
    max_value: Optional[float] = None
    log: bool = False
    default: object = None
    width: int = 0
    vocabulary: Optional[str] = None
    history_of: Optional[str] = None
    max_length: int = 0
    event_type: Optional[str] = None
    positive_values: Tuple[str, ...] = ()
    hash_buckets: int = 0
    derived_from: Tuple[str, ...] = ()
    boundaries: Tuple[float, ...] = ()
    num_buckets: int = 0
    aggregate_key: Tuple[str, ...] = ()
    window_days: int = 0
    ratio_to: Optional[str] = None
    smoothing: float = 0.0
    target: Optional[str] = None
    folds: int = 0
    fraction: float = 0.0
    signal: Optional[str] = None

    @property
    def source_column(self) -> str:
        return self.column or self.name

    @property
    def dtype(self) -> str:
        """Raw tf.Example dtype: 'string', 'int64' or 'float32'."""
        if self.kind in (Kind.ID, Kind.CATEGORICAL, Kind.HISTORY, Kind.HASHED, Kind.TEXT):
            return "string"
        if self.kind in (Kind.FLAG, Kind.LABEL, Kind.CROSS, Kind.BUCKETIZED, Kind.HOLDOUT):
            # CROSS and BUCKETIZED have no raw value: int64 is their bucket index.
            return "int64"
        return "float32"

    @property
    def vocab_filename(self) -> str:
        return f"vocab_{self.vocabulary or self.name}"

    @property
    def shape(self) -> Tuple[int, ...]:
        """Per-example shape of a fixed-length raw and transformed value."""
        return (self.width,) if self.kind == Kind.EMBEDDING else ()

    @property
    def index_size(self) -> Optional[int]:
        """Rows of the embedding table the registry alone fixes: hashed,
        crossed and bucketized features; None for the others."""
        if self.kind in HASHED_KINDS:
            return self.hash_buckets
        if self.kind == Kind.BUCKETIZED:
            return len(self.boundaries) + 1 if self.boundaries else self.num_buckets
        return None

    @property
    def is_target(self) -> bool:
        """Something the model never reads: a LABEL, a NEXT feature or a HOLDOUT mask."""
        return self.kind in (Kind.LABEL, Kind.HOLDOUT) or self.source == Source.NEXT

    @property
    def is_list(self) -> bool:
        """Variable-length in raw examples (a list, possibly empty)."""
        return self.kind == Kind.HISTORY


# Suffix of the history-table column that holds one user x item-attribute
# aggregate's state after the user's last event: every attribute value's value
# (pipelines.aggregates.pair_state). Not a model input.
PAIR_STATE_SUFFIX = "__by_value"

# A list feature fed as columns (the exported ``serving_columns``): its flat
# values under its name, its rows' lengths under this suffix.
LENGTHS_SUFFIX = "__lengths"

# Canonical keys of the rows ingest passes between stages.
USER_KEY = "user_id"
ITEM_KEY = "item_id"
# Raw-example metadata carried for splitting, sampling and scoring, never a model input.
TIMESTAMP_KEY = "timestamp"
SAMPLED_KEY = "sampled"


@dataclasses.dataclass(frozen=True)
class Registry:
    """The features of one data set, and the keys its rows are joined on.

    Attributes:
        features: One record per feature, in example order.
        user_key: Name of the user id feature (an ID from the event).
        item_key: Name of the item id feature (an ID from the event).
        timestamp_key: Raw-example metadata: unix seconds of the example.
        sampled_key: Raw-example metadata: 1 for a sampled negative.
    """

    features: Tuple[Feature, ...]
    user_key: str = USER_KEY
    item_key: str = ITEM_KEY
    timestamp_key: str = TIMESTAMP_KEY
    sampled_key: str = SAMPLED_KEY

    def __post_init__(self):
        by_name: Dict[str, Feature] = {}
        for f in self.features:
            if f.name in by_name:
                raise ValueError(f"registry: feature {f.name!r} declared twice")
            by_name[f.name] = f
        # Not a field: equality and hashing stay those of the feature tuple.
        object.__setattr__(self, "_by_name", by_name)
        # Looked up per row by the row assembler: computed once.
        by_source: Dict[Source, Tuple[Feature, ...]] = {}
        for f in self.features:
            by_source[f.source] = by_source.get(f.source, ()) + (f,)
        object.__setattr__(self, "_by_source", by_source)
        aggregates = by_source.get(Source.AGGREGATE, ())
        # Looked up per row too (the row assembler, history): computed once.
        object.__setattr__(self, "_groups", {
            "user_aggregates": tuple(f for f in aggregates
                                     if f.aggregate_key == (self.user_key,)),
            "item_aggregates": tuple(f for f in aggregates
                                     if self.user_key not in f.aggregate_key),
            "pair_aggregates": tuple(f for f in aggregates if len(f.aggregate_key) > 1
                                     and self.user_key in f.aggregate_key),
            "history_lists": tuple(f for f in by_source.get(Source.HISTORY, ())
                                   if f.kind == Kind.HISTORY)})
        # Side-table columns that are no feature: each pair aggregate's state.
        states: Dict[str, Feature] = {}
        for f in self.features:
            if len(f.aggregate_key) > 1 and self.user_key in f.aggregate_key:
                name = f.name + PAIR_STATE_SUFFIX
                if name in by_name:
                    raise ValueError(f"registry: feature {name!r} is the state column of "
                                     f"aggregate {f.name}")
                states[name] = Feature(name, Source.HISTORY, Kind.CATEGORICAL)
        object.__setattr__(self, "_states", states)
        for key in (self.user_key, self.item_key):
            if key not in by_name or by_name[key].kind != Kind.ID:
                raise ValueError(f"registry: key {key!r} must be an ID feature")
        embeddings = self.of_kind(Kind.EMBEDDING)
        if len(embeddings) > 1:
            raise ValueError("registry: at most one EMBEDDING feature")
        if embeddings and (embeddings[0].source != Source.ITEM or embeddings[0].width < 1):
            raise ValueError(f"registry: embedding {embeddings[0].name} must come from the "
                             "item table and have width >= 1")
        for f in self.features:
            self._check(f, by_name)
            self._check_indexed(f, by_name)
            self._check_aggregate(f, by_name)
            self._check_candidate(f)

    def _check(self, f: Feature, by_name: Dict[str, Feature]) -> None:
        if f.vocabulary is not None:
            owner = by_name.get(f.vocabulary)
            if owner is None or owner.kind not in (Kind.ID, Kind.CATEGORICAL) or owner.vocabulary:
                raise ValueError(f"registry: {f.name} shares the vocabulary of {f.vocabulary!r}, "
                                 "which is not an ID / CATEGORICAL feature with its own")
        if f.source == Source.HISTORY:
            if f.kind == Kind.HISTORY and f.max_length < 1:
                raise ValueError(f"registry: history feature {f.name} needs max_length >= 1")
            if f.kind not in (Kind.HISTORY, Kind.NUMERIC):
                raise ValueError(f"registry: history feature {f.name} must be history or numeric")
            if f.history_of is not None and not (
                    f.history_of == self.item_key
                    or getattr(by_name.get(f.history_of), "source", None) == Source.ITEM):
                raise ValueError(f"registry: {f.name}.history_of must name the item key or "
                                 f"an item feature, not {f.history_of!r}")
            if f.kind == Kind.NUMERIC and (f.history_of is None) == (f.event_type is None):
                raise ValueError(f"registry: history count {f.name} needs exactly one of "
                                 "event_type or history_of")
            if f.kind == Kind.NUMERIC and f.history_of and not any(
                    g.kind == Kind.HISTORY and g.history_of == f.history_of
                    for g in self.features):
                raise ValueError(f"registry: {f.name} counts matches in a history list of "
                                 f"{f.history_of!r}, and there is none")
        elif f.kind == Kind.HISTORY:
            raise ValueError(f"registry: {f.name} is a history list but not from history")
        if f.source == Source.NEXT:
            attribute = by_name.get(f.history_of or "")
            if f.event_type is None or f.kind not in (Kind.CATEGORICAL, Kind.LABEL):
                raise ValueError(f"registry: next-event feature {f.name} must be categorical "
                                 "or a label, with an event_type")
            if f.kind == Kind.CATEGORICAL and (
                    attribute is None or attribute.source != Source.ITEM
                    or attribute.kind != Kind.CATEGORICAL or f.vocabulary != f.history_of
                    or not isinstance(f.default, str)):
                raise ValueError(f"registry: next-event feature {f.name} needs history_of and "
                                 "vocabulary naming one categorical item feature, and a "
                                 "string default")

    def _check_indexed(self, f: Feature, by_name: Dict[str, Feature]) -> None:
        """Hashed, text, cross and bucketized features, and what may be DERIVED."""
        where = f"registry: {f.kind.value} feature {f.name}"
        derived_kinds = (Kind.CROSS, Kind.BUCKETIZED, Kind.HOLDOUT)
        if (f.source == Source.DERIVED) != (f.kind in derived_kinds or f.target is not None):
            raise ValueError(f"{where}: cross, bucketized, hold-out and target-encoded "
                             "features, and only they, are from source 'derived'")
        if f.derived_from and f.source != Source.DERIVED:
            raise ValueError(f"{where} sets derived_from but is not derived")
        if f.vocabulary and f.kind in (Kind.HASHED, Kind.TEXT, Kind.CROSS, Kind.BUCKETIZED):
            raise ValueError(f"{where} cannot share a vocabulary")
        if f.kind in HASHED_KINDS and f.hash_buckets < 1:
            raise ValueError(f"{where} needs hash_buckets >= 1")
        # A missing optional string is written as its default: None would become "None".
        if f.kind in (Kind.HASHED, Kind.TEXT) and not f.required and not isinstance(
                f.default, str):
            raise ValueError(f"{where} is optional and needs a string default (e.g. '')")
        if f.kind == Kind.TEXT and (f.max_length < 1 or not f.top_k or f.top_k < 1):
            raise ValueError(f"{where} needs max_length >= 1 and a top_k vocabulary cap")
        inputs = [by_name.get(n) for n in f.derived_from]
        if (f.kind == Kind.HOLDOUT) != (f.fraction != 0.0):
            raise ValueError(f"{where}: hold-out features, and only they, set fraction")
        if f.kind == Kind.HOLDOUT and (
                len(inputs) != 1 or inputs[0] is None or inputs[0].kind != Kind.ID
                or isinstance(f.fraction, bool) or not isinstance(f.fraction, (int, float))
                or not 0.0 < f.fraction < 1.0):
            raise ValueError(f"{where} must hold out a fraction in (0, 1) of one ID "
                             f"feature's values, not {f.fraction!r} of {list(f.derived_from)}")
        if f.kind == Kind.CROSS and (
                len(inputs) < 2 or len(set(f.derived_from)) != len(inputs)
                or any(g is None or g.kind not in CROSSABLE_KINDS for g in inputs)):
            raise ValueError(f"{where} must cross two or more distinct ID / CATEGORICAL / "
                             f"HASHED features, not {list(f.derived_from)}")
        if f.kind == Kind.BUCKETIZED:
            if len(inputs) != 1 or inputs[0] is None or inputs[0].kind != Kind.NUMERIC:
                raise ValueError(f"{where} must bucketize one NUMERIC feature, "
                                 f"not {list(f.derived_from)}")
            if bool(f.boundaries) == bool(f.num_buckets):
                raise ValueError(f"{where} needs exactly one of boundaries or num_buckets")
            if not f.boundaries and f.num_buckets < 2:
                raise ValueError(f"{where} needs num_buckets >= 2")
            if any(a >= b for a, b in zip(f.boundaries, f.boundaries[1:])):
                raise ValueError(f"{where}: boundaries must be strictly ascending")

    def _check_aggregate(self, f: Feature, by_name: Dict[str, Feature]) -> None:
        """Point-in-time aggregates and target encodings."""
        where = f"registry: {f.kind.value} feature {f.name}"
        if (f.source == Source.AGGREGATE) != bool(f.aggregate_key):
            raise ValueError(f"{where}: aggregates, and only they, set aggregate_key")
        if f.source != Source.AGGREGATE and (f.ratio_to or (
                f.window_days and f.source != Source.CANDIDATE)):
            raise ValueError(f"{where}: window_days and ratio_to are for aggregates "
                             "(window_days for candidate signals too)")
        if f.source == Source.AGGREGATE:
            key = list(f.aggregate_key)
            attributes = key[1:] if key[0] == self.user_key else key
            if (f.kind != Kind.NUMERIC or not f.event_type or len(attributes) > 1
                    or not all(a == self.item_key
                               or getattr(by_name.get(a), "source", None) == Source.ITEM
                               for a in attributes)):
                raise ValueError(f"{where}: an aggregate is numeric, counts one event_type "
                                 "and is keyed by the user key, the item key or an item "
                                 "feature, or the user key and one of those, not "
                                 f"{key}")
            if f.window_days < 0:
                raise ValueError(f"{where} needs window_days >= 0 (0: all time)")
            if f.ratio_to and f.smoothing <= 0:
                raise ValueError(f"{where}: a ratio needs smoothing > 0")
        if f.target is not None:
            source = by_name.get(f.derived_from[0]) if len(f.derived_from) == 1 else None
            label = by_name.get(f.target)
            if (f.kind != Kind.NUMERIC or f.source != Source.DERIVED or source is None
                    or source.kind not in CROSSABLE_KINDS or label is None
                    or label.kind != Kind.LABEL):
                raise ValueError(f"{where}: a target encoding is a derived numeric of one "
                                 "ID / CATEGORICAL / HASHED feature and names a label")
            if f.smoothing <= 0 or f.folds < 2:
                raise ValueError(f"{where}: a target encoding needs smoothing > 0 and "
                                 "folds >= 2")

    @staticmethod
    def _check_candidate(f: Feature) -> None:
        """Candidate signals: a numeric of a known ``signal`` with what it needs."""
        where = f"registry: {f.kind.value} feature {f.name}"
        if (f.source == Source.CANDIDATE) != (f.signal is not None):
            raise ValueError(f"{where}: candidate features, and only they, set signal")
        if f.source != Source.CANDIDATE:
            return
        head, _, tail = f.signal.partition(".")
        per_source = tail in (CANDIDATE_RANK, CANDIDATE_SCORE) and head not in ("pair", "item")
        if f.kind != Kind.NUMERIC or not (per_source or f.signal in PAIR_SIGNALS + ITEM_SIGNALS):
            raise ValueError(f"{where}: a candidate feature is numeric with signal "
                             f"<source>.rank, <source>.score, one of "
                             f"{list(PAIR_SIGNALS + ITEM_SIGNALS)}; not {f.signal!r}")
        if f.signal in PAIR_SIGNALS + ITEM_SIGNALS and not f.event_type:
            raise ValueError(f"{where}: signal {f.signal} reads one event_type")
        if f.signal == "item.trend" and f.window_days < 1:
            raise ValueError(f"{where}: signal item.trend needs window_days >= 1")
        if f.signal in DAYS_SIGNALS and (isinstance(f.default, bool) or not isinstance(
                f.default, (int, float)) or f.default < 0):
            raise ValueError(f"{where}: signal {f.signal} needs a default >= 0: the days "
                             "given where there is no such event")

    def candidate_features(self) -> Tuple[Feature, ...]:
        return self.of_source(Source.CANDIDATE)

    def aggregates(self) -> Tuple[Feature, ...]:
        return self.of_source(Source.AGGREGATE)

    def user_aggregates(self) -> Tuple[Feature, ...]:
        """Aggregates keyed by the user alone: served from the history table."""
        return self._groups["user_aggregates"]  # type: ignore[attr-defined]

    def item_aggregates(self) -> Tuple[Feature, ...]:
        """Aggregates keyed by the item or an item feature: served from the item table."""
        return self._groups["item_aggregates"]  # type: ignore[attr-defined]

    def pair_aggregates(self) -> Tuple[Feature, ...]:
        """Aggregates keyed by the user and an item attribute: served from the user's
        history row (a state per attribute value), looked up per candidate."""
        return self._groups["pair_aggregates"]  # type: ignore[attr-defined]

    def pair_state_name(self, feature: Feature) -> str:
        """The history-table column of a pair aggregate's state."""
        return feature.name + PAIR_STATE_SUFFIX

    def column(self, name: str) -> Feature:
        """The feature, or side-table state column, of a name (what encoders look up).

        Raises:
            KeyError: neither.
        """
        found = self._by_name.get(name)  # type: ignore[attr-defined]
        return found if found is not None else self._states[name]  # type: ignore[attr-defined]

    def target_encodings(self) -> Tuple[Feature, ...]:
        return tuple(f for f in self.of_source(Source.DERIVED) if f.target)

    @property
    def by_name(self) -> Dict[str, Feature]:
        return self._by_name  # type: ignore[attr-defined]

    def __getitem__(self, name: str) -> Feature:
        return self.by_name[name]

    def of_kind(self, *kinds: Kind) -> Tuple[Feature, ...]:
        return tuple(f for f in self.features if f.kind in kinds)

    def of_source(self, source: Source) -> Tuple[Feature, ...]:
        # Enum() costs microseconds, and the row assembler asks per row.
        key = source if isinstance(source, Source) else Source(source)
        return self._by_source.get(key, ())  # type: ignore[attr-defined]

    def labels(self) -> Tuple[Feature, ...]:
        return self.of_kind(Kind.LABEL)

    def holdouts(self) -> Tuple[Feature, ...]:
        return self.of_kind(Kind.HOLDOUT)

    def event_labels(self) -> Tuple[Feature, ...]:
        """Labels the example's own funnel events set (not a user table's, not NEXT ones)."""
        return tuple(f for f in self.labels() if f.source == Source.EVENT)

    def inputs(self) -> Tuple[Feature, ...]:
        """Features the model consumes (everything but labels and NEXT targets)."""
        return tuple(f for f in self.features if not f.is_target)

    def embedding_feature(self) -> Optional[Feature]:
        """The item EMBEDDING feature, or None for a data set without photo embeddings."""
        embeddings = self.of_kind(Kind.EMBEDDING)
        return embeddings[0] if embeddings else None

    def history_lists(self) -> Tuple[Feature, ...]:
        return self._groups["history_lists"]  # type: ignore[attr-defined]

    def example_names(self, include_labels: bool = True) -> list:
        """Names a full raw example carries, in registry order (derived ones have no value)."""
        return [f.name for f in self.features if f.source != Source.DERIVED
                and (include_labels or not f.is_target)]

    def source_names(self, source: Source) -> list:
        """Names of one side table (items or users), key first."""
        key = self.item_key if source == Source.ITEM else self.user_key
        return [key] + [f.name for f in self.of_source(source)]

    def query_names(self) -> list:
        """What the retrieval query (user) tower reads: the user's row and history lists."""
        return self.source_names(Source.USER) + [f.name for f in self.history_lists()]

    def candidate_names(self) -> list:
        """What the retrieval candidate (item) tower reads: the item's row."""
        return self.source_names(Source.ITEM)

    def history_table_names(self) -> list:
        """Names of the history table (user key first): each user's lists and counts.

        Match counts are left out: they depend on the item scored, so scoring
        sets them per pair from these lists.
        """
        return [self.user_key] + [f.name for f in self.of_source(Source.HISTORY)
                                  if f.kind == Kind.HISTORY or f.event_type] + [
            f.name for f in self.user_aggregates()] + [
            self.pair_state_name(f) for f in self.pair_aggregates()]

    def item_table_names(self) -> list:
        """Names of ingest's item table: the item row, then each item aggregate's
        state after the log's last event (what scoring reads)."""
        return self.source_names(Source.ITEM) + [f.name for f in self.item_aggregates()]

    def at_eval_history_names(self) -> list:
        """Names of the history table at the eval start: no pair aggregate state
        (ingest computes it after the last event only)."""
        states = {self.pair_state_name(f) for f in self.pair_aggregates()}
        return [n for n in self.history_table_names() if n not in states]

    def table_spec(self, names: Iterable[str]) -> dict:
        """``tf.io.parse_example`` spec of columns of ingest's tables (:meth:`column`).

        Raises:
            KeyError: a name is neither a raw feature nor a state column.
        """
        import tensorflow as tf

        raw = self.raw_feature_spec()
        spec = {}
        for name in names:
            if name not in raw:
                self._states[name]  # type: ignore[attr-defined]  # KeyError: unknown
            spec[name] = raw.get(name, tf.io.FixedLenFeature([], tf.string))
        return spec

    def raw_feature_spec(self, include_labels: bool = True) -> dict:
        """``tf.io.parse_example`` spec for raw examples written by ingest.

        Derived features have no raw value, so no entry. TensorFlow is
        imported lazily so ingest workers that never touch TensorFlow stay light.
        """
        import tensorflow as tf

        dtypes = {"string": tf.string, "int64": tf.int64, "float32": tf.float32}
        spec = {}
        for f in self.features:
            if (f.is_target and not include_labels) or f.source == Source.DERIVED:
                continue
            if f.is_list:
                spec[f.name] = tf.io.VarLenFeature(dtypes[f.dtype])
            else:
                spec[f.name] = tf.io.FixedLenFeature(list(f.shape), dtypes[f.dtype])
        return spec

    def to_dict(self) -> Dict[str, Any]:
        """Plain data (JSON-able), e.g. for a Keras model's config."""
        return {"features": [feature_to_dict(f) for f in self.features],
                "user_key": self.user_key, "item_key": self.item_key,
                "timestamp_key": self.timestamp_key, "sampled_key": self.sampled_key}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Registry":
        return cls(features=tuple(feature_from_dict(f) for f in data["features"]),
                   **{k: v for k, v in data.items() if k != "features"})


def feature_to_dict(feature: Feature) -> Dict[str, Any]:
    out = dataclasses.asdict(feature)
    out.update(source=feature.source.value, kind=feature.kind.value,
               positive_values=list(feature.positive_values),
               derived_from=list(feature.derived_from), boundaries=list(feature.boundaries),
               aggregate_key=list(feature.aggregate_key))
    return out


def feature_from_dict(data: Dict[str, Any]) -> Feature:
    """Builds a Feature from plain data; enums and tuples from their plain forms.

    Raises:
        ValueError: unknown source or kind. TypeError: unknown attribute.
    """
    data = dict(data)
    data["source"] = Source(data["source"])
    data["kind"] = Kind(data["kind"])
    types = {"positive_values": str, "derived_from": str, "boundaries": float,
             "aggregate_key": str}
    for name, to in types.items():
        if name in data:
            data[name] = tuple(to(v) for v in data[name])
    return Feature(**data)


def names(features: Iterable[Feature]) -> Tuple[str, ...]:
    return tuple(f.name for f in features)
