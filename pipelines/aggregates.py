"""Point-in-time aggregates: per-key event counts and smoothed ratios strictly before each example.

A registry AGGREGATE feature counts one funnel event per key (the user, the
item, an item attribute, or the user with an item attribute) over a window of
UTC days: the example's day up to (not including) its timestamp, plus the
``window_days - 1`` whole days before it (``window_days: 0``: all time). A
ratio divides by a second count with additive smoothing toward the global
rate: ``(n + a * p) / (d + a)``, ``p`` the rate over every event on the days
before the example's day (0 before the first day), so no event at or after the
example reaches its value, not even through ``p``.

Streaming, as ``pipelines.history``, and no worker ever holds a key's
events, nor a day of them (a bot's, or an item everyone buys): a combiner
counts each second of a key's events per event type and those counts per
(key, day); a key's day summaries (one small mapping per active day) are
walked in day order with a running all-time total and the last
``max(window_days) - 1`` days only, giving the state entering each day that
has examples; each (key, day) walks its seconds' counts (at most one per
second of the day) to the values at each second that has examples; and
those values are handed to the second's examples by key
(:class:`pipelines.keyed.AttachOne`, streamed, never listed).

Scoring reads each key's state after the log's last event: user-keyed
aggregates ride in the history table (and, at the eval start, in the
at-eval history table), item- and attribute-keyed ones in the item table.
A pair aggregate (the user and an item attribute) rides in the user's
history row as its state: the value after the last event for every
attribute value the user has events of, and the value of one without
(:func:`pair_state`); the row assembler looks the candidate's attribute
value up in it (:func:`pair_value`), so scoring gives a pair what an example
just after the log's last event would get.
"""

from __future__ import annotations

import bisect
import collections
import json
from typing import Any, Dict, Iterable, Mapping, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam

from pipelines.keyed import AttachOne, held
from pipelines.parse import EVENT_TYPE_KEY
from shoprec.core import registry as F

DAY_S = 86400
Counts = Tuple[Tuple[str, int], ...]


def day_of(ts: int) -> int:
    return int(ts) // DAY_S


def _add(total: Dict[str, int], counts: Counts) -> None:
    for event_type, n in counts:
        total[event_type] = total.get(event_type, 0) + n


class Prior(NamedTuple):
    """Global counts per event type before each day: sorted days, cumulative counts."""

    days: Tuple[int, ...] = ()
    before: Tuple[Counts, ...] = ()  # before[i]: counts of the days before days[i]
    total: Counts = ()

    def counts_before(self, day: int) -> Dict[str, int]:
        i = bisect.bisect_left(self.days, day)
        return dict(self.before[i]) if i < len(self.days) else dict(self.total)


def build_prior(day_counts: Iterable[Tuple[Tuple[int, str], int]]) -> Prior:
    """((day, event type), count) pairs → :class:`Prior`."""
    per_day: Dict[int, Dict[str, int]] = collections.defaultdict(dict)
    for (day, event_type), n in day_counts:
        per_day[day][event_type] = per_day[day].get(event_type, 0) + n
    days, before, running = [], [], {}
    for day in sorted(per_day):
        days.append(day)
        before.append(tuple(sorted(running.items())))
        _add(running, tuple(per_day[day].items()))
    return Prior(tuple(days), tuple(before), tuple(sorted(running.items())))


class Entering(NamedTuple):
    """A key's counts before a day: all time, and per earlier day within the longest window."""

    total: Counts = ()
    recent: Tuple[Tuple[int, Counts], ...] = ()


def _window_count(f_event: str, window_days: int, day: int, entering: Entering,
                  today: Mapping[str, int]) -> int:
    if window_days == 0:
        earlier = dict(entering.total).get(f_event, 0)
    else:
        earlier = sum(dict(c).get(f_event, 0) for d, c in entering.recent
                      if d > day - window_days)
    return earlier + today.get(f_event, 0)


def values(features: Sequence[F.Feature], day: int, entering: Entering,
           today: Mapping[str, int], prior: Prior) -> Dict[str, float]:
    """Each feature's value on ``day`` given the key's earlier days and today's counts so far."""
    out: Dict[str, float] = {}
    global_before = None
    for f in features:
        n = _window_count(f.event_type, f.window_days, day, entering, today)
        if not f.ratio_to:
            out[f.name] = float(n)
            continue
        if global_before is None:
            global_before = prior.counts_before(day)
        d = _window_count(f.ratio_to, f.window_days, day, entering, today)
        den = global_before.get(f.ratio_to, 0)
        p = global_before.get(f.event_type, 0) / den if den else 0.0
        out[f.name] = (n + f.smoothing * p) / (d + f.smoothing)
    return out


def brute_force(features: Sequence[F.Feature], ts: int,
                key_events: Iterable[Tuple[int, str]],
                all_events: Iterable[Tuple[int, str]]) -> Dict[str, float]:
    """The definition, from whole logs: the reference the streaming job is tested against.

    Args:
        features: Aggregates of one key.
        ts: The example's timestamp.
        key_events: (timestamp, event type) of the key's events.
        all_events: (timestamp, event type) of every event (for the prior).
    """
    day = day_of(ts)
    out: Dict[str, float] = {}
    glob = collections.Counter(e for t, e in all_events if day_of(t) < day)
    for f in features:
        start = 0 if f.window_days == 0 else (day - f.window_days + 1) * DAY_S
        window = collections.Counter(e for t, e in key_events if start <= t < ts)
        if not f.ratio_to:
            out[f.name] = float(window[f.event_type])
            continue
        p = glob[f.event_type] / glob[f.ratio_to] if glob[f.ratio_to] else 0.0
        out[f.name] = (window[f.event_type] + f.smoothing * p) / (window[f.ratio_to]
                                                                 + f.smoothing)
    return out


def key_groups(features: Sequence[F.Feature]) -> Dict[Tuple[str, ...], Tuple[F.Feature, ...]]:
    """Aggregates grouped by key, in registry order: one streaming pass per key."""
    groups: Dict[Tuple[str, ...], Tuple[F.Feature, ...]] = {}
    for f in features:
        groups[f.aggregate_key] = groups.get(f.aggregate_key, ()) + (f,)
    return groups


def key_of(names: Sequence[str], user_id: Optional[str], item_id: Optional[str],
           items: Mapping[str, Mapping[str, Any]],
           registry: F.Registry) -> Optional[Tuple[str, ...]]:
    """The key of an event or example; None when it has no such key (a user probe)."""
    out = []
    for name in names:
        if name == registry.user_key:
            value = user_id
        elif item_id is None:
            return None
        elif name == registry.item_key:
            value = item_id
        else:
            value = (items.get(item_id) or {}).get(name, "")
        out.append(str(value))
    return tuple(out)


def pair_state(by_value: Mapping[str, float], unseen: float) -> str:
    """A pair aggregate's state for one user, as its history-table column holds it.

    Args:
        by_value: The value after the user's last event per attribute value
            the user has events of.
        unseen: The value of any other attribute value (no event: a count of
            0, a ratio's smoothed prior).
    """
    # JSON floats are Python reprs: the values come back exactly.
    return json.dumps({"by_value": dict(by_value), "unseen": float(unseen)}, sort_keys=True)


def read_pair_state(text: Optional[str]) -> Optional[Dict[str, Any]]:
    """Inverse of :func:`pair_state`; None (no state: a user the log lacks) stays None."""
    return None if text is None else json.loads(text)


def pair_value(feature: F.Feature, state: Optional[Mapping[str, Any]], item_id: str,
               item: Mapping[str, Any], registry: F.Registry) -> float:
    """A pair aggregate's value for a candidate, from the user's state (:func:`read_pair_state`).

    The candidate's attribute value is found as ingest keys an event
    (:func:`key_of`); no state (a user the log lacks) gives 0, as the user
    aggregates of such a user are.
    """
    if state is None:
        return 0.0
    (attribute,) = [n for n in feature.aggregate_key if n != registry.user_key]
    value = item_id if attribute == registry.item_key else item.get(attribute, "")
    return float(state["by_value"].get(str(value), state["unseen"]))


class _CountsFn(beam.CombineFn):
    """Counts per event type → their sum: one small mapping whatever the key's events."""

    def create_accumulator(self):
        return {}

    def add_input(self, total, counts: Counts):
        _add(total, counts)
        return total

    def merge_accumulators(self, totals):
        out: Dict[str, int] = {}
        for total in totals:
            _add(out, tuple(total.items()))
        return out

    def extract_output(self, total) -> Counts:
        return tuple(sorted(total.items()))


class AggregateOutputs(NamedTuple):
    main: beam.PCollection  # examples, each with its aggregate features
    # (user_id, {user aggregate: value, pair aggregate state column: state}) after
    # the last event
    users: beam.PCollection
    items: beam.PCollection  # (item_id, item row with its item aggregates after the last event)


class _AddKeyGroup(beam.PTransform):
    """Adds one key's aggregates to the examples that have that key; the others pass."""

    def __init__(self, names, features, registry, events, items, prior, end_day):
        super().__init__()
        self._names, self._features, self._registry = tuple(names), tuple(features), registry
        self._events, self._items, self._prior, self._end_day = events, items, prior, end_day

    def expand(self, examples):
        names, features, registry = self._names, self._features, self._registry
        span = max((f.window_days for f in features), default=0)
        # Every worker holds the attributes the key names, not the item rows.
        attributes = [n for n in names if n not in (registry.user_key, registry.item_key)]
        items = beam.pvalue.AsDict(self._items | "ItemColumns" >> beam.MapTuple(
            lambda item_id, row: (item_id, {a: row[a] for a in attributes if a in row})))
        prior = beam.pvalue.AsSingleton(self._prior)
        end_day = beam.pvalue.AsSingleton(self._end_day)

        def event_key(event, items):
            key = key_of(names, event[F.USER_KEY], event[F.ITEM_KEY], items, registry)
            return (key, event[F.TIMESTAMP_KEY]), ((event[EVENT_TYPE_KEY], 1),)

        seconds = (self._events
                   | "EventKeySecond" >> beam.Map(event_key, items=items)
                   | "CountSecond" >> beam.CombinePerKey(_CountsFn())
                   | "SecondInDay" >> beam.MapTuple(
                       lambda k, counts: ((k[0], day_of(k[1])), (k[1], counts))))
        summaries = (seconds
                     | "DayCounts" >> beam.MapTuple(lambda k, ts_counts: (k, ts_counts[1]))
                     | "CountDay" >> beam.CombinePerKey(_CountsFn())
                     | "ByKey" >> beam.MapTuple(lambda k, counts: (k[0], (k[1], counts))))

        def example_key(row, items):
            return key_of(names, row.get(F.USER_KEY), row.get(F.ITEM_KEY), items, registry)

        keyed, passing = examples | "HasKey" >> beam.Partition(
            lambda row, _, items: 0 if example_key(row, items) is not None else 1, 2,
            items=items)
        keyed = keyed | "KeyExamples" >> beam.Map(
            lambda row, items: ((example_key(row, items), row[F.TIMESTAMP_KEY]), row),
            items=items)
        wanted_seconds = (keyed
                          | "ExampleKeySecond" >> beam.Keys()
                          | "DistinctKeySeconds" >> beam.Distinct()
                          | "WantedInDay" >> beam.MapTuple(
                              lambda key, ts: ((key, day_of(ts)), ts)))
        wanted = (wanted_seconds
                  | "WantedKeyDay" >> beam.Keys()
                  | "DistinctKeyDays" >> beam.Distinct())

        def walk(key_and_groups, prior, end_day):
            key, groups = key_and_groups
            done = dict(groups["summaries"])
            wanted_days = set(groups["wanted"])
            held("aggregates/days_of_key", len(done) + len(wanted_days))
            total: Dict[str, int] = {}
            recent: collections.deque = collections.deque()
            for day in sorted(set(done) | wanted_days | {end_day}):
                while recent and recent[0][0] <= day - span:
                    recent.popleft()  # only what the longest window still needs
                entering = Entering(tuple(sorted(total.items())), tuple(recent))
                if day in wanted_days:
                    yield (key, day), entering
                if day == end_day:
                    today = dict(done.get(day, ()))
                    yield beam.pvalue.TaggedOutput("final", (key, values(
                        features, day, entering, today, prior)))
                if day in done:
                    _add(total, done[day])
                    if span:
                        recent.append((day, done[day]))

        entering = ({"summaries": summaries, "wanted": wanted}
                    | "GroupDaysByKey" >> beam.CoGroupByKey()
                    | "StateEnteringDay" >> beam.FlatMap(
                        walk, prior=prior, end_day=end_day).with_outputs("final", main="main"))

        def at_seconds(key_and_groups, prior):
            # One day of one key: at most a count and a wanted time per second.
            (key, day), groups = key_and_groups
            if not groups["wanted"]:
                return
            state = groups["state"][0] if groups["state"] else Entering()
            done = sorted(groups["seconds"])
            held("aggregates/seconds_of_day", len(done) + len(groups["wanted"]))
            today: Dict[str, int] = {}
            upto = 0
            for ts in sorted(groups["wanted"]):
                while upto < len(done) and done[upto][0] < ts:  # strictly before
                    _add(today, done[upto][1])
                    upto += 1
                yield (key, ts), values(features, day, state, today, prior)

        states = ({"state": entering.main, "seconds": seconds, "wanted": wanted_seconds}
                  | "JoinKeyDay" >> beam.CoGroupByKey()
                  | "ValuesAtSeconds" >> beam.FlatMap(at_seconds, prior=prior))
        added = (keyed
                 | "AttachValues" >> AttachOne(states)
                 | "WithValues" >> beam.MapTuple(lambda row, vals: dict(row, **vals)))
        return ((added, passing) | "WithPassing" >> beam.Flatten()), entering.final


class AddAggregates(beam.PTransform):
    """Examples → examples with their point-in-time aggregates (see module docstring).

    Examples (and user probes, which have no item) are dicts with the
    canonical user and item keys and a timestamp; one lacking part of a key
    (a probe, for item keys) passes that key's stage unchanged.

    Args:
        registry: The run's registry; its AGGREGATE features are computed.
        events: Clean event dicts of every user.
        items: (item_id, item-table row), for attribute keys and the item table.
    """

    def __init__(self, registry: F.Registry, events: beam.PCollection,
                 items: beam.PCollection):
        super().__init__()
        self._registry, self._events, self._items = registry, events, items

    def expand(self, examples) -> AggregateOutputs:
        registry, events = self._registry, self._events
        prior = (events
                 | "EventDayType" >> beam.Map(
                     lambda e: (day_of(e[F.TIMESTAMP_KEY]), e[EVENT_TYPE_KEY]))
                 | "CountDayType" >> beam.combiners.Count.PerElement()
                 | "AllDayCounts" >> beam.combiners.ToList()
                 | "Prior" >> beam.Map(build_prior))
        # Scoring's state: after the last event, on the day of the second after it.
        end_day = (events
                   | "EventTimes" >> beam.Map(lambda e: e[F.TIMESTAMP_KEY])
                   | "LastEvent" >> beam.CombineGlobally(max)
                   | "EndDay" >> beam.Map(lambda ts: day_of(ts + 1)))
        finals = {}
        for names, features in key_groups(registry.aggregates()).items():
            label = "By" + "X".join(n.title().replace("_", "") for n in names)
            examples, finals[names] = examples | label >> _AddKeyGroup(
                names, features, registry, events, self._items, prior, end_day)
        users = self._users(finals, prior, end_day)
        items = self._with_item_aggregates(finals, prior, end_day)
        return AggregateOutputs(examples, users, items)

    def _users(self, finals, prior, end_day) -> beam.PCollection:
        """Each user's aggregates and pair aggregate states after the last event."""
        registry = self._registry
        parts = {}
        key = (registry.user_key,)
        if key in finals:
            parts["user"] = finals[key] | "UserFinal" >> beam.MapTuple(lambda k, v: (k[0], v))
        for names, features in key_groups(registry.pair_aggregates()).items():
            label = "Pairs" + "X".join(n.title().replace("_", "") for n in names)
            at = names.index(registry.user_key)

            def states(user_and_values, prior, end_day, features=features):
                user, per_value = user_and_values
                unseen = values(features, end_day, Entering(), {}, prior)
                per_value = sorted(per_value)
                yield user, {registry.pair_state_name(f): pair_state(
                    {v: vals[f.name] for v, vals in per_value}, unseen[f.name])
                    for f in features}

            parts[label] = (finals[names]
                            | f"{label}ByUser" >> beam.MapTuple(
                                lambda k, v, at=at: (k[at], (k[1 - at], v)))
                            | f"{label}GroupByUser" >> beam.GroupByKey()
                            | f"{label}State" >> beam.FlatMap(
                                states, prior=beam.pvalue.AsSingleton(prior),
                                end_day=beam.pvalue.AsSingleton(end_day)))
        if not parts:
            return self._events.pipeline | "NoUserAggregates" >> beam.Create([])

        def merged(user_and_groups):
            user, groups = user_and_groups
            out: Dict[str, Any] = {}
            for rows in groups.values():
                for row in rows:
                    out.update(row)
            return user, out

        return parts | "JoinUserFinals" >> beam.CoGroupByKey() | "UserFinals" >> beam.Map(merged)

    def _with_item_aggregates(self, finals, prior, end_day) -> beam.PCollection:
        """Item rows, each with every item and attribute aggregate after the last event."""
        registry, items = self._registry, self._items
        for names, features in key_groups(registry.item_aggregates()).items():
            label = "Items" + "X".join(n.title().replace("_", "") for n in names)
            name = names[0]

            def attach(key_and_groups, prior, end_day, features=features):
                _, groups = key_and_groups
                final = groups["final"][0] if groups["final"] else values(
                    features, end_day, Entering(), {}, prior)
                for item_id, row in groups["items"]:
                    yield item_id, dict(row, **final)

            by_key = items | f"{label}Key" >> beam.Map(
                lambda kv, name=name: ((str(kv[0] if name == registry.item_key
                                            else kv[1].get(name, "")),), kv))
            items = ({"items": by_key, "final": finals[names]}
                     | f"{label}Join" >> beam.CoGroupByKey()
                     | f"{label}Attach" >> beam.FlatMap(
                         attach, prior=beam.pvalue.AsSingleton(prior),
                         end_day=beam.pvalue.AsSingleton(end_day)))
        return items


def with_user_aggregates(history: Mapping[str, Any], user_final: Optional[Mapping[str, Any]],
                         registry: F.Registry) -> Dict[str, Any]:
    """A history-table row with the user's aggregates and pair aggregate states.

    A user without them gets 0 for each, and states of no attribute value
    whose unseen value is 0.
    """
    out = dict(history)
    out.update({f.name: 0.0 for f in registry.user_aggregates()})
    out.update({registry.pair_state_name(f): pair_state({}, 0.0)
                for f in registry.pair_aggregates()})
    out.update(user_final or {})
    return out


def empty_aggregates(features: Sequence[F.Feature]) -> Dict[str, float]:
    """What scoring gives a user the log lacks: no earlier event."""
    return {f.name: 0.0 for f in features}
