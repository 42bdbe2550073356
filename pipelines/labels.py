"""Examples and labels for logs without impressions.

Two ways to make examples where there is no impression to hang a label on:

* funnel (:class:`FunnelExamples`, e.g. Taobao pv → cart → buy): an example
  is a viewed (user, item) pair, at its first view in a split; each label is
  whether its funnel event follows, at or after the view and before the end
  of that split. Labels are over *every* view (entire space: ``buy`` is not
  conditioned on ``cart``), and never read an event from a later split.
* sampled (:class:`SampledPositives`, e.g. H&M purchases): every purchase is
  a positive; ``pipelines.negatives`` adds the sampled negatives.

A label may also require a value of an event column (H&M's ``online`` label:
a purchase whose ``sales_channel_id`` is 2).

Next-event targets (:class:`NextEventLabels`, registry source ``next``) label
any example with what the user did next: the category of their next click
on another item (a multiclass target of user interest), and whether there
is one (its mask).
"""

from __future__ import annotations

import bisect
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam

from pipelines import dead_letter as dl
from pipelines.events import event_order
from pipelines.parse import EVENT_TYPE_KEY
from shoprec.core import registry as F


def label_matches(label: F.Feature, event: Dict[str, Any]) -> bool:
    """Whether ``event`` makes ``label`` positive (type, and column value if any)."""
    if event[EVENT_TYPE_KEY] != label.event_type:
        return False
    return not label.column or str(event.get(label.column, "")) in label.positive_values


def split_index(ts: int, split_starts: Sequence[Optional[int]]) -> int:
    """0 (train), 1 (eval) or 2 (test) for a timestamp; None starts are ignored."""
    starts = sorted(s for s in split_starts if s is not None)
    return bisect.bisect_right(starts, ts)


def funnel_examples(events, labels: Sequence[F.Feature], example_event: str,
                    split_starts: Sequence[Optional[int]]):
    """Examples of one (user, item) pair's events: one per split with a view.

    Args:
        events: The pair's event dicts, any order.
        labels: Registry labels.
        example_event: The funnel stage an example starts at (a view).
        split_starts: Eval and test start (unix seconds; test may be None).

    Returns:
        [{'timestamp', <label>: 0/1, ...}] in time order.
    """
    ordered = sorted(events, key=event_order)
    starts = [s for s in sorted(s for s in split_starts if s is not None)]
    out = []
    seen_splits = set()
    for i, event in enumerate(ordered):
        if event[EVENT_TYPE_KEY] != example_event:
            continue
        ts = event[F.TIMESTAMP_KEY]
        split = split_index(ts, starts)
        if split in seen_splits:
            continue
        seen_splits.add(split)
        end = starts[split] if split < len(starts) else None
        later = [e for e in ordered[i:] if end is None or e[F.TIMESTAMP_KEY] < end]
        example = {F.TIMESTAMP_KEY: ts}
        for label in labels:
            example[label.name] = int(any(label_matches(label, e) for e in later))
        out.append(example)
    return out


class FunnelExamples(beam.PTransform):
    """Events → one labelled example per viewed (user, item) pair per split.

    Output rows: {'user_id', 'item_id', 'timestamp', <label>..., 'sampled': 0}.
    Grouping is per pair, so no worker holds more than one pair's events.
    """

    def __init__(self, registry: F.Registry, example_event: str,
                 split_starts: Sequence[Optional[int]]):
        super().__init__()
        self._labels = registry.event_labels()
        self._example_event = example_event
        self._starts = tuple(split_starts)
        self._sampled_key = registry.sampled_key

    def expand(self, events):
        labels, example_event, starts = self._labels, self._example_event, self._starts
        sampled_key = self._sampled_key

        def label(pair_and_events):
            (user_id, item_id), pair_events = pair_and_events
            for example in funnel_examples(pair_events, labels, example_event, starts):
                yield dict(example, **{F.USER_KEY: user_id, F.ITEM_KEY: item_id,
                                       sampled_key: 0})

        return (events
                | "KeyByPair" >> beam.Map(lambda e: ((e[F.USER_KEY], e[F.ITEM_KEY]), e))
                | "GroupByPair" >> beam.GroupByKey()
                | "Label" >> beam.FlatMap(label))


class SampledPositives(beam.PTransform):
    """Events of the labels' funnel stage → positive examples, one per event.

    Output rows: {'user_id', 'item_id', 'timestamp', <label>..., 'sampled': 0};
    a label with a column condition is 1 only when the event meets it.
    """

    def __init__(self, registry: F.Registry):
        super().__init__()
        labels = registry.event_labels()
        stages = {f.event_type for f in labels}
        if len(stages) != 1:
            raise ValueError(f"sampled labels must share one funnel event, got {sorted(stages)}")
        self._labels = labels
        (self._stage,) = stages
        self._sampled_key = registry.sampled_key

    def expand(self, events):
        labels, stage, sampled_key = self._labels, self._stage, self._sampled_key

        def positive(event):
            beam.metrics.Metrics.counter(dl.NAMESPACE, "positives/events").inc()
            row = {F.USER_KEY: event[F.USER_KEY], F.ITEM_KEY: event[F.ITEM_KEY],
                   F.TIMESTAMP_KEY: event[F.TIMESTAMP_KEY], sampled_key: 0}
            row.update({f.name: int(label_matches(f, event)) for f in labels})
            return row

        return (events
                | "OfStage" >> beam.Filter(lambda e: e[EVENT_TYPE_KEY] == stage)
                | "Positive" >> beam.Map(positive))


def next_event_labels(examples: List[Dict[str, Any]], later: Sequence[Tuple[int, str, str]],
                      targets: Sequence[F.Feature], items: Mapping[str, Mapping[str, Any]]
                      ) -> List[Dict[str, Any]]:
    """Sets each of one user's examples' next-event targets.

    The next event of an example at time t on item i is the user's first
    ``event_type`` event strictly after t on another item than i (its own
    click would only repeat the example's item).

    Args:
        examples: The user's examples (any order), each with timestamp and item id.
        later: The user's (timestamp, event_type, item_id) events, any order.
        targets: The registry's NEXT features.
        items: item_id -> item-table row (the CATEGORICAL targets' attributes).

    Returns:
        Copies of the examples with every target set, in time order.
    """
    events = sorted(later)
    out = []
    for example in sorted(examples, key=lambda e: (e[F.TIMESTAMP_KEY], e[F.ITEM_KEY])):
        row = dict(example)
        ts, own = example[F.TIMESTAMP_KEY], example[F.ITEM_KEY]
        start = bisect.bisect_right(events, (ts, "\uffff"))
        for f in targets:
            found = next((item for t, kind, item in events[start:]
                          if kind == f.event_type and item != own and t > ts), None)
            if f.kind == F.Kind.LABEL:
                row[f.name] = int(found is not None)
            else:
                value = (items.get(found) or {}).get(f.history_of) if found else None
                row[f.name] = f.default if value is None else value
        out.append(row)
    return out


class NextEventLabels(beam.PTransform):
    """Examples → the same examples with the registry's NEXT targets set.

    Examples and the target events are grouped per user, so a worker holds
    one user's examples and their target events (clicks, for user interest);
    the item table is a side input. Counted: ``next/<target>`` examples with
    a next event.
    """

    def __init__(self, registry: F.Registry, events: beam.PCollection,
                 items: beam.PCollection):
        """Args:
            registry: The run's registry; its ``next`` features are set.
            events: Clean event dicts of every user.
            items: (item_id, item-table row).
        """
        super().__init__()
        self._targets = registry.of_source(F.Source.NEXT)
        self._events = events
        self._items = items

    def expand(self, examples):
        targets = self._targets
        kinds = {f.event_type for f in targets}

        def label(user_and_groups, items):
            _, groups = user_and_groups
            for row in next_event_labels(list(groups["examples"]), list(groups["events"]),
                                         targets, items):
                for f in targets:
                    if f.kind == F.Kind.LABEL and row[f.name]:
                        beam.metrics.Metrics.counter(dl.NAMESPACE, f"next/{f.name}").inc()
                yield row

        later = (self._events
                 | "TargetEvents" >> beam.Filter(lambda e: e[EVENT_TYPE_KEY] in kinds)
                 | "KeyEventsByUser" >> beam.Map(lambda e: (
                     e[F.USER_KEY], (e[F.TIMESTAMP_KEY], e[EVENT_TYPE_KEY], e[F.ITEM_KEY]))))
        keyed = examples | "KeyExamplesByUser" >> beam.Map(lambda r: (r[F.USER_KEY], r))
        # Every worker holds the columns the targets read, not the item rows.
        columns = {f.history_of for f in targets if f.kind != F.Kind.LABEL}
        items = self._items | "ItemColumns" >> beam.MapTuple(
            lambda item_id, row: (item_id, {c: row[c] for c in columns if c in row}))
        return ({"examples": keyed, "events": later}
                | "GroupByUser" >> beam.CoGroupByKey()
                | "Label" >> beam.FlatMap(label, items=beam.pvalue.AsDict(items)))
