"""Candidate sources: each user's lists as of a cut-off, their union and its signals.

The pure part of multi-source candidate generation, shared by ingest (label
mode ``candidates``: the lists at past cut-offs, labelled by what followed)
and recommend (the lists at the eval start or the log's end), so the ranker
learns from exactly the lists it will rank. The Beam jobs that gather the
states below from the event log are in ``pipelines.candidate_sources``.

Everything reads only events strictly before the cut-off ``c``:

- a **pair state** per (user, item): the user's events on it per type (count,
  last time) and each source's weight of them (``repurchase`` and
  ``co_occurrence``: weighted events, halving every ``half_life_days``;
  a segmented ``popular``: weighted events in its last ``days``);
- an **item state** per item: its events per type in the windows the
  candidate features read, its first event per type, and each unsegmented
  ``popular`` and each ``new`` source's weighted events in its last ``days``;
- **neighbours** per item (``co_occurrence``): the items in the same baskets
  (one user's events in one ``basket_s`` window), by ``n_ij / sqrt(n_i n_j)``
  (co-counts normalised for both items' popularity), top ``neighbours``;
- a **new-items list** per ``new`` source: the catalogue items without an item
  state (no event of a tracked type) by :func:`category_ranked` of their
  ``attribute``, the same list for everyone.

:func:`propose` turns a user's pair states into each source's ranked list,
:func:`union` merges them (every candidate keeps its rank and score in each
source that proposed it), and :func:`signals` gives a candidate its
``source: candidate`` features.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import math
from typing import (Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Set,
                    Tuple)

from shoprec.core import registry as F
from shoprec.core.config import Config
from shoprec.core.recommend_config import (ATTRIBUTE, CO_OCCURRENCE, NEW, POPULAR, REPURCHASE,
                                           TWO_TOWER, SourceConfig, recommend_settings)

DAY_S = 86400
# (item id, score), best first: one source's list for one user.
Ranked = List[Tuple[str, float]]
# Keys of the accumulators below: ("n", type) count, ("last", type) latest
# timestamp, ("first", type) earliest, ("w", type, days) count in the window,
# ("s", source name) the source's weight.
State = Dict[tuple, float]
# Key of a candidate row's {source: (rank, score)}: metadata for the candidate
# tables and recall counts, never a model input.
PROPOSED = "_proposed"


class Tables(NamedTuple):
    """The catalogue-sized tables :func:`propose` looks up, at any cut-off.

    Attributes:
        neighbours: {(co_occurrence source, cut, item): its neighbours}.
        popular: {(popular or new source, cut, segment or None): its list}.
        members: {(attribute source, cut, value): the value's most popular items}.
        values: {(attribute source, item): the item's value}.
        items: {(cut, item): item state}.
    """

    neighbours: Mapping[tuple, "Ranked"]
    popular: Mapping[tuple, "Ranked"]
    members: Mapping[tuple, "Ranked"]
    values: Mapping[tuple, Any]
    items: Mapping[tuple, "State"]


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the candidate jobs track, fixed once from a run's config.

    Attributes:
        sources: ``recommend.sources`` with their defaults filled in.
        signals: The registry's candidate features.
        exclude: (event type, seconds): the items a user had this event on in
            the seconds before the cut-off are not proposed; None: no rule.
        max_user_items: Pair states kept per user (the latest), bounding a
            user's state whatever their history.
        popularity: (event type, days): the recent count every item state
            keeps, what related items fall back on (the category's best-sellers).
    """

    sources: Tuple[SourceConfig, ...]
    signals: Tuple[F.Feature, ...]
    exclude: Optional[Tuple[str, int]]
    max_user_items: int
    popularity: Tuple[str, int]

    def of_kind(self, kind: str) -> Tuple[SourceConfig, ...]:
        return tuple(s for s in self.sources if s.source_kind == kind)

    @property
    def pair_weighted(self) -> Tuple[SourceConfig, ...]:
        """Sources whose weight is kept per (user, item)."""
        return tuple(s for s in self.sources
                     if s.source_kind in (REPURCHASE, CO_OCCURRENCE, ATTRIBUTE)
                     or (s.source_kind == POPULAR and s.segment))

    @property
    def item_windows(self) -> Tuple[Tuple[str, int], ...]:
        """(event type, days) counted per item: what the item signals read."""
        out = [self.popularity]
        for f in self.signals:
            if f.signal == "item.count":
                out.append((f.event_type, f.window_days))
            elif f.signal == "item.trend":
                out += [(f.event_type, f.window_days), (f.event_type, 2 * f.window_days)]
        return tuple(dict.fromkeys(out))

    @property
    def event_types(self) -> Set[str]:
        """Every event type some source, signal or the exclusion reads."""
        types = {e for s in self.sources for e, _ in s.events}
        types |= {f.event_type for f in self.signals} | {self.popularity[0]}
        if self.exclude:
            types.add(self.exclude[0])
        return types


def plan(config: Config) -> Plan:
    """The :class:`Plan` of a run's config."""
    rec, registry = recommend_settings(config), config.registry
    exclude = None
    if rec.exclude_label and rec.exclude_days:
        exclude = (registry[rec.exclude_label].event_type, rec.exclude_days * DAY_S)
    quotas = sum(s.quota for s in rec.sources)
    return Plan(rec.sources, registry.candidate_features(), exclude, max(200, quotas),
                (registry[rec.relevance_label].event_type, rec.popularity_days))


def _decayed(weight: float, age_s: int, half_life_days: float) -> float:
    if not half_life_days:
        return weight
    return weight * 0.5 ** (age_s / (half_life_days * DAY_S))


def add_pair(state: State, cut: int, ts: int, event_type: str, p: Plan) -> State:
    """A pair state with one more event (at ``ts`` < ``cut``) of its user on its item."""
    state[("n", event_type)] = state.get(("n", event_type), 0) + 1
    state[("last", event_type)] = max(state.get(("last", event_type), ts), ts)
    for s in p.pair_weighted:
        weight = dict(s.events).get(event_type)
        if weight is None:
            continue
        if s.source_kind == POPULAR:
            if ts >= cut - s.days * DAY_S:
                state[("s", s.name)] = state.get(("s", s.name), 0.0) + weight
        else:
            state[("s", s.name)] = state.get(("s", s.name), 0.0) + _decayed(
                weight, cut - ts, s.half_life_days)
    return state


def add_item(state: State, cut: int, ts: int, event_type: str, p: Plan) -> State:
    """An item state with one more event (at ``ts`` < ``cut``) on its item."""
    for kind, days in p.item_windows:
        if kind == event_type and (not days or ts >= cut - days * DAY_S):
            state[("w", kind, days)] = state.get(("w", kind, days), 0) + 1
    state[("first", event_type)] = min(state.get(("first", event_type), ts), ts)
    for s in p.of_kind(POPULAR) + p.of_kind(NEW):
        weight = dict(s.events).get(event_type)
        if not s.segment and weight is not None and ts >= cut - s.days * DAY_S:
            state[("s", s.name)] = state.get(("s", s.name), 0.0) + weight
    return state


def merge(states: Iterable[State]) -> State:
    """One state from partial ones: counts and weights add, times keep the extreme."""
    out: State = {}
    for state in states:
        for key, value in state.items():
            if key not in out:
                out[key] = value
            elif key[0] == "last":
                out[key] = max(out[key], value)
            elif key[0] == "first":
                out[key] = min(out[key], value)
            else:
                out[key] = out[key] + value
    return out


def popularity(state: Optional[State], p: Plan) -> int:
    """An item state's recent count of the plan's ``popularity`` window."""
    return (state or {}).get(("w",) + p.popularity, 0)


def last_time(state: State) -> int:
    """The latest event of a pair state, any type."""
    return max((v for k, v in state.items() if k[0] == "last"), default=0)


def latest(pairs: Iterable[Tuple[str, State]], n: int) -> List[Tuple[str, State]]:
    """The ``n`` pair states of the latest items (ties: the lower item id)."""
    return sorted(pairs, key=lambda kv: (-last_time(kv[1]), kv[0]))[:n]


def basket(items: Iterable[Tuple[str, int]], cap: int) -> List[str]:
    """A basket's first ``cap`` distinct items by their first time (ties: item id)."""
    first: Dict[str, int] = {}
    for item, ts in items:
        first[item] = min(first.get(item, ts), ts)
    return [i for i, _ in sorted(first.items(), key=lambda kv: (kv[1], kv[0]))[:cap]]


def neighbours(item: str, together: Mapping[str, int], baskets: Callable[[str], int],
               m: int) -> Ranked:
    """The ``m`` items most often in ``item``'s baskets, normalised for popularity.

    Args:
        item: The item i.
        together: {j: baskets holding both i and j}.
        baskets: j → baskets holding j (i included).
        m: Neighbours kept.

    Returns:
        [(j, n_ij / sqrt(n_i n_j))], best first, ties by item id.
    """
    n_i = baskets(item)
    scored = [(j, n / math.sqrt(n_i * baskets(j))) for j, n in together.items() if j != item]
    return sorted(scored, key=lambda kv: (-kv[1], kv[0]))[:m]


def segment(source: SourceConfig, user: Optional[Mapping[str, Any]]) -> Optional[str]:
    """The user's segment for a segmented popular source (None: unsegmented).

    A categorical's value, or a numeric's bucket (the count of edges <= it);
    a user the table lacks, or a missing value, is the segment ``""``.
    """
    if not source.segment:
        return None
    value = (user or {}).get(source.segment)
    if value is None or value == "":
        return ""
    if source.segment_edges:
        return str(bisect.bisect_right(source.segment_edges, float(value)))
    return str(value)


def category_ranked(items: Iterable[str], categories: Mapping[str, Any],
                    counts: Mapping[str, float]) -> List[str]:
    """``items`` by their category's recent popularity, ties by item id.

    The order of the ``new`` source (whose Beam job sorts by the same key) and
    of recommend's ``popular_new`` baseline.

    Args:
        items: The items to order (the new ones: they have no count of their own).
        categories: {item: its category}; an item it lacks is in category None.
        counts: {item: its recent (weighted) relevance events}: a category's
            popularity is the sum over its items.
    """
    per_category: Dict[Any, float] = collections.Counter()
    for item, n in counts.items():
        per_category[categories.get(item)] += n
    return sorted(items, key=lambda i: (-per_category[categories.get(i)], i))


def _top(scores: Mapping[str, float], n: int) -> Ranked:
    positive = [(i, float(s)) for i, s in scores.items() if s > 0]
    return sorted(positive, key=lambda kv: (-kv[1], kv[0]))[:n]


def co_occurrence_scores(source: SourceConfig, pairs: Mapping[str, State], cut: int,
                         tables: Tables) -> Dict[str, float]:
    """Every item's co-occurrence score for a user: sum over their latest items i
    (the ``recent_items`` of most weight) of i's weight times sim(i, j)."""
    key = ("s", source.name)
    recent = _top({i: s.get(key, 0.0) for i, s in pairs.items()}, source.recent_items)
    scores: Dict[str, float] = {}
    for item, weight in recent:
        for other, sim in tables.neighbours.get((source.name, cut, item), ()):
            scores[other] = scores.get(other, 0.0) + weight * sim
    return scores


def attribute_list(source: SourceConfig, pairs: Mapping[str, State], cut: int,
                   tables: Tables, skip: Set[str]) -> Tuple[Ranked, Dict[str, float]]:
    """The items sharing an attribute value with the user's, by the user's weight on
    that value, ties by the value's popularity order; and every such item's score."""
    weights: Dict[Any, float] = {}
    for item, state in pairs.items():
        value = tables.values.get((source.name, item))
        if value is not None and state.get(("s", source.name), 0.0) > 0:
            weights[value] = weights.get(value, 0.0) + state[("s", source.name)]
    scores: Dict[str, float] = {}
    order: Dict[str, int] = {}
    for value, weight in weights.items():
        for position, (item, _) in enumerate(tables.members.get((source.name, cut, value), ())):
            scores[item] = weight
            order[item] = position
    ranked = sorted((i for i in scores if i not in skip),
                    key=lambda i: (-scores[i], order[i], i))[:source.quota]
    return [(i, scores[i]) for i in ranked], scores


def propose(pairs: Mapping[str, State], user: Optional[Mapping[str, Any]], cut: int, p: Plan,
            tables: Tables, towers: Optional[Ranked] = None, skip: Set[str] = frozenset()
            ) -> Tuple[Dict[str, Ranked], Dict[str, Dict[str, float]]]:
    """Each source's list for one user at one cut-off.

    Args:
        pairs: {item: pair state} of the user's latest items.
        user: The user's row (segments), None if the table lacks them.
        cut: The cut-off.
        p: The plan.
        tables: The catalogue-sized tables.
        towers: The two towers' list (None: no two-tower source here).
        skip: Items no list may hold (the exclusion rule's); a popular list
            is shorter by those of its items.

    Returns:
        ({source name: its list, cut to its quota}, {source name: {item:
        score}} for every item it can score: what :func:`signals` reads).
    """
    lists: Dict[str, Ranked] = {}
    scores: Dict[str, Dict[str, float]] = {}
    for s in p.sources:
        kind = s.source_kind
        if kind == ATTRIBUTE:
            lists[s.name], scores[s.name] = attribute_list(s, pairs, cut, tables, skip)
            continue
        if kind == REPURCHASE:
            scores[s.name] = {i: st.get(("s", s.name), 0.0) for i, st in pairs.items()}
        elif kind == CO_OCCURRENCE:
            scores[s.name] = co_occurrence_scores(s, pairs, cut, tables)
        elif kind in (POPULAR, NEW) or towers is not None:
            # Already ranked (a popular or new-items list, whose new items may
            # score 0; the towers' nearest, which may score below 0): cut, not
            # re-sorted.
            ranked = list(tables.popular.get((s.name, cut, segment(s, user)), ())
                          if kind != TWO_TOWER else towers)[:s.quota]
            lists[s.name] = [(i, v) for i, v in ranked if i not in skip]
            scores[s.name] = dict(ranked)
            continue
        else:
            continue
        lists[s.name] = _top({i: v for i, v in scores[s.name].items() if i not in skip},
                             s.quota)
    return lists, scores


def union(lists: Mapping[str, Ranked]) -> Dict[str, Dict[str, Tuple[int, float]]]:
    """{item: {source: (rank, score)}} over every list; items by their best rank, then id."""
    proposed: Dict[str, Dict[str, Tuple[int, float]]] = {}
    for name, ranked in lists.items():
        for rank, (item, score) in enumerate(ranked, start=1):
            proposed.setdefault(item, {})[name] = (rank, float(score))
    order = sorted(proposed, key=lambda i: (min(r for r, _ in proposed[i].values()), i))
    return {item: proposed[item] for item in order}


def excluded(pairs: Mapping[str, State], cut: int, p: Plan) -> Set[str]:
    """The user's items the exclusion rule removes (their event in its window)."""
    if not p.exclude:
        return set()
    kind, window = p.exclude
    return {i for i, s in pairs.items() if s.get(("last", kind), -1) >= cut - window}


def signals(p: Plan, cut: int, proposed: Mapping[str, Tuple[int, float]],
            pair: Optional[State], item: Optional[State],
            scores: Mapping[str, Mapping[str, float]], item_id: str) -> Dict[str, float]:
    """A candidate's ``source: candidate`` features (``registry.CANDIDATE_RANK`` etc.)."""
    pair, item = pair or {}, item or {}
    out: Dict[str, float] = {}
    for f in p.signals:
        head, _, tail = f.signal.partition(".")
        if f.signal == "pair.count":
            value = pair.get(("n", f.event_type), 0)
        elif f.signal == "pair.days_since":
            last = pair.get(("last", f.event_type))
            value = f.default if last is None else (cut - last) / DAY_S
        elif f.signal == "item.count":
            value = item.get(("w", f.event_type, f.window_days), 0)
        elif f.signal == "item.trend":
            recent = item.get(("w", f.event_type, f.window_days), 0)
            before = item.get(("w", f.event_type, 2 * f.window_days), 0) - recent
            value = (recent + 1.0) / (before + 1.0)
        elif f.signal == "item.days_since_first":
            first = item.get(("first", f.event_type))
            value = f.default if first is None else (cut - first) / DAY_S
        elif tail == F.CANDIDATE_RANK:
            value = 1.0 / proposed[head][0] if head in proposed else 0.0
        else:
            value = scores.get(head, {}).get(item_id, 0.0)
        out[f.name] = float(value)
    return out


def candidate_rows(user_id: str, cut: int,
                   candidates: Mapping[str, Mapping[str, Tuple[int, float]]],
                   scores: Mapping[str, Mapping[str, float]], pairs: Mapping[str, State],
                   tables: Tables, p: Plan) -> List[Dict[str, Any]]:
    """A user's candidates as rows ``raw_row`` takes for its ``event``.

    Each row: the user and item ids, every candidate feature, and
    :data:`PROPOSED` ({source: (rank, score)}).

    Args:
        candidates: :func:`union` of the user's lists (less any excluded items).
        scores: :func:`propose`'s scores (and the towers' score of every
            candidate, where there are towers).
        tables: The catalogue-sized tables (item states).
    """
    rows = []
    for item_id, proposed in candidates.items():
        row = {F.USER_KEY: user_id, F.ITEM_KEY: item_id, PROPOSED: proposed}
        row.update(signals(p, cut, proposed, pairs.get(item_id),
                           tables.items.get((cut, item_id)), scores, item_id))
        rows.append(row)
    return rows
