"""The Beam side of candidate generation: the states ``pipelines.sources`` reads.

:class:`CandidateSources` takes the clean event log and the cut-offs and
gathers, for every cut-off ``c`` and from the events strictly before it,
each user's latest pair states, every item's state, each co-occurrence
source's neighbours per item, each unsegmented popular source's list and
each new source's list of the catalogue's items without an event yet;
:class:`SegmentPopular` adds the segmented popular lists from users' rows.

Every state is built by a combiner with a bounded accumulator, so a user
with a million events, a basket of a bot or an item everyone buys never
makes one worker hold a whole group: a pair state is a few counts, a user
keeps their ``max_user_items`` latest items, a basket its first
``max_basket`` items, a list its ``quota`` best. The tables keyed by item
(item states, neighbours, popular lists) are catalogue-sized and become the
side inputs every worker of the consuming step holds.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Tuple

import apache_beam as beam

from pipelines import sources
from pipelines.parse import EVENT_TYPE_KEY
from shoprec.core import registry as F
from shoprec.core.recommend_config import ATTRIBUTE, CO_OCCURRENCE, NEW, POPULAR


class _StateFn(beam.CombineFn):
    """(cut-off, timestamp, event type) values → one pair or item state."""

    def __init__(self, add, plan: sources.Plan):
        self._add = add
        self._plan = plan

    def create_accumulator(self):
        return {}

    def add_input(self, state, value):
        cut, ts, event_type = value
        return self._add(state, cut, ts, event_type, self._plan)

    def merge_accumulators(self, states):
        return sources.merge(states)

    def extract_output(self, state):
        return state


class _LatestFn(beam.CombineFn):
    """(item, pair state) values → the ``n`` of the latest items."""

    def __init__(self, n: int):
        self._n = n

    def create_accumulator(self):
        return []

    def add_input(self, kept, value):
        kept.append(value)
        return sources.latest(kept, self._n) if len(kept) > 2 * self._n else kept

    def merge_accumulators(self, parts):
        return sources.latest([kv for part in parts for kv in part], self._n)

    def extract_output(self, kept):
        return sources.latest(kept, self._n)


class _BasketFn(beam.CombineFn):
    """(item, timestamp) values of one basket → its first ``cap`` distinct items."""

    def __init__(self, cap: int):
        self._cap = cap

    def create_accumulator(self):
        return {}

    def add_input(self, first, value):
        item, ts = value
        first[item] = min(first.get(item, ts), ts)
        if len(first) > 2 * self._cap:
            kept = sources.basket(first.items(), self._cap)
            first = {i: first[i] for i in kept}
        return first

    def merge_accumulators(self, parts):
        out: Dict[str, int] = {}
        for part in parts:
            for item, ts in part.items():
                out[item] = min(out.get(item, ts), ts)
        return out

    def extract_output(self, first):
        return sources.basket(first.items(), self._cap)


class _CoCountFn(beam.CombineFn):
    """({co-item: 1}, 1) per basket of an item → (its baskets, {co-item: shared})."""

    def create_accumulator(self):
        return 0, {}

    def add_input(self, acc, value):
        n, together = acc
        count, co = value
        for item, shared in co.items():
            together[item] = together.get(item, 0) + shared
        return n + count, together

    def merge_accumulators(self, parts):
        n, together = 0, {}
        for count, co in parts:
            n += count
            for item, shared in co.items():
                together[item] = together.get(item, 0) + shared
        return n, together

    def extract_output(self, acc):
        return acc


class TopFn(beam.CombineFn):
    """(item, score) values → the ``n`` best, by score then item id."""

    def __init__(self, n: int):
        self._n = n

    def _cut(self, pairs):
        return sorted(pairs, key=lambda kv: (-kv[1], kv[0]))[:self._n]

    def create_accumulator(self):
        return []

    def add_input(self, kept, value):
        kept.append(value)
        return self._cut(kept) if len(kept) > 2 * self._n else kept

    def merge_accumulators(self, parts):
        return self._cut([kv for part in parts for kv in part])

    def extract_output(self, kept):
        return self._cut(kept)


class CandidateState(NamedTuple):
    """The states of the candidate sources at every cut-off; all but ``pairs`` are
    the catalogue-sized tables of ``pipelines.sources.Tables``."""

    pairs: beam.PCollection  # ((user_id, cut), [(item_id, pair state)]), latest first
    items: beam.PCollection  # ((cut, item_id), item state)
    neighbours: beam.PCollection  # ((source name, cut, item_id), [(item_id, sim)])
    # ((popular or new source name, cut, segment or None), [(item_id, count)])
    popular: beam.PCollection
    members: beam.PCollection  # ((source name, cut, value), [(item_id, count)])
    values: beam.PCollection  # ((source name, item_id), value)

    def side_inputs(self) -> Dict[str, Any]:
        """The tables as the keyword side inputs of a step that builds ``Tables``."""
        return {name: beam.pvalue.AsDict(getattr(self, name)) for name in sources.Tables._fields}


class CandidateSources(beam.PTransform):
    """Clean events → :class:`CandidateState` at every cut-off (see the module docstring).

    Args:
        plan: ``pipelines.sources.plan(config)``.
        cutoffs: A PCollection of cut-offs (unix seconds): fixed ones, or the
            log's end computed in the job.
        items: (item_id, item row) of the catalogue (attribute and new sources).
    """

    def __init__(self, plan: sources.Plan, cutoffs: beam.PCollection,
                 items: beam.PCollection):
        super().__init__()
        self._plan = plan
        self._cutoffs = cutoffs
        self._catalogue = items

    def expand(self, events) -> CandidateState:
        p = self._plan
        tracked = p.event_types

        def at_cutoffs(event, cuts):
            # Each cut-off sees the events strictly before it.
            for cut in cuts:
                if event[F.TIMESTAMP_KEY] < cut:
                    yield cut, event

        exploded = (events
                    | "Tracked" >> beam.Filter(lambda e: e[EVENT_TYPE_KEY] in tracked)
                    | "AtCutOffs" >> beam.FlatMap(at_cutoffs,
                                                  cuts=beam.pvalue.AsList(self._cutoffs)))

        def timed(ce):
            cut, e = ce
            return cut, e[F.TIMESTAMP_KEY], e[EVENT_TYPE_KEY]

        pairs = (exploded
                 | "KeyPair" >> beam.Map(
                     lambda ce: ((ce[1][F.USER_KEY], ce[1][F.ITEM_KEY], ce[0]), timed(ce)))
                 | "PairStates" >> beam.CombinePerKey(_StateFn(sources.add_pair, p))
                 | "ByUserCut" >> beam.MapTuple(lambda k, state: ((k[0], k[2]), (k[1], state)))
                 | "LatestItems" >> beam.CombinePerKey(_LatestFn(p.max_user_items)))
        items = (exploded
                 | "KeyItem" >> beam.Map(lambda ce: ((ce[0], ce[1][F.ITEM_KEY]), timed(ce)))
                 | "ItemStates" >> beam.CombinePerKey(_StateFn(sources.add_item, p)))
        unsegmented = [s for s in p.of_kind(POPULAR) if not s.segment]

        def popular_scores(key_state):
            (cut, item), state = key_state
            for s in unsegmented:
                if state.get(("s", s.name), 0) > 0:
                    yield (s.name, cut, None), (item, state[("s", s.name)])

        quotas = {s.name: s.quota for s in p.sources}
        popular = (items
                   | "PopularScores" >> beam.FlatMap(popular_scores)
                   | "PopularLists" >> beam.CombinePerKey(TopFn(max(quotas.values())))
                   | "PopularQuota" >> beam.MapTuple(lambda k, ranked: (k, ranked[:quotas[k[0]]])))
        new = self._catalogue | "NewItems" >> _NewItems(p, items, self._cutoffs)
        popular = (popular, new) | "PopularAndNew" >> beam.Flatten()
        tables = [exploded | f"Neighbours{s.name.title()}" >> _Neighbours(s)
                  for s in p.of_kind(CO_OCCURRENCE)]
        neighbours = (tables or [events.pipeline | "NoNeighbours" >> beam.Create([])]) \
            | "AllNeighbours" >> beam.Flatten()
        members, values = self._catalogue | "Attributes" >> _Attributes(p, items, self._cutoffs)
        return CandidateState(pairs, items, neighbours, popular, members, values)


class _Attributes(beam.PTransform):
    """(item_id, item row) → each attribute source's (members per value, value per item)."""

    def __init__(self, plan: sources.Plan, states: beam.PCollection, cutoffs: beam.PCollection):
        super().__init__()
        self._plan = plan
        self._states = states
        self._cutoffs = cutoffs

    def expand(self, catalogue):
        p = self._plan
        attributes = p.of_kind(ATTRIBUTE)
        if not attributes:
            empty = catalogue.pipeline | "NoAttributes" >> beam.Create([])
            return empty, empty
        quotas = {s.name: s.quota for s in attributes}

        def values(kv):
            item_id, row = kv
            for s in attributes:
                yield (s.name, item_id), row.get(s.attribute)

        def counts(kv, states, cuts):
            item_id, row = kv
            for s in attributes:
                for cut in cuts:
                    yield ((s.name, cut, row.get(s.attribute)),
                           (item_id, sources.popularity(states.get((cut, item_id)), p)))

        members = (catalogue
                   | "ValueCounts" >> beam.FlatMap(counts,
                                                   states=beam.pvalue.AsDict(self._states),
                                                   cuts=beam.pvalue.AsList(self._cutoffs))
                   | "Members" >> beam.CombinePerKey(TopFn(max(quotas.values())))
                   | "MembersQuota" >> beam.MapTuple(lambda k, ranked: (k, ranked[:quotas[k[0]]])))
        return members, catalogue | "Values" >> beam.FlatMap(values)


class _NewItems(beam.PTransform):
    """(item_id, item row) → each new source's list per cut-off.

    Output: ((source name, cut, None), [(item_id, its category's weighted
    events)]): the catalogue items with no item state at the cut (no tracked
    event before it), best first by ``sources.category_ranked``'s key, the
    quota best. Every item of a category scores alike, so each category only
    offers its ``quota`` lowest ids: every group stays bounded. No step reads
    a side input built from its own main input (the catalogue), which would
    make a cycle the runner cannot schedule; the categories meet the counts
    and the new items by key instead.
    """

    def __init__(self, plan: sources.Plan, states: beam.PCollection, cutoffs: beam.PCollection):
        super().__init__()
        self._plan = plan
        self._states = states
        self._cutoffs = cutoffs

    def expand(self, catalogue):
        news = self._plan.of_kind(NEW)
        if not news:
            return catalogue.pipeline | "NoNew" >> beam.Create([])
        most = max(s.quota for s in news)
        quotas = {s.name: s.quota for s in news}

        def values(kv):
            item_id, row = kv
            for s in news:
                yield (s.name, item_id), row.get(s.attribute)

        def weights(key_state):
            (cut, item_id), state = key_state
            for s in news:
                if state.get(("s", s.name), 0) > 0:
                    yield (s.name, item_id), (cut, state[("s", s.name)])

        def by_category(key_group):
            # An item the catalogue lacks counts in category None, as in
            # ``sources.category_ranked``.
            (name, _), group = key_group
            value = next(iter(group["value"]), None)
            for cut, weight in group["weights"]:
                yield (name, cut, value), weight

        def unsold(kv, states, cuts):
            item_id, row = kv
            for cut in cuts:
                if (cut, item_id) not in states:
                    for s in news:
                        yield (s.name, cut, row.get(s.attribute)), (item_id, 0.0)

        def scored(key_group):
            (name, cut, _), group = key_group
            total = float(sum(group["total"]))
            for items in group["items"]:
                for item_id, _ in items:
                    yield (name, cut, None), (item_id, total)

        totals = ({"value": catalogue | "Categories" >> beam.FlatMap(values),
                   "weights": self._states | "CategoryWeights" >> beam.FlatMap(weights)}
                  | "JoinCategories" >> beam.CoGroupByKey()
                  | "ByCategory" >> beam.FlatMap(by_category)
                  | "CategoryTotals" >> beam.CombinePerKey(sum))
        unsold_items = (catalogue
                        | "Unsold" >> beam.FlatMap(unsold,
                                                   states=beam.pvalue.AsDict(self._states),
                                                   cuts=beam.pvalue.AsList(self._cutoffs))
                        | "LowestIds" >> beam.CombinePerKey(TopFn(most)))
        # TopFn's order, score then item id, is category_ranked's.
        return ({"items": unsold_items, "total": totals}
                | "JoinTotals" >> beam.CoGroupByKey()
                | "Scored" >> beam.FlatMap(scored)
                | "Lists" >> beam.CombinePerKey(TopFn(most))
                | "Quota" >> beam.MapTuple(lambda k, ranked: (k, ranked[:quotas[k[0]]])))


class _Neighbours(beam.PTransform):
    """(cut-off, event) → ((source name, cut, item), its neighbours) for one source."""

    def __init__(self, source):
        super().__init__()
        self._source = source

    def expand(self, exploded):
        s = self._source
        kinds = {e for e, _ in s.events}

        def pairs_of(key_basket):
            (cut, _, _), items = key_basket
            for item in items:
                yield (s.name, cut, item), (1, {j: 1 for j in items if j != item})

        counts = (exploded
                  | "OfSource" >> beam.Filter(lambda ce: ce[1][EVENT_TYPE_KEY] in kinds)
                  | "KeyBasket" >> beam.Map(lambda ce: (
                      (ce[0], ce[1][F.USER_KEY], ce[1][F.TIMESTAMP_KEY] // s.basket_s),
                      (ce[1][F.ITEM_KEY], ce[1][F.TIMESTAMP_KEY])))
                  | "Baskets" >> beam.CombinePerKey(_BasketFn(s.max_basket))
                  | "CoItems" >> beam.FlatMap(pairs_of)
                  | "CoCounts" >> beam.CombinePerKey(_CoCountFn()))
        baskets = counts | "BasketCounts" >> beam.MapTuple(lambda k, acc: (k, acc[0]))

        def top(key_acc, baskets):
            (name, cut, item), (_, together) = key_acc
            return (name, cut, item), sources.neighbours(
                item, together, lambda j: baskets[(name, cut, j)], s.neighbours)

        return counts | "Top" >> beam.Map(top, baskets=beam.pvalue.AsDict(baskets))


class SegmentPopular(beam.PTransform):
    """Users' rows and pair states → each segmented popular source's list per segment.

    Input: (user row or None, {cut: [(item, pair state)]}) per user. Output:
    ((source name, cut, segment), [(item, weighted events)]), the quota best.
    """

    def __init__(self, plan: sources.Plan):
        super().__init__()
        self._plan = plan

    def expand(self, bundles):
        segmented = [s for s in self._plan.of_kind(POPULAR) if s.segment]
        if not segmented:
            return bundles.pipeline | "NoSegments" >> beam.Create([])
        quotas = {s.name: s.quota for s in segmented}

        def counts(bundle: Tuple[Any, Mapping[int, List]]) -> Iterable:
            row, by_cut = bundle
            for s in segmented:
                seg = sources.segment(s, row)
                for cut, pairs in by_cut.items():
                    for item, state in pairs:
                        if state.get(("s", s.name), 0) > 0:
                            yield (s.name, cut, seg, item), state[("s", s.name)]

        return (bundles
                | "SegmentCounts" >> beam.FlatMap(counts)
                | "Sum" >> beam.CombinePerKey(sum)
                | "BySegment" >> beam.MapTuple(lambda k, n: ((k[0], k[1], k[2]), (k[3], n)))
                | "Lists" >> beam.CombinePerKey(TopFn(max(quotas.values())))
                | "Quota" >> beam.MapTuple(lambda k, ranked: (k, ranked[:quotas[k[0]]])))
