"""Splitting examples by time, and the counters the data report is built from."""

from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional

import apache_beam as beam

from pipelines import dead_letter as dl
from pipelines.parse import EVENT_TYPE_KEY
from shoprec.core import registry as F


class Splits(NamedTuple):
    train: beam.PCollection
    eval: beam.PCollection
    test: beam.PCollection


class SplitByTime(beam.PTransform):
    """Rows before ``eval_start_ts`` → train, before ``test_start_ts`` → eval, rest → test."""

    def __init__(self, eval_start_ts: int, test_start_ts: Optional[int] = None):
        super().__init__()
        self._eval = int(eval_start_ts)
        self._test = None if test_start_ts is None else int(test_start_ts)

    def expand(self, rows) -> Splits:
        eval_ts, test_ts = self._eval, self._test

        def which(row, _):
            ts = row[F.TIMESTAMP_KEY]
            if ts < eval_ts:
                return 0
            return 1 if test_ts is None or ts < test_ts else 2

        return Splits(*(rows | "Partition" >> beam.Partition(which, 3)))


class CountCleanLog(beam.PTransform):
    """Counts the clean log for the report: events per funnel type, distinct users and items."""

    def expand(self, events):
        def count(name):
            def inc(_):
                beam.metrics.Metrics.counter(dl.NAMESPACE, name).inc()
            return inc

        def by_type(event):
            beam.metrics.Metrics.counter(dl.NAMESPACE,
                                         f"clean/events/{event[EVENT_TYPE_KEY]}").inc()

        _ = events | "ByType" >> beam.Map(by_type)
        for key, name in ((F.USER_KEY, "users"), (F.ITEM_KEY, "items")):
            _ = (events
                 | f"{name.title()}" >> beam.Map(lambda e, k=key: e[k])
                 | f"Distinct{name.title()}" >> beam.Distinct()
                 | f"Count{name.title()}" >> beam.Map(count(f"clean/{name}")))
        return events


def count_example(row: Dict[str, Any], split: str, registry: F.Registry) -> Dict[str, Any]:
    counter = beam.metrics.Metrics.counter
    counter(dl.NAMESPACE, f"examples/{split}").inc()
    if row.get(registry.sampled_key):
        counter(dl.NAMESPACE, f"sampled/{split}").inc()
    for label in registry.labels():
        if row[label.name]:
            counter(dl.NAMESPACE, f"positives/{split}/{label.name}").inc()
    lists = registry.history_lists()
    if lists:
        counter(dl.NAMESPACE, f"history_length/{split}/{len(row[lists[0].name])}").inc()
    return row
