"""Point-in-time user history: what the user did strictly before each example.

For an example of user u at time t, the history features are built from u's
events with timestamp < t only: the last N interacted values (item ids,
categories, ...; most recent first) and counts of events by funnel type. An
event at t itself, or later, can never reach the example: that is what keeps
later splits out of earlier examples' features.

No worker ever holds a user's events, nor a time bucket of them: a user
with a million events makes no group larger than the ones below. Each
second of a user's events is summarised by a combiner as its counts and its
last N interactions (:class:`Summary`, bounded whatever the events), and the
seconds' summaries of each (user, time bucket) as the bucket's; a user's
bucket summaries (one per active bucket) give the state entering each bucket
with examples; each (user, bucket) then walks its seconds' summaries (at most
one per second of the bucket) to the state at each second that has examples;
and that state is handed to the second's examples by key
(:class:`pipelines.keyed.AttachOne`, streamed, never listed).
"""

from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Sequence, Tuple

import apache_beam as beam

from pipelines.keyed import AttachOne, held
from pipelines.parse import EVENT_TYPE_KEY
from shoprec.core import dataset as ds
from shoprec.core import registry as F

# (timestamp, funnel order, event type, the value of each history list feature):
# sorted, events at one instant follow the funnel (a view before its purchase).
Entry = Tuple[int, int, str, Tuple[str, ...]]
_ORDER = {stage: i for i, stage in enumerate(ds.FUNNEL)}


class State(NamedTuple):
    """History so far: interacted values (oldest first, capped) and counts per type."""

    last: Tuple[Tuple[str, ...], ...] = ()
    counts: Tuple[Tuple[str, int], ...] = ()


def advance(state: State, entries: Sequence[Entry], interactions: Sequence[str],
            cap: int) -> State:
    """The state after ``entries`` (in time order) have happened."""
    last = list(state.last)
    counts = dict(state.counts)
    for _, _, event_type, values in entries:
        counts[event_type] = counts.get(event_type, 0) + 1
        if event_type in interactions:
            last.append(values)
    return State(tuple(last[-cap:]) if cap else (), tuple(sorted(counts.items())))


def merge(state: State, summary: State, cap: int) -> State:
    """``state`` followed by a later bucket's ``summary``."""
    counts = dict(state.counts)
    for event_type, n in summary.counts:
        counts[event_type] = counts.get(event_type, 0) + n
    last = (state.last + summary.last)[-cap:] if cap else ()
    return State(last, tuple(sorted(counts.items())))


def history_features(state: State, registry: F.Registry) -> Dict[str, Any]:
    """Registry history features of a state (match counts: see :func:`add_matches`)."""
    counts = dict(state.counts)
    out: Dict[str, Any] = {}
    for i, f in enumerate(registry.history_lists()):
        out[f.name] = [values[i] for values in reversed(state.last)][:f.max_length]
    for f in registry.of_source(F.Source.HISTORY):
        if f.kind == F.Kind.NUMERIC and f.event_type:
            out[f.name] = float(counts.get(f.event_type, 0))
    return out


def empty_history(registry: F.Registry) -> Dict[str, Any]:
    """History features of a user with no earlier event."""
    return history_features(State(), registry)


def add_matches(row: Dict[str, Any], registry: F.Registry) -> Dict[str, Any]:
    """Sets each match count: how often the example's own value is in its history list.

    Needs the row's history lists and item attributes (call after the join).
    """
    lists = {f.history_of: f.name for f in registry.history_lists()}
    for f in registry.of_source(F.Source.HISTORY):
        if f.kind == F.Kind.NUMERIC and f.history_of:
            row[f.name] = float(row[lists[f.history_of]].count(row[f.history_of]))
    return row


def cap_of(registry: F.Registry) -> int:
    return max((f.max_length for f in registry.history_lists()), default=0)


class Summary(NamedTuple):
    """Some events of one user: counts per type and the latest ``cap`` interactions.

    ``kept`` holds whole entries, in time order, so summaries of any events
    merge in any order (a combiner's accumulators) and still give the
    :class:`State` that :func:`advance` over the events in time order gives.
    """

    counts: Tuple[Tuple[str, int], ...] = ()
    kept: Tuple[Entry, ...] = ()

    def state(self) -> State:
        return State(tuple(values for *_, values in self.kept), self.counts)


def summary_of(entry: Entry, interactions: Sequence[str], cap: int) -> Summary:
    """The summary of one event."""
    kept = (entry,) if cap and entry[2] in interactions else ()
    return Summary(((entry[2], 1),), kept)


class _SummaryFn(beam.CombineFn):
    """Summaries of one key's events → their :class:`Summary`: bounded whatever the key."""

    def __init__(self, cap: int):
        self._cap = cap

    def create_accumulator(self):
        return {}, []

    def add_input(self, acc, summary: Summary):
        counts, kept = acc
        for event_type, n in summary.counts:
            counts[event_type] = counts.get(event_type, 0) + n
        kept.extend(summary.kept)
        if len(kept) > 2 * self._cap:
            kept[:] = sorted(kept)[-self._cap:]
        return acc

    def merge_accumulators(self, accs):
        counts: Dict[str, int] = {}
        kept: List[Entry] = []
        for part_counts, part_kept in accs:
            for event_type, n in part_counts.items():
                counts[event_type] = counts.get(event_type, 0) + n
            kept.extend(part_kept)
        return counts, sorted(kept)[-self._cap:] if self._cap else []

    def extract_output(self, acc) -> Summary:
        counts, kept = acc
        return Summary(tuple(sorted(counts.items())),
                       tuple(sorted(kept)[-self._cap:]) if self._cap else ())


class HistoryOutputs(NamedTuple):
    main: beam.PCollection  # (example, its history features)
    users: beam.PCollection  # (user_id, history features after the user's last event)


class AddHistory(beam.PTransform):
    """Examples → (example, its point-in-time history features) (see module docstring).

    Args:
        registry: History features to compute.
        interactions: Funnel types whose items enter the history lists.
        bucket_s: Bucket width in seconds.
        events: Clean event dicts of every user.
        items: (item_id, item-table row) for history values of item features.
    """

    def __init__(self, registry: F.Registry, interactions: Sequence[str], bucket_s: int,
                 events: beam.PCollection, items: beam.PCollection):
        super().__init__()
        self._registry = registry
        self._interactions = tuple(interactions)
        self._bucket_s = int(bucket_s)
        self._events = events
        self._items = items

    def expand(self, examples) -> HistoryOutputs:
        registry, interactions, bucket_s = self._registry, self._interactions, self._bucket_s
        cap = cap_of(registry)
        sources = [f.history_of for f in registry.history_lists()]

        def values_of(item_id, item):
            return tuple(str(item_id if s == registry.item_key else item.get(s, ""))
                         for s in sources)

        def to_summary(event, items):
            item_id = event[F.ITEM_KEY]
            values = items.get(item_id) or values_of(item_id, {})
            event_type, ts = event[EVENT_TYPE_KEY], event[F.TIMESTAMP_KEY]
            return (event[F.USER_KEY], ts), summary_of((ts, _ORDER[event_type], event_type,
                                                        values), interactions, cap)

        def in_bucket(user_ts, summary):
            user, ts = user_ts
            return (user, ts // bucket_s), (ts, summary)

        # Every worker holds each item's history values, not its row.
        item_values = self._items | "ItemColumns" >> beam.MapTuple(
            lambda item_id, row: (item_id, values_of(item_id, row)))
        seconds = (self._events
                   | "ToSummary" >> beam.Map(to_summary, items=beam.pvalue.AsDict(item_values))
                   | "SummariseSecond" >> beam.CombinePerKey(_SummaryFn(cap))
                   | "SecondInBucket" >> beam.MapTuple(in_bucket))
        summaries = (seconds
                     | "BucketSummaries" >> beam.MapTuple(lambda k, ts_s: (k, ts_s[1]))
                     | "SummariseBucket" >> beam.CombinePerKey(_SummaryFn(cap))
                     | "ByUser" >> beam.MapTuple(lambda k, s: (k[0], (k[1], s.state()))))
        wanted_seconds = (examples
                          | "ExampleSecond" >> beam.Map(
                              lambda r: (r[F.USER_KEY], r[F.TIMESTAMP_KEY]))
                          | "DistinctSeconds" >> beam.Distinct()
                          | "WantedInBucket" >> beam.MapTuple(
                              lambda user, ts: ((user, ts // bucket_s), ts)))
        wanted = (wanted_seconds
                  | "WantedBucket" >> beam.Keys()
                  | "DistinctBuckets" >> beam.Distinct())

        def prefixes(user_and_groups):
            user, groups = user_and_groups
            done = dict(groups["summaries"])
            wanted_buckets = set(groups["wanted"])
            held("history/buckets_of_user", len(done) + len(wanted_buckets))
            state = State()
            for bucket in sorted(set(done) | wanted_buckets):
                if bucket in wanted_buckets:
                    yield (user, bucket), state
                if bucket in done:
                    state = merge(state, done[bucket], cap)
            yield beam.pvalue.TaggedOutput("final", (user, history_features(state, registry)))

        entering = ({"summaries": summaries, "wanted": wanted}
                    | "GroupSummariesByUser" >> beam.CoGroupByKey()
                    | "StateEnteringBucket" >> beam.FlatMap(prefixes).with_outputs(
                        "final", main="main"))

        def at_seconds(key_and_groups):
            # One bucket of one user: at most a summary and a wanted time per second.
            (user, _), groups = key_and_groups
            if not groups["wanted"]:
                return
            state = groups["state"][0] if groups["state"] else State()
            done = sorted(groups["seconds"])
            held("history/seconds_of_bucket", len(done) + len(groups["wanted"]))
            upto = 0
            for ts in sorted(groups["wanted"]):
                while upto < len(done) and done[upto][0] < ts:  # strictly before
                    state = merge(state, done[upto][1].state(), cap)
                    upto += 1
                yield (user, ts), history_features(state, registry)

        states = ({"state": entering.main, "seconds": seconds, "wanted": wanted_seconds}
                  | "JoinBucket" >> beam.CoGroupByKey()
                  | "StateAtSeconds" >> beam.FlatMap(at_seconds))
        with_history = (examples
                        | "KeyExamples" >> beam.Map(
                            lambda r: ((r[F.USER_KEY], r[F.TIMESTAMP_KEY]), r))
                        | "AttachHistory" >> AttachOne(states))
        return HistoryOutputs(with_history, entering.final)
