"""The embed stage's behaviour count job: events per item and funnel stage, train window only.

The image encoder's behaviour head (``trainer.behaviour``) learns from the
photo what shoppers do with an item; this job counts it. Events are read and
validated exactly as ingest reads them (``pipelines.read.ReadTable`` and
``pipelines.parse.ParseEvents``: raw event type → funnel stage), and only
events strictly before ``ingest.eval_start`` count, so nothing of the eval
window reaches the encoder, nor through its embedding the model.

Stages (stable labels): ReadEvents → CountItemEvents (ParseEvents →
TrainWindow → KeyByItemAndStage → CountPerItemAndStage → KeyByItem →
MergePerItem → ToCsvLine) → WriteCounts, WriteDeadLetters. Both counts are
``CombinePerKey``: a worker holds partial sums per key, never a user's or an
item's events. Output: one small CSV, ``item_id`` and one column per funnel
stage (``shoprec.core.dataset.FUNNEL``), one row per item with a train-window
event, and the events' dead letters.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Iterable, Optional, Sequence

import apache_beam as beam

from pipelines import dead_letter as dl
from pipelines.options import new_pipeline, run_job
from pipelines.outputs import Outputs
from pipelines.parse import EVENT_TYPE_KEY, EVENTS, ParseEvents, csv_line, required_columns
from pipelines.read import ReadTable
from pipelines.sinks import text_file
from shoprec.core import registry as F
from shoprec.core.dataset import DatasetConfig, FUNNEL
from shoprec.core.layout import CSV_SUFFIX, JSONL_SUFFIX

HEADER = ("item_id",) + FUNNEL
# Counter of events on or after the eval start, left out of the counts.
EVAL_WINDOW_COUNTER = "behaviour/eval_window_events"
TRAIN_WINDOW_COUNTER = "behaviour/train_window_events"


class _MergeStages(beam.CombineFn):
    """{stage: n} dicts of one item → their per-stage sum (at most len(FUNNEL) keys)."""

    def create_accumulator(self) -> Dict[str, int]:
        return {}

    def add_input(self, accumulator: Dict[str, int], element: Dict[str, int]) -> Dict[str, int]:
        for stage, n in element.items():
            accumulator[stage] = accumulator.get(stage, 0) + n
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[Dict[str, int]]) -> Dict[str, int]:
        merged: Dict[str, int] = {}
        for accumulator in accumulators:
            self.add_input(merged, accumulator)
        return merged

    def extract_output(self, accumulator: Dict[str, int]) -> Dict[str, int]:
        return accumulator


def _in_train_window(event: Dict[str, Any], eval_start: int) -> bool:
    """Whether ``event`` is before the eval start; both windows are counted."""
    train = event[F.TIMESTAMP_KEY] < eval_start
    name = TRAIN_WINDOW_COUNTER if train else EVAL_WINDOW_COUNTER
    beam.metrics.Metrics.counter(dl.NAMESPACE, name).inc()
    return train


def count_line(item_and_counts) -> str:
    """(item id, {stage: n}) → its CSV line in :data:`HEADER` order."""
    item, counts = item_and_counts
    return csv_line([item] + [counts.get(stage, 0) for stage in FUNNEL])


class CountItemEvents(beam.PTransform):
    """(record, row) events → per-item train-window stage counts (CSV lines), dead letters."""

    def __init__(self, dataset: DatasetConfig, eval_start: int):
        """Args:
            dataset: The data set's description (schema, funnel mapping).
            eval_start: Unix seconds; events at or after it are not counted.
        """
        super().__init__()
        self._dataset = dataset
        self._eval_start = eval_start

    def expand(self, records) -> Outputs:
        eval_start = self._eval_start
        parsed = records | "ParseEvents" >> ParseEvents(self._dataset)
        lines = (parsed.main
                 | "TrainWindow" >> beam.Filter(_in_train_window, eval_start)
                 | "KeyByItemAndStage" >> beam.Map(
                     lambda e: ((str(e[F.ITEM_KEY]), e[EVENT_TYPE_KEY]), 1))
                 | "CountPerItemAndStage" >> beam.CombinePerKey(sum)
                 | "KeyByItem" >> beam.Map(lambda kv: (kv[0][0], {kv[0][1]: kv[1]}))
                 | "MergePerItem" >> beam.CombinePerKey(_MergeStages())
                 | "ToCsvLine" >> beam.Map(count_line))
        return Outputs(lines, parsed.dead_letter)


def run(events_path: str, file_format: str, dataset: DatasetConfig, eval_start: int,
        counts_prefix: str, dead_letter_prefix: str,
        beam_args: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Counts the train window's events per item and stage; writes the table and dead letters.

    Args:
        events_path: The events file or glob.
        file_format: ``csv``, ``jsonl`` or ``parquet``.
        dataset: The data set's description.
        eval_start: Unix seconds; events at or after it are not counted.
        counts_prefix: The table is written to ``counts_prefix + ".csv"``.
        dead_letter_prefix: The dead letters go to ``dead_letter_prefix + ".jsonl"``.
        beam_args: Pass-through Beam flags.

    Returns:
        ``counts`` (the job's counters: rows read, dead letters by reason,
        train- and eval-window events), ``seconds`` and ``outputs``.
    """
    start = time.time()
    pipeline = new_pipeline(beam_args)
    records = pipeline | "ReadEvents" >> ReadTable(events_path, file_format, EVENTS,
                                                   required_columns(dataset.events))
    counted = records.main | "CountItemEvents" >> CountItemEvents(dataset, eval_start)
    _ = counted.main | "WriteCounts" >> text_file(counts_prefix, CSV_SUFFIX, ",".join(HEADER))
    _ = ((records.dead_letter, counted.dead_letter)
         | "AllDeadLetters" >> beam.Flatten()
         | "DeadLetterJson" >> beam.Map(dl.DeadLetter.to_json)
         | "WriteDeadLetters" >> text_file(dead_letter_prefix, JSONL_SUFFIX))
    result = run_job(pipeline)
    return {"counts": dl.counts_from_result(result), "seconds": round(time.time() - start, 2),
            "outputs": {"counts": counts_prefix + CSV_SUFFIX,
                        "dead_letter": dead_letter_prefix + JSONL_SUFFIX}}
