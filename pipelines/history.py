"""Point-in-time user history: what the user did strictly before each example.

For an example of user u at time t, the history features are built from u's
events with timestamp < t only: the last N interacted values (item ids,
categories, ...; most recent first) and counts of events by funnel type. An
event at t itself, or later, can never reach the example: that is what keeps
later splits out of earlier examples' features.

The log is never gathered per user. Events are grouped per (user, time
bucket); each bucket is summarised as its last N interactions and its counts;
a user's summaries (N entries per active bucket, not the log) give the state
entering each bucket with examples; and each (user, bucket) then replays only
its own events in time order up to each example. A worker holds at most one
bucket of one user's events, or N entries per bucket of one user.
"""

from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Sequence, Tuple

import apache_beam as beam

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

        def to_entry(event, items):
            item_id = event[F.ITEM_KEY]
            item = items.get(item_id) or {}
            values = tuple(str(item_id if s == registry.item_key else item.get(s, ""))
                           for s in sources)
            key = (event[F.USER_KEY], event[F.TIMESTAMP_KEY] // bucket_s)
            event_type = event[EVENT_TYPE_KEY]
            return key, (event[F.TIMESTAMP_KEY], _ORDER[event_type], event_type, values)

        buckets = (self._events
                   | "ToEntry" >> beam.Map(to_entry, items=beam.pvalue.AsDict(self._items))
                   | "GroupByUserBucket" >> beam.GroupByKey()
                   | "SortBucket" >> beam.MapTuple(lambda k, es: (k, sorted(es))))
        summaries = buckets | "Summarise" >> beam.MapTuple(
            lambda k, es: (k[0], (k[1], advance(State(), es, interactions, cap))))
        wanted = (examples
                  | "ExampleBucket" >> beam.Map(
                      lambda r: (r[F.USER_KEY], r[F.TIMESTAMP_KEY] // bucket_s))
                  | "DistinctBuckets" >> beam.Distinct())

        def prefixes(user_and_groups):
            user, groups = user_and_groups
            done = dict(groups["summaries"])
            wanted_buckets = set(groups["wanted"])
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

        def replay(key_and_groups):
            _, groups = key_and_groups
            if not groups["examples"]:
                return
            state = groups["state"][0] if groups["state"] else State()
            entries: List[Entry] = groups["entries"][0] if groups["entries"] else []
            done = 0
            for row in sorted(groups["examples"], key=lambda r: r[F.TIMESTAMP_KEY]):
                ts = row[F.TIMESTAMP_KEY]
                upto = done
                while upto < len(entries) and entries[upto][0] < ts:  # strictly before
                    upto += 1
                state = advance(state, entries[done:upto], interactions, cap)
                done = upto
                yield row, history_features(state, registry)

        keyed = examples | "KeyExamples" >> beam.Map(
            lambda r: ((r[F.USER_KEY], r[F.TIMESTAMP_KEY] // bucket_s), r))
        with_history = ({"state": entering.main, "entries": buckets, "examples": keyed}
                        | "JoinBucket" >> beam.CoGroupByKey()
                        | "Replay" >> beam.FlatMap(replay))
        return HistoryOutputs(with_history, entering.final)
