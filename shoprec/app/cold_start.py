"""Cold start in recommend's evaluation: how cold users and new items fare.

A judged user is **cold** when they have no event of any kind (impressions
included: a user or item the shop only showed is in the ranker's training
examples) before the cut-off, **warm** otherwise; a catalogue item is **new**
when no one has an event on it before the cut-off. :func:`judge` splits every
list's NDCG, MAP, recall and hit rate by cold and warm users, and gives each
list's share of recommendation slots and of hits that went to new items, beside
the share of all relevant (user, item) pairs that are new items: the most a
list could owe to them. The ``popular_new`` baseline's order, new arrivals of
the kinds that sell, is ``pipelines.sources.category_ranked``, the ``new``
candidate source's.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Mapping, Sequence, Set, Tuple

import numpy as np

from trainer import metrics

COLD, WARM = "cold", "warm"
# The per-group metrics kept from ``trainer.metrics.ranking_metrics``.
GROUP_METRICS = ("users", "ndcg", "map", "recall", "hit_rate")


def new_items(catalogue: Iterable[str], before: Mapping[str, np.ndarray]) -> Set[str]:
    """The catalogue items without an event in ``before`` (every event before the cut-off)."""
    seen = set(before["item"])
    return {i for i in catalogue if i not in seen}


def cold_users(users: Iterable[str], before: Mapping[str, np.ndarray]) -> Set[str]:
    """The ``users`` without an event in ``before`` (every event before the cut-off)."""
    seen = set(before["user"])
    return {u for u in users if u not in seen}


def _share(part: int, whole: int) -> float:
    return part / whole if whole else float("nan")


def judge(lists: Mapping[str, Mapping[str, Sequence[str]]],
          relevant: Mapping[str, Set[str]], cold: Set[str], new: Set[str], k: int,
          catalogue_size: int) -> Dict[str, Any]:
    """Every list's metrics by cold and warm users, and its share of new items.

    Slots and hits count the judged users' (``relevant``'s) top K only.

    Args:
        lists: {list name: {user: items, best first}}.
        relevant: {judged user: their relevant items in the eval window}.
        cold: The cold users (any superset of the judged cold ones).
        new: The new items.
        k: The cut-off.
        catalogue_size: Items that could have been recommended.

    Returns:
        ``users`` ({cold, warm}: judged users), ``new_items`` (in the
        catalogue), ``relevant_pairs``, ``new_relevant_pairs`` and their share
        ``new_relevant_share`` (the ceiling of a hit share), and under
        ``lists``, per list: ``cold`` and ``warm`` (:data:`GROUP_METRICS`, nan
        where the group is empty), ``slots``, ``new_slots``,
        ``new_slot_share``, ``hits``, ``new_hits`` and ``new_hit_share``.
        Every share is nan where its whole is 0 or there are no new items.
    """
    groups = {COLD: {u: r for u, r in relevant.items() if u in cold},
              WARM: {u: r for u, r in relevant.items() if u not in cold}}
    pairs = sum(len(r) for r in relevant.values())
    new_pairs = sum(len(r & new) for r in relevant.values())
    out: Dict[str, Any] = {"users": {g: len(members) for g, members in groups.items()},
                           "new_items": len(new), "relevant_pairs": pairs,
                           "new_relevant_pairs": new_pairs,
                           "new_relevant_share": _share(new_pairs, pairs if new else 0),
                           "lists": {}}
    for name, recommended in lists.items():
        judged = {g: metrics.ranking_metrics(recommended, members, k, catalogue_size)
                  for g, members in groups.items()}
        slots = new_slots = hits = new_hits = 0
        for user, items in relevant.items():
            top = list(recommended.get(user, ()))[:k]
            slots += len(top)
            new_slots += sum(i in new for i in top)
            hits += sum(i in items for i in top)
            new_hits += sum(i in items and i in new for i in top)
        out["lists"][name] = {
            **{g: {m: judged[g][m] for m in GROUP_METRICS} for g in groups},
            # No new items in the catalogue: shares of nothing, not a list's 0.
            "slots": slots, "new_slots": new_slots,
            "new_slot_share": _share(new_slots, slots if new else 0),
            "hits": hits, "new_hits": new_hits,
            "new_hit_share": _share(new_hits, hits if new else 0)}
    return out


def _cell(value: float, empty: bool = False) -> str:
    return "n/a" if empty or value is None or math.isnan(value) else f"{value:.4f}"


def table(result: Mapping[str, Any], k: int) -> Tuple[str, List[str], List[List[str]]]:
    """The "cold start @K" table of :func:`judge`'s result: its caption, header and one
    row per list, ``n/a`` where a group is empty."""
    users = result["users"]
    caption = (f"cold start @{k}: {users[COLD]} cold / {users[WARM]} warm judged users; "
               f"{result['new_items']} new items; {_cell(result['new_relevant_share'])} of the "
               f"relevant pairs ({result['new_relevant_pairs']}/{result['relevant_pairs']}) "
               f"are new items")
    header = ["list", "ndcg cold", "ndcg warm", "users cold/warm", "new slot share",
              "new hit share"]
    rows = [[name, _cell(r[COLD]["ndcg"], not users[COLD]),
             _cell(r[WARM]["ndcg"], not users[WARM]), f"{users[COLD]}/{users[WARM]}",
             _cell(r["new_slot_share"]), _cell(r["new_hit_share"])]
            for name, r in result["lists"].items()]
    return caption, header, rows
