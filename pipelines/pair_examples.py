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
- the pair's part: the history match counts and the pair aggregates (user x
  item attribute), the only values that depend on both, taken from
  ``raw_row`` itself for each pair (none without them);
- with ``labelled`` (ingest's examples): the event's part, its labels,
  timestamp and sampled flag, from the labelled example.

An example is the runs' cached bytes joined in key order: byte for byte
:func:`examples.encode` of ``raw_row``, which stays the one definition of the
row (``tests/pipelines/test_pair_examples.py`` holds the two equal).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Set, Tuple

import numpy as np

from pipelines import examples
from pipelines.rows import query_row, raw_row
from shoprec.core import registry as F

USER, ITEM, PAIR, EVENT = 0, 1, 2, 3
# First runs with their example's head kept (see PairExamples.examples).
_MAX_PREFIXES = 100_000


class UserPart(NamedTuple):
    """One user's side of every pair: the query row and its runs' bytes."""

    user_id: str
    user: Optional[Mapping[str, Any]]
    history: Optional[Mapping[str, Any]]
    query: Dict[str, Any]
    runs: Tuple[bytes, ...]


def part_names(registry: F.Registry) -> Tuple[Set[str], Set[str]]:
    """(the item part's names, the pair's own names) of a registry's raw features.

    The item part is the item table's row (attributes, photo embedding, item
    aggregates); the pair's own values are the history match counts and the
    user x item-attribute aggregates. Everything else is the user's part.
    """
    items = set(registry.item_table_names())
    pair = {f.name for f in registry.of_source(F.Source.HISTORY)
            if f.kind == F.Kind.NUMERIC and f.history_of} | {
        f.name for f in registry.pair_aggregates()}
    return items, pair


class PairExamples:
    """``examples.encode(raw_row(...), registry.example_names(include_labels=False))``, by parts.

    Args:
        registry: The run's registry.
        labelled: Ingest's examples instead: ``examples.Encoder(
            registry.example_names())`` of ``raw_row`` of a labelled example
            (labels, timestamp, sampled), those three the event's part.
    """

    def __init__(self, registry: F.Registry, labelled: bool = False):
        self._registry = registry
        names = set(registry.example_names(include_labels=labelled))
        self._metas: Tuple[str, ...] = ()
        event: set = set()
        if labelled:
            self._metas = tuple(m for m in (registry.timestamp_key, registry.sampled_key) if m)
            event = (names - set(registry.example_names(include_labels=False))) | set(
                self._metas)
        names = sorted(names | set(self._metas))
        items, matches = part_names(registry)
        runs: List[Tuple[int, List[str]]] = []
        for name in names:
            part = (ITEM if name in items else PAIR if name in matches
                    else EVENT if name in event else USER)
            if runs and runs[-1][0] == part:
                runs[-1][1].append(name)
            else:
                runs.append((part, [name]))
        self._runs = tuple((part, tuple(run)) for part, run in runs)
        # Where each part's k-th run goes in the example: (part, k) in key order.
        counts = [0, 0, 0, 0]
        layout = []
        for part, _ in self._runs:
            layout.append((part, counts[part]))
            counts[part] += 1
        self._layout = tuple(layout)
        self._has_pair = bool(counts[PAIR])
        self._has_event = bool(counts[EVENT])
        self._two_runs = (tuple(part for part, _ in layout)
                          if not self._has_pair and len(layout) == 2 else None)
        self._prefixes: Dict[Tuple[bytes, int], bytes] = {}
        self._encoder = examples.Encoder(names, registry)
        # Each part's runs of names, in key order (one lookup per example, not a scan).
        self._runs_of = tuple(tuple(names for p, names in self._runs if p == part)
                              for part in (USER, ITEM, PAIR, EVENT))
        # The event's runs as (name, is metadata, written as one int64): its
        # timestamp is new in every example, so an int goes straight to its bytes
        # instead of through the encoder's cache, where every one is a miss.
        self._event_plan = tuple(
            tuple((name, name in self._metas,
                   self._encoder.int_scalar(name, name in self._metas)) for name in run)
            for run in self._runs_of[EVENT])

    def _part_runs(self, row: Mapping[str, Any], part: int) -> Tuple[bytes, ...]:
        entries, metas = self._encoder.entries, self._metas
        return tuple([entries(row, names, metas) for names in self._runs_of[part]])

    def _event_runs(self, event: Mapping[str, Any]) -> Tuple[bytes, ...]:
        """``_part_runs(event, EVENT)``, the same bytes."""
        cached, limit = self._encoder.cached_entry, examples.INT_LIMIT
        runs = []
        for run in self._event_plan:
            entries = []
            for name, meta, int_scalar in run:
                value = event[name]
                if int_scalar and type(value) is int and 0 <= value < limit:
                    entries.append(examples.int_entry(name, value))
                else:
                    entries.append(cached(name, meta, value))
            runs.append(b"".join(entries))
        return tuple(runs)

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
                item_runs: Tuple[bytes, ...],
                event: Optional[Mapping[str, Any]] = None) -> bytes:
        """The serialized raw example of (``user``, ``item_id``).

        Args:
            user: :meth:`user` of the pair's user.
            item_id: The pair's item, the item key of ``item``.
            item: Its item-table row.
            item_runs: :meth:`item` of ``item``.
            event: ``labelled``: the example's labels, timestamp and sampled flag.
        """
        parts = [user.runs, item_runs, (), ()]
        if self._has_pair:
            parts[PAIR] = self._pair_runs(user, item_id, item)
        if self._has_event:
            parts[EVENT] = self._event_runs(event)
        return examples.framed(b"".join([parts[p][k] for p, k in self._layout]))

    def examples(self, users: Sequence[UserPart], user_index: Sequence[int],
                 items: Sequence[Tuple[str, Mapping[str, Any], Tuple[bytes, ...]]],
                 item_index: Sequence[int]) -> List[bytes]:
        """Many pairs' :meth:`example` at once.

        Pair ``k`` is (``users[user_index[k]]``, ``items[item_index[k]]``),
        an item being (item id, row, :meth:`item`); only the users and items
        indexed are read. Where the example is one run of each part (every
        item name sorts before every user name, or after), the first run with
        the example's head is built once per (that run, length of the other
        run) and worker, and each example is one concatenation.
        """
        user_index = np.asarray(user_index, np.int64).tolist()
        item_index = np.asarray(item_index, np.int64).tolist()
        if self._two_runs is None:
            return [self.example(users[u], *items[i]) for u, i in zip(user_index, item_index)]
        user_runs = [user.runs[0] for user in users]
        item_runs = [item[2][0] for item in items] if len(items) <= len(user_index) else None
        prefixes = self._prefixes
        if len(prefixes) > _MAX_PREFIXES:
            prefixes.clear()
        item_first = self._two_runs == (ITEM, USER)
        out = []
        for u, i in zip(user_index, item_index):
            item_run = item_runs[i] if item_runs is not None else items[i][2][0]
            first, second = (item_run, user_runs[u]) if item_first else (user_runs[u], item_run)
            # Keyed by the run object itself: bytes cache their hash.
            prefix = prefixes.get((first, len(second)))
            if prefix is None:
                prefix = prefixes[first, len(second)] = examples.head(
                    len(first) + len(second)) + first
            out.append(prefix + second)
        return out

    def _pair_runs(self, user: UserPart, item_id: str,
                   item: Mapping[str, Any]) -> Tuple[bytes, ...]:
        """A pair's own runs (match counts), from its :func:`pipelines.rows.raw_row`."""
        row = raw_row({F.USER_KEY: user.user_id, F.ITEM_KEY: item_id}, user.user, item,
                      user.history, self._registry, user.query)
        return self._part_runs(row, PAIR)
