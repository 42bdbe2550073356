"""Checks that the parts of a data set description fit together.

Kept apart from ``shoprec.dataset`` (the description itself) so that each
stays short; :func:`shoprec.dataset.from_dict` runs :func:`check`.
"""

from __future__ import annotations

from shoprec.dataset import COLUMN_TYPES, DEDUP_POLICIES, EVENT_KEYS, FUNNEL, LABEL_MODES
from shoprec.dataset import DatasetConfig
from transforms import features as F


def check(dataset: DatasetConfig, where: str = "dataset") -> None:
    """Checks that the parts of a data set description fit together.

    Raises:
        ValueError: the first misfit found, naming the key.
    """
    try:
        registry = dataset.registry
    except ValueError as err:
        raise ValueError(f"{where}.features: {err}") from err
    if dataset.labels not in LABEL_MODES:
        raise ValueError(f"{where}.labels must be one of {LABEL_MODES}")
    if dataset.dedup not in DEDUP_POLICIES:
        raise ValueError(f"{where}.dedup must be one of {DEDUP_POLICIES}")
    events = dataset.events
    for table in (events, dataset.items, dataset.users):
        for column in table.columns:
            if column.type not in COLUMN_TYPES:
                raise ValueError(f"{where}: column {column.name} has type {column.type!r}; "
                                 f"known: {COLUMN_TYPES}")
    for role in ("user_id", "item_id", "timestamp") + (("event_type",) if events.event_type
                                                        else ()):
        column = getattr(events, role)
        if events.column(column) is None:
            raise ValueError(f"{where}.events: {role} column {column!r} is not in its columns")
    if events.column(events.timestamp).type != "timestamp":
        raise ValueError(f"{where}.events: column {events.timestamp!r} must be a timestamp")
    stages = set(events.event_types and dict(events.event_types).values())
    if not events.event_type:
        stages = {events.event_value}
    if not stages or not stages <= set(FUNNEL):
        raise ValueError(f"{where}.events: event types must map to {FUNNEL}, got {sorted(stages)}")
    if len(events.time_range) not in (0, 2):
        raise ValueError(f"{where}.events.time_range: expected [start, end]")
    for column in dataset.event_columns_kept():
        if column in EVENT_KEYS or events.column(column) is None:
            raise ValueError(f"{where}: event column {column!r} is not a kept column of events")
    sources = {F.Source.ITEM: dataset.items, F.Source.USER: dataset.users}
    for f in registry.features:
        table = sources.get(f.source)
        # The photo embedding and its flag come from `shoprec embed`, not a column.
        derived = f.kind in (F.Kind.EMBEDDING, F.Kind.FLAG) and f.source == F.Source.ITEM
        if table is None or derived or table.from_events:
            continue
        if table.column(f.source_column) is None:
            raise ValueError(f"{where}: feature {f.name} reads column {f.source_column!r}, "
                             f"which its table's columns do not declare")
        if f.event_type and f.event_type not in FUNNEL:
            raise ValueError(f"{where}: feature {f.name}: event_type {f.event_type!r}")
    for f in registry.labels():
        if f.event_type not in stages:
            raise ValueError(f"{where}: label {f.name} counts {f.event_type!r} events, which "
                             f"the events never map to ({sorted(stages)})")
    if registry.embedding_feature() is not None and not dataset.items.image_path:
        raise ValueError(f"{where}.items.image_path: the registry has a photo embedding "
                         "feature, so items need photos")
    if dataset.labels == "sampled":
        if dataset.negatives.per_positive < 1:
            raise ValueError(f"{where}.negatives.per_positive must be >= 1")
        if len({f.event_type for f in registry.labels()}) != 1:
            raise ValueError(f"{where}: sampled labels must all count one funnel event")
    unknown = set(dataset.history.event_types) - set(FUNNEL)
    if unknown:
        raise ValueError(f"{where}.history.event_types: unknown {sorted(unknown)}")
