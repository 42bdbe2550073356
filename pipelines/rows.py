"""The raw-example row of one (user, item) at one moment, for ingest and scoring alike.

Training and serving drift apart where each assembles its rows its own way.
Ingest (every labelled example) and scoring (every pair to rank) both call
:func:`raw_row`, so the model is served exactly the row it was trained on:
the same merge of event, user row, item row and history, the same defaults
for a user the users table lacks, the same history match counts.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from pipelines.aggregates import empty_aggregates, pair_value, read_pair_state
from pipelines.history import add_matches, empty_history
from pipelines.parse import default_user
from shoprec.core import registry as F


def raw_row(event: Mapping[str, Any], user: Optional[Mapping[str, Any]],
            item: Mapping[str, Any], history: Optional[Mapping[str, Any]],
            registry: F.Registry, query: Optional[Mapping[str, Any]] = None
            ) -> Dict[str, Any]:
    """Builds one raw-example row, keyed by registry feature name.

    Args:
        event: What the row is about, keyed by the canonical ``user_id`` /
            ``item_id``: ingest's labelled example (timestamp, labels,
            ``sampled``), or for scoring just the pair's two ids.
        user: The user's users-table row; None (a user the table lacks):
            the registry's user defaults.
        item: The item's item-table row (attributes and photo embedding).
        history: The user's history features at that moment (ingest:
            strictly before the example; scoring: after the user's last
            event); None: no earlier event.
        registry: The run's registry.
        query: ``query_row(user_id, user, history, registry)`` when the
            caller has it already (one user's many candidates): the same
            row, the user's side built once.

    Returns:
        The row: the user's side (:func:`query_row`), then the event's
        columns and the item's (the parts name disjoint features), keyed by
        the registry's user and item keys, with each history match count set
        from the item's own attributes, and each pair aggregate (user x item
        attribute) the event lacks — scoring's: ingest's examples carry theirs,
        computed at the example — looked up for the item's attribute value in
        the user's state after their last event.
    """
    user_id, item_id = event[F.USER_KEY], event[F.ITEM_KEY]
    row = dict(query) if query is not None else query_row(user_id, user, history, registry)
    row.update(event)
    row.update(item)
    for f in registry.pair_aggregates():
        state = row.pop(registry.pair_state_name(f))
        if f.name not in event:
            row[f.name] = pair_value(f, state, item_id, item, registry)
    for canonical, key, value in ((F.USER_KEY, registry.user_key, user_id),
                                  (F.ITEM_KEY, registry.item_key, item_id)):
        row.pop(canonical, None)
        row[key] = value
    return add_matches(row, registry) if registry.of_source(F.Source.HISTORY) else row


def query_row(user_id: str, user: Optional[Mapping[str, Any]],
              history: Optional[Mapping[str, Any]], registry: F.Registry) -> Dict[str, Any]:
    """The user's side of a raw row, what the retrieval query tower reads.

    The same history defaults, history and user row (or user defaults) as
    :func:`raw_row`; no item, so no match counts nor pair aggregates. Each
    pair aggregate's state column holds the history's state decoded (None
    without one), so a user's many candidates decode it once.
    """
    row: Dict[str, Any] = (dict(empty_history(registry))
                           if registry.of_source(F.Source.HISTORY) else {})
    row.update(empty_aggregates(registry.user_aggregates()))
    row.update(history or {})
    for f in registry.pair_aggregates():
        name = registry.pair_state_name(f)
        row[name] = read_pair_state(row.get(name))
    row.update(user or default_user(user_id, registry))
    row[registry.user_key] = user_id
    return row
