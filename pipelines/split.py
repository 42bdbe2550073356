"""Splitting examples by time, and the counters the data report is built from."""

from __future__ import annotations

import collections
from typing import Any, Dict, NamedTuple, Optional, Sequence

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
        return Splits(*(rows | "Partition" >> beam.Partition(
            lambda row, _: split_of(row[F.TIMESTAMP_KEY], eval_ts, test_ts), 3)))


def split_of(ts: int, eval_start_ts: int, test_start_ts: Optional[int]) -> int:
    """0 (train) before the eval start, 1 (eval) before the test start, else 2 (test)."""
    if ts < eval_start_ts:
        return 0
    return 1 if test_start_ts is None or ts < test_start_ts else 2


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


def example_counts(rows: Sequence[Dict[str, Any]], split: str,
                   registry: F.Registry) -> Dict[str, int]:
    """{report counter: what ``rows``, examples of ``split``, add to it} (none at 0)."""
    counts = collections.Counter({f"examples/{split}": len(rows)})
    counts[f"sampled/{split}"] = sum(1 for row in rows if row.get(registry.sampled_key))
    for label in registry.labels():
        counts[f"positives/{split}/{label.name}"] = sum(1 for row in rows if row[label.name])
    lists = registry.history_lists()
    if lists:
        counts.update(f"history_length/{split}/{len(row[lists[0].name])}" for row in rows)
    return {name: n for name, n in counts.items() if n}


def count_example(row: Dict[str, Any], split: str, registry: F.Registry) -> Dict[str, Any]:
    for name, n in example_counts([row], split, registry).items():
        beam.metrics.Metrics.counter(dl.NAMESPACE, name).inc(n)
    return row
