"""Impression examples from clean event tables: one group per pair and one per user, not per event.

The batch path of ingest for impression logs (:func:`supports`). It does what
DedupEvents → FilterRobots → CountCleanLog → BuildExamples → JoinFeatures →
SplitByTime → Count* do on one element per event, with the same functions
(:func:`pipelines.events.match_labels`, :func:`pipelines.anomaly.anomaly_row`,
:func:`pipelines.pair_examples.PairExamples`, byte for byte ``raw_row``'s
examples, as scoring assembles its), the same dead letters and counters, and
two keyed groups:

1. **GroupByPair**: a (user, item) pair's events, listed as BuildExamples
   lists them, are deduplicated there (identical events share their pair);
   each pair sends its events per minute bucket to the robot counts
   (a combine per (user, bucket), as FilterRobots).
2. **GroupPairsByUser**: each user's row (users table), robotic start
   (``pipelines.anomaly.score_users``) and deduplicated pairs, read as
   ``pipelines.keyed.AttachOne`` reads a group (the two single values
   first, then each pair): nothing of the user's is listed, so a hot user's
   events are streamed, as on the row path. Each pair's events drop the
   robotic ones, are labelled, joined with the user's row and the item's
   (the catalogue side input, as JoinFeatures), split by time, counted and
   encoded here.

Outputs are batches: the clean event log as Arrow tables, raw examples as
framed TFRecords per split and shard (``pipelines.sinks.sharded``), each
record the row path's bytes in the row path's shard.
"""

from __future__ import annotations

import collections
import json
from typing import Any, Dict, List, NamedTuple, Tuple

import apache_beam as beam
import pyarrow as pa
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from pipelines import dead_letter as dl
from pipelines.anomaly import robot_event, score_users
from pipelines.event_batches import BATCH_ROWS
from pipelines.event_log import schema as log_schema
from pipelines.events import CLICK, CONVERSION, event_record, label_pair
from pipelines.parse import EVENTS, EVENT_TYPE_KEY, csv_line
from pipelines.pair_examples import PairExamples
from pipelines.sinks import sharded
from pipelines.split import example_counts, split_of
from shoprec.core import dataset as ds
from shoprec.core import registry as F
from shoprec.core.layout import SPLITS

_USER, _START, _PAIR = 0, 1, 2
_FUNNEL = ("impression", "click", "purchase")
_EVENTS_TAG, _PAIRS_TAG, _ITEMS_TAG = "events", "eval_pairs", "items"
# (user, bucket) counts one Dedup worker sums before handing them on.
MAX_BUCKETS = 100_000
# Items' parts of an example one Label worker keeps (the catalogue's, within its limit).
MAX_ITEM_PARTS = 1_000_000


def supports(config) -> bool:
    """Whether the batch path makes this config's examples: impression labels, an
    items table, no history, aggregates or next-event targets (those read the
    event log per user and item in their own transforms)."""
    registry = config.registry
    return (config.data.labels == "impressions" and not config.data.items.from_events
            and not registry.of_source(F.Source.HISTORY)
            and not registry.of_source(F.Source.NEXT) and not registry.aggregates())


class ImpressionOutputs(NamedTuple):
    # {split: (shard, framed TFRecords)} (pipelines.sinks.sharded)
    examples: Dict[str, beam.PCollection]
    events: beam.PCollection  # the clean event log, as Arrow tables
    anomalies: beam.PCollection  # per-user anomaly rows (pipelines.anomaly)
    eval_pairs: beam.PCollection  # distinct eval (user_id, item_id) as CSV lines, in blocks
    dead_letter: beam.PCollection


def _pairs(events: pa.Table):
    """A clean event table → ((user, item), [(timestamp, event_type, kept...)]) per pair."""
    names = events.column_names
    rest = [events.column(n).to_pylist() for n in names if n not in (F.USER_KEY, F.ITEM_KEY)]
    keys = zip(events.column(F.USER_KEY).to_pylist(), events.column(F.ITEM_KEY).to_pylist())
    pairs: Dict[Tuple[str, str], List[tuple]] = collections.defaultdict(list)
    for key, values in zip(keys, zip(*rest)):
        pairs[key].append(values)
    return pairs.items()


class _Dedup(beam.DoFn):
    """A pair's events → the pair's distinct events, their duplicates; robot counts.

    The counts per (user, minute bucket) are summed over the bundle before
    they go to the combine (at most :data:`MAX_BUCKETS` keys held).
    """

    def __init__(self, names, policy: str, window_s: int):
        self._names = [n for n in names if n not in (F.USER_KEY, F.ITEM_KEY)]
        self._ts = self._names.index(F.TIMESTAMP_KEY)
        self._policy = policy
        self._window_s = window_s
        self._buckets: Dict[Tuple[str, int], int] = {}

    def start_bundle(self):
        self._buckets = {}

    def process(self, pair_and_chunks):
        (user_id, item_id), chunks = pair_and_chunks
        copies: Dict[tuple, int] = {}
        for chunk in chunks:
            for values in chunk:
                copies[values] = copies.get(values, 0) + 1
        for values, count in copies.items():
            if count == 1:
                continue
            if self._policy == "quantity":
                beam.metrics.Metrics.counter(dl.NAMESPACE, "units_collapsed/events").inc(
                    count - 1)
                continue
            record = event_record(self._event(user_id, item_id, values))
            for _ in range(count - 1):
                yield dl.tagged(EVENTS, "duplicate_event", f"{count} identical copies", record)
        buckets, ts, window_s = self._buckets, self._ts, self._window_s
        for values in copies:
            key = (user_id, values[ts] // window_s)
            buckets[key] = buckets.get(key, 0) + 1
        if len(buckets) >= MAX_BUCKETS:
            yield from self._counts()
        yield user_id, (_PAIR, (item_id, sorted(copies)))  # tagged for GroupPairsByUser

    def _counts(self):
        for key_and_count in self._buckets.items():
            yield beam.pvalue.TaggedOutput("buckets", key_and_count)
        self._buckets = {}

    def finish_bundle(self):
        for out in self._counts():
            yield beam.pvalue.TaggedOutput(
                out.tag, WindowedValue(out.value, MIN_TIMESTAMP, [GlobalWindow()]))

    def _event(self, user_id, item_id, values) -> Dict[str, Any]:
        event = {F.USER_KEY: user_id, F.ITEM_KEY: item_id}
        event.update(zip(self._names, values))
        return event


class _Label(beam.DoFn):
    """A user's group → robot dead letters, clean log, labelled, joined, encoded examples."""

    def __init__(self, names, config):
        registry = config.registry
        self._names = [n for n in names if n not in (F.USER_KEY, F.ITEM_KEY)]
        self._at = (self._names.index(F.TIMESTAMP_KEY), self._names.index(EVENT_TYPE_KEY))
        self._log_schema = log_schema(config.data.event_columns_kept())
        self._registry = registry
        self._anomaly = config.data.anomaly
        self._windows = (int(config.ingest.click_window_s),
                         int(config.ingest.conversion_window_s))
        by_event = {f.event_type: f.name for f in registry.event_labels()}
        self._labels = {CLICK: by_event.get("click"), CONVERSION: by_event.get("purchase")}
        self._starts = config.split_starts
        self._num_shards = int(config.ingest.num_shards)
        self._parts = None
        self._log: List[tuple] = []
        self._items: set = set()

    def setup(self):
        self._parts = PairExamples(self._registry, labelled=True)
        self._item_runs: Dict[str, Tuple[bytes, ...]] = {}

    def start_bundle(self):
        self._log, self._items = [], set()
        # Per split: the examples' labelled events (for the counters) and their records.
        self._events: Dict[str, List[Dict[str, Any]]] = {split: [] for split in SPLITS}
        self._records: Dict[str, List[bytes]] = {split: [] for split in SPLITS}
        self._pairs: List[str] = []

    def process(self, user_and_values, items):
        user_id, values = user_and_values
        user = start = None
        for tag, value in values:
            if tag == _USER:
                user = value
            elif tag == _START:
                start = value
        types: collections.Counter = collections.Counter()  # clean events by type
        part = None
        for tag, value in values:
            if tag == _PAIR:
                if part is None:
                    # The user's part of every example, built once (as scoring builds it
                    # per user), for a user with events (not each row of the users table).
                    part = self._parts.user(user_id, user, None)
                yield from self._pair(user_id, value, part, start, items, types)
        for kind, n in types.items():
            beam.metrics.Metrics.counter(dl.NAMESPACE, f"clean/events/{kind}").inc(n)
        if types:
            beam.metrics.Metrics.counter(dl.NAMESPACE, "clean/users").inc()
        if len(self._log) >= BATCH_ROWS:
            yield beam.pvalue.TaggedOutput(_EVENTS_TAG, self._table())
        if sum(len(records) for records in self._records.values()) >= BATCH_ROWS:
            yield from self._shards()

    def _pair(self, user_id, item_and_events, user, start, items, types):
        item_id, events = item_and_events
        anomaly, registry = self._anomaly, self._registry
        ts_at, type_at = self._at
        if start is not None:
            clean = []
            for values in events:
                event = {F.USER_KEY: user_id, F.ITEM_KEY: item_id}
                event.update(zip(self._names, values))
                kept = robot_event(event, start, anomaly.max_events, anomaly.window_s,
                                   anomaly.pass_flagged)
                if kept is event:
                    clean.append(values)
                else:
                    yield kept
            events = clean
        self._log.extend((user_id, item_id) + values for values in events)
        types.update(values[type_at] for values in events)
        funnel = [(values[ts_at], values[type_at]) for values in events
                  if values[type_at] in _FUNNEL]
        if events:
            self._items.add(item_id)
        if not funnel:
            return
        item = items.get(item_id)
        item_runs = None if item is None else self._item_runs.get(item_id)
        if item is not None and item_runs is None:
            if len(self._item_runs) >= MAX_ITEM_PARTS:
                self._item_runs.clear()
            item_runs = self._item_runs[item_id] = self._parts.item(item)
        in_eval = False
        for event in label_pair(user_id, item_id, funnel, *self._windows, self._labels):
            if isinstance(event, beam.pvalue.TaggedOutput):
                yield event  # an orphan click or purchase
                continue
            if item is None:
                yield dl.tagged(EVENTS, "unknown_item", "item not in the item table",
                                json.dumps(event, sort_keys=True, default=str))
                continue
            event.setdefault(registry.sampled_key, 0)
            split = SPLITS[split_of(event[F.TIMESTAMP_KEY], *self._starts)]
            in_eval = in_eval or split == "eval"
            self._events[split].append(event)
            self._records[split].append(self._parts.example(user, item_id, item, item_runs,
                                                            event))
        if in_eval:
            self._pairs.append(csv_line([user_id, item_id]))

    def _shards(self):
        """The buffered examples, encoded, as (shard, framed records) per split; eval
        pairs as CSV lines, one block."""
        if self._pairs:
            yield beam.pvalue.TaggedOutput(_PAIRS_TAG, "\n".join(self._pairs))
            self._pairs = []
        for split, records in self._records.items():
            for name, n in example_counts(self._events[split], split, self._registry).items():
                beam.metrics.Metrics.counter(dl.NAMESPACE, name).inc(n)
            for shard, framed in sharded(records, self._num_shards).items():
                yield beam.pvalue.TaggedOutput(split, (shard, framed))
        self._records = {split: [] for split in SPLITS}
        self._events = {split: [] for split in SPLITS}

    def _table(self) -> pa.Table:
        names = [F.USER_KEY, F.ITEM_KEY] + self._names
        table = pa.table({name: pa.array(list(column), self._log_schema.field(name).type)
                          for name, column in zip(names, zip(*self._log))})
        self._log = []
        return table.select(self._log_schema.names)

    def finish_bundle(self):
        for out in self._shards():
            yield beam.pvalue.TaggedOutput(
                out.tag, WindowedValue(out.value, MIN_TIMESTAMP, [GlobalWindow()]))
        if self._log:
            yield beam.pvalue.TaggedOutput(
                _EVENTS_TAG, WindowedValue(self._table(), MIN_TIMESTAMP, [GlobalWindow()]))
        if self._items:
            yield beam.pvalue.TaggedOutput(
                _ITEMS_TAG, WindowedValue(frozenset(self._items), MIN_TIMESTAMP,
                                          [GlobalWindow()]))
            self._items = set()


def _union(sets) -> frozenset:
    return frozenset().union(*sets)


def _count_items(items: frozenset) -> None:
    if items:
        beam.metrics.Metrics.counter(dl.NAMESPACE, "clean/items").inc(len(items))


class ImpressionExamples(beam.PTransform):
    """Clean event tables (``pipelines.event_batches.ValidEvents``) → :class:`ImpressionOutputs`.

    Args:
        config: The run config (:func:`supports` it).
        users: (user_id, user row) from ``ParseUsers``.
        items: (item_id, item-table row): the catalogue side input.
    """

    def __init__(self, config, users: beam.PCollection, items: beam.PCollection):
        super().__init__()
        if config.data.dedup not in ds.DEDUP_POLICIES:
            raise ValueError(f"dedup policy must be one of {ds.DEDUP_POLICIES}")
        self._config = config
        self._users = users
        self._items = items

    def expand(self, events) -> ImpressionOutputs:
        config = self._config
        anomaly = config.data.anomaly
        names = log_schema(config.data.event_columns_kept()).names
        names = [F.TIMESTAMP_KEY, F.USER_KEY, F.ITEM_KEY, EVENT_TYPE_KEY] + [
            n for n in names if n not in (F.TIMESTAMP_KEY, F.USER_KEY, F.ITEM_KEY,
                                          EVENT_TYPE_KEY)]
        deduped = (events
                   | "Pairs" >> beam.FlatMap(lambda table: _pairs(
                       table.select(names)))
                   | "GroupByPair" >> beam.GroupByKey()
                   | "Dedup" >> beam.ParDo(_Dedup(names, config.data.dedup, anomaly.window_s))
                   .with_outputs("buckets", dl.DEAD_LETTER_TAG, main="main"))
        per_bucket = deduped.buckets | "CountPerBucket" >> beam.CombinePerKey(sum)
        users, flagged = score_users(per_bucket, anomaly.window_s, anomaly.max_events)
        tagged = [self._users | "TagUsers" >> beam.MapTuple(lambda k, v: (k, (_USER, v))),
                  deduped.main]
        if flagged is not None:
            tagged.append(flagged | "TagStarts" >> beam.MapTuple(lambda k, v: (k, (_START, v))))
        out = (tagged
               | "Tagged" >> beam.Flatten()
               | "GroupPairsByUser" >> beam.GroupByKey()
               | "Label" >> beam.ParDo(_Label(names, config),
                                       items=beam.pvalue.AsDict(self._items))
               .with_outputs(_EVENTS_TAG, _PAIRS_TAG, _ITEMS_TAG, dl.DEAD_LETTER_TAG, *SPLITS,
                             main="main"))
        # A union of catalogue ids (no default: nothing counted for an empty log).
        _ = (out[_ITEMS_TAG]
             | "CleanItems" >> beam.CombineGlobally(_union).without_defaults()
             | "CountItems" >> beam.Map(_count_items))
        dead = ((deduped[dl.DEAD_LETTER_TAG], out[dl.DEAD_LETTER_TAG])
                | "DeadLetters" >> beam.Flatten())
        return ImpressionOutputs({split: out[split] for split in SPLITS}, out[_EVENTS_TAG],
                                 users, out[_PAIRS_TAG], dead)
