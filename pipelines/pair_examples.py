"""Serialized raw examples of many (user, item) pairs, assembled from their users' and items' parts.

Scoring ranks every pair of a user against the same user row and every
item against the same item row, yet :func:`pipelines.rows.raw_row` and
``examples.encode`` would build and serialize the whole row per pair. A
serialized example is its features' map entries in key order, each entry a
function of its own (name, value) only (``examples.Encoder``), so the bytes
of :func:`examples.encode` of ``raw_row(...)`` split into runs of
consecutive names (in key order) that come from one part of the row:

- the user's part: what :func:`pipelines.rows.query_row` gives (the user
  row or its defaults, the history, the user key), built once per user;
- the item's part: the item row (the registry's candidate names, item key
  first), built once per item and worker;
- the pair's part: the history match counts, the only values that depend on
  both, taken from ``raw_row`` itself for each pair (none without history).

An example is the runs' cached bytes joined in key order: byte for byte
:func:`examples.encode` of ``raw_row``, which stays the one definition of the
row (``tests/pipelines/test_pair_examples.py`` holds the two equal).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

from pipelines import examples
from pipelines.rows import query_row, raw_row
from shoprec.core import registry as F

USER, ITEM, PAIR = 0, 1, 2


class UserPart(NamedTuple):
    """One user's side of every pair: the query row and its runs' bytes."""

    user_id: str
    user: Optional[Mapping[str, Any]]
    history: Optional[Mapping[str, Any]]
    query: Dict[str, Any]
    runs: Tuple[bytes, ...]


class PairExamples:
    """``examples.encode(raw_row(...), registry.example_names(include_labels=False))``, by parts.

    Args:
        registry: The run's registry.
    """

    def __init__(self, registry: F.Registry):
        self._registry = registry
        names = sorted(set(registry.example_names(include_labels=False)))
        items = set(registry.candidate_names())
        matches = {f.name for f in registry.of_source(F.Source.HISTORY)
                   if f.kind == F.Kind.NUMERIC and f.history_of}
        runs: List[Tuple[int, List[str]]] = []
        for name in names:
            part = ITEM if name in items else PAIR if name in matches else USER
            if runs and runs[-1][0] == part:
                runs[-1][1].append(name)
            else:
                runs.append((part, [name]))
        self._runs = tuple((part, tuple(run)) for part, run in runs)
        # Where each part's k-th run goes in the example: (part, k) in key order.
        counts = [0, 0, 0]
        layout = []
        for part, _ in self._runs:
            layout.append((part, counts[part]))
            counts[part] += 1
        self._layout = tuple(layout)
        self._has_pair = bool(counts[PAIR])
        # Without a pair part, an example of two runs (every item name sorts
        # before every user name, as in the generated shop) is one concatenation.
        self._two_runs = (tuple(p for p, _ in layout)
                          if not self._has_pair and len(layout) == 2 else None)
        self._heads: Dict[int, bytes] = {}
        self._encoder = examples.Encoder(names, registry)

    def _part_runs(self, row: Mapping[str, Any], part: int) -> Tuple[bytes, ...]:
        return tuple(self._encoder.entries(row, names)
                     for p, names in self._runs if p == part)

    def user(self, user_id: str, user: Optional[Mapping[str, Any]],
             history: Optional[Mapping[str, Any]]) -> UserPart:
        """The user's part (arguments as :func:`pipelines.rows.query_row`'s)."""
        query = query_row(user_id, user, history, self._registry)
        return UserPart(user_id, user, history, query, self._part_runs(query, USER))

    def item(self, item: Mapping[str, Any]) -> Tuple[bytes, ...]:
        """An item's part, from its item-table row.

        Raises:
            KeyError: the row lacks one of the registry's item features.
        """
        return self._part_runs(item, ITEM)

    def example(self, user: UserPart, item_id: str, item: Mapping[str, Any],
                item_runs: Tuple[bytes, ...]) -> bytes:
        """The serialized raw example of (``user``, ``item_id``).

        Args:
            user: :meth:`user` of the pair's user.
            item_id: The pair's item, the item key of ``item``.
            item: Its item-table row.
            item_runs: :meth:`item` of ``item``.
        """
        if self._two_runs is not None:
            parts = (user.runs[0], item_runs[0])
            first, second = parts[self._two_runs[0]], parts[self._two_runs[1]]
            size = len(first) + len(second)
            head = self._heads.get(size)
            if head is None:
                head = self._heads[size] = examples.head(size)
            return head + first + second
        parts = [user.runs, item_runs, ()]
        if self._has_pair:
            row = raw_row({F.USER_KEY: user.user_id, F.ITEM_KEY: item_id}, user.user, item,
                          user.history, self._registry, user.query)
            parts[PAIR] = self._part_runs(row, PAIR)
        return examples.framed(b"".join([parts[p][k] for p, k in self._layout]))
