"""The ingest Beam job: a data set's raw files → raw tf.Examples, dead letters and a report.

Stages (stable labels, so a runner's monitoring and an update keep their names):

    Read*/Parse* (or ItemsFromEvents) → AttachEmbeddings → DropUnknownItems
    → DedupEvents → FilterRobots → CountCleanLog
    → BuildExamples | FunnelExamples | SampledPositives + SampleNegatives
    → AddHistory → JoinFeatures → SplitByTime → Write*

What the files mean comes from ``config.data`` (``shoprec.dataset``): schema,
roles, funnel mapping, label mode, history, negatives, robot filter and the
quality threshold. Outputs, under ``config.layout`` (see :func:`output_patterns`):
raw examples per split (gzip TFRecord shards with every registry feature,
``timestamp`` and ``sampled``), the item and user side tables, each user's
history after their last event (for scoring), a per-user anomaly table,
eval pairs, dead letters and the report (JSON and text).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Dict, List, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines import dead_letter as dl
from pipelines import report as report_lib
from pipelines.anomaly import ANOMALY_COLUMNS, FilterRobots
from pipelines.events import BuildExamples, DedupEvents, DropUnknownItems
from pipelines.history import AddHistory
from pipelines.join import AttachEmbeddings, ItemsFromEvents, JoinFeatures
from pipelines.labels import FunnelExamples, SampledPositives
from pipelines.negatives import SampleNegatives
from pipelines.options import pipeline_options
from pipelines.outputs import Outputs
from pipelines.parse import (EVENTS, ITEMS, USERS, ParseEvents, ParseTable, csv_line,
                             required_columns)
from pipelines.read import ReadTable
from pipelines.sinks import WriteTFRecords, clear, text_file, write_text
from pipelines.split import CountCleanLog, Splits, SplitByTime, count_example
from shoprec.config import Layout
from transforms import features as F

__all__ = [
    "AttachEmbeddings", "BuildExamples", "CountCleanLog", "DedupEvents", "DropUnknownItems",
    "JoinFeatures", "Outputs", "ParseEvents", "ParseTable", "ReadTable",
    "SplitByTime", "Splits", "WriteTFRecords", "build", "output_patterns", "report_keys", "run",
    "validate",
]

SPLITS = ("train", "eval", "test")
EXAMPLES_SUFFIX = ".tfrecord.gz"
TABLE_SUFFIX = ".tfrecord.gz"
PAIRS_SUFFIX = ".csv"
PAIRS_HEADER = f"{F.USER_KEY},{F.ITEM_KEY}"
DEAD_LETTER_SUFFIX = ".jsonl"
EMBEDDINGS_SUFFIX = ".tfrecord.gz"


def splits_of(config) -> tuple:
    """train, eval, and test when ``ingest.test_start`` is set."""
    return SPLITS if config.ingest.test_start else SPLITS[:2]


def _extra(layout, *parts: str) -> str:
    return os.path.join(layout.ingest_dir, *parts)


def output_patterns(layout, splits: Sequence[str] = SPLITS[:2]) -> Dict[str, str]:
    """Glob per ingest output, for the stages and tools that read them."""
    patterns = {split: f"{layout.examples(split)}-*-of-*{EXAMPLES_SUFFIX}" for split in splits}
    patterns.update(items=layout.items_table + TABLE_SUFFIX,
                    users=layout.users_table + TABLE_SUFFIX,
                    history=_extra(layout, "history", "history") + TABLE_SUFFIX,
                    anomaly=_extra(layout, "anomaly", "users") + PAIRS_SUFFIX,
                    eval_pairs=layout.eval_pairs + PAIRS_SUFFIX,
                    dead_letter=layout.dead_letter + DEAD_LETTER_SUFFIX,
                    report=layout.ingest_report,
                    report_text=_extra(layout, "report.txt"))
    return patterns


def _read(pipeline, pattern: Optional[str], file_format: str, input_name: str,
          required: Sequence[str]) -> Outputs:
    label = input_name.title()
    if not pattern:
        # No file configured (e.g. no users table): every user gets registry defaults.
        return Outputs(pipeline | f"No{label}" >> beam.Create([]),
                       pipeline | f"No{label}DeadLetters" >> beam.Create([]))
    return pipeline | f"Read{label}" >> ReadTable(pattern, file_format, input_name, required)


def _examples(config, events: beam.PCollection, keep) -> beam.PCollection:
    """Labelled examples (no features yet) in the data set's label mode."""
    data, registry = config.data, config.registry
    if data.labels == "impressions":
        return keep(events | "BuildExamples" >> BuildExamples(
            config.ingest.click_window_s, config.ingest.conversion_window_s, registry))
    if data.labels == "funnel":
        stages = set(data.funnel_of.values()) if data.events.event_type else {
            data.events.event_value}
        start = "impression" if "impression" in stages else "click"
        return events | "FunnelExamples" >> FunnelExamples(registry, start, config.split_starts)
    positives = events | "SampledPositives" >> SampledPositives(registry)
    spec = data.negatives
    negatives = positives | "SampleNegatives" >> SampleNegatives(
        spec.per_positive, spec.window_days, spec.seed, registry)
    return (positives, negatives) | "PositivesAndNegatives" >> beam.Flatten()


def build(pipeline, config, write_examples: bool = True, layout=None) -> None:
    """Adds the whole ingest job to ``pipeline``, writing every output but the report.

    Args:
        pipeline: The Beam pipeline.
        config: The run config (``config.data`` and ``config.registry`` in force).
        write_examples: False for ``shoprec validate``: count everything, write
            only the dead letters.
        layout: Where outputs go (default: ``config.layout``).
    """
    layout = layout or config.layout
    inputs, ingest, data = config.inputs, config.ingest, config.data
    registry = config.registry
    dead: List[beam.PCollection] = []

    def keep(outputs) -> beam.PCollection:
        dead.append(outputs.dead_letter)
        return outputs.main

    def path(relative: Optional[str]) -> Optional[str]:
        resolved = config.input_path(relative)
        # '../raw' against a run folder not yet made would not match any file.
        return resolved if not resolved or "://" in resolved else os.path.normpath(resolved)

    events = keep(_read(pipeline, path(inputs.events), inputs.format, EVENTS,
                        required_columns(data.events)))
    events = keep(events | "ParseEvents" >> ParseEvents(data))
    if data.items.from_events:
        items = keep(events | "ItemsFromEvents" >> ItemsFromEvents(registry))
    else:
        items = keep(_read(pipeline, path(inputs.items), inputs.format, ITEMS,
                           required_columns(data.items)))
        items = keep(items | "ParseItems" >> ParseTable(data, F.Source.ITEM))
    users = keep(_read(pipeline, path(inputs.users), inputs.format, USERS,
                       required_columns(data.users)))
    users = keep(users | "ParseUsers" >> ParseTable(data, F.Source.USER))
    embedding = registry.embedding_feature()
    if embedding is not None:
        pattern = config.layout.item_embeddings + "-*" + EMBEDDINGS_SUFFIX
        if not FileSystems.match([pattern])[0].metadata_list:
            raise FileNotFoundError(f"ingest: no item embeddings at {pattern}; the registry's "
                                    f"{embedding.name} comes from `shoprec embed`: run it first")
        items = keep(items | "AttachEmbeddings" >> AttachEmbeddings(pattern, embedding))

    events = keep(events | "DropUnknownItems" >> DropUnknownItems(items))
    events = keep(events | "DedupEvents" >> DedupEvents(data.dedup))
    anomalies = events | "FilterRobots" >> FilterRobots(data.anomaly.window_s,
                                                        data.anomaly.max_events)
    events = keep(anomalies) | "CountCleanLog" >> CountCleanLog()

    examples = _examples(config, events, keep)
    user_history = None
    if registry.of_source(F.Source.HISTORY):
        history = examples | "AddHistory" >> AddHistory(
            registry, data.history.event_types, data.history.bucket_s, events, items)
        examples, user_history = history.main, history.users
    rows = keep(examples | "JoinFeatures" >> JoinFeatures(items, users, registry))
    eval_ts, test_ts = config.split_starts
    splits = rows | "SplitByTime" >> SplitByTime(eval_ts, test_ts)

    names = registry.example_names()
    patterns = output_patterns(layout, splits_of(config))
    for split, split_rows in zip(SPLITS, splits):
        title = split.title()
        counted = split_rows | f"Count{title}" >> beam.Map(count_example, split, registry)
        if write_examples and split in patterns:
            _ = counted | f"Write{title}Examples" >> WriteTFRecords(
                layout.examples(split), names, ingest.num_shards, EXAMPLES_SUFFIX, registry)

    (dead
     | "FlattenDeadLetters" >> beam.Flatten()
     | "DeadLetterJson" >> beam.Map(dl.DeadLetter.to_json)
     | "WriteDeadLetters" >> text_file(layout.dead_letter, DEAD_LETTER_SUFFIX))
    if not write_examples:
        return

    for label, table, prefix, source in (("Items", items, layout.items_table, F.Source.ITEM),
                                         ("Users", users, layout.users_table, F.Source.USER)):
        (table
         | f"{label}Rows" >> beam.Values()
         | f"Write{label}Table" >> WriteTFRecords(prefix, registry.source_names(source), 1,
                                                  TABLE_SUFFIX, registry))
    if user_history is not None:
        history_names = [registry.user_key] + [
            f.name for f in registry.of_source(F.Source.HISTORY)
            if f.kind == F.Kind.HISTORY or f.event_type]
        (user_history
         | "HistoryRows" >> beam.MapTuple(lambda user, h: dict(h, **{registry.user_key: user}))
         | "WriteHistoryTable" >> WriteTFRecords(_extra(layout, "history", "history"),
                                                 history_names, 1, TABLE_SUFFIX, registry))
    (anomalies.users
     | "AnomalyLines" >> beam.Map(lambda r: csv_line(
         ["" if r[c] is None else r[c] for c in ANOMALY_COLUMNS]))
     | "WriteAnomalies" >> text_file(_extra(layout, "anomaly", "users"), PAIRS_SUFFIX,
                                      ",".join(ANOMALY_COLUMNS)))
    (splits.eval
     | "EvalPairs" >> beam.Map(lambda row: (row[registry.user_key], row[registry.item_key]))
     | "DistinctPairs" >> beam.Distinct()
     | "PairLines" >> beam.Map(csv_line)
     | "WriteEvalPairs" >> text_file(layout.eval_pairs, PAIRS_SUFFIX, PAIRS_HEADER))


def report_keys(config) -> List[str]:
    """Counters every report carries, zero when nothing incremented them."""
    names = (EVENTS, ITEMS, USERS)
    keys = [f"rows_read/{name}" for name in names] + [f"rows_valid/{name}" for name in names]
    if config.registry.embedding_feature() is not None:
        keys += ["rows_read/embeddings", "rows_valid/embeddings", "embeddings/with_image",
                 "embeddings/no_image", "embeddings/unmatched"]
    for split in splits_of(config):
        keys += [f"examples/{split}"] + [f"positives/{split}/{f.name}"
                                         for f in config.registry.labels()]
    return keys


def run(config, beam_args: Optional[Sequence[str]] = None, write_examples: bool = True,
        out_dir: Optional[str] = None) -> Dict[str, Any]:
    """Runs ingest for ``config`` and writes its report (JSON and text).

    Args:
        config: A :class:`shoprec.config.Config`.
        beam_args: Pass-through Beam flags (runner, workers, ...); the local
            default runner is the in-process FnApiRunner.
        write_examples: False checks and counts only (``shoprec validate``).
        out_dir: Where the report and dead letters go when not writing
            examples (default: the ingest folder).

    Returns:
        The report: ``counts`` ({counter: value}, the :func:`report_keys`
        always present), ``dead_letters`` (their total), the data report
        sections (``inputs``, ``events``, ``splits``), ``status``,
        ``problems``, ``seconds`` and ``outputs``.

    Raises:
        report.DataQualityError: an input's bad fraction is over the data set's
            threshold. The report and dead letters are still written; the
            examples are removed so that no later stage trains on them.
    """
    start = time.time()
    layout = config.layout if out_dir is None else Layout(out_dir)
    clear(layout.ingest_dir)
    pipeline = beam.Pipeline(options=pipeline_options(beam_args))
    build(pipeline, config, write_examples, layout)
    result = pipeline.run()
    result.wait_until_finish()

    counts = {key: 0 for key in report_keys(config)}
    counts.update(dl.counts_from_result(result))
    quality = config.data.quality
    report = report_lib.build(counts, splits_of(config),
                              [f.name for f in config.registry.labels()], config.data.name)
    found = report_lib.problems(report, quality.max_bad_fraction,
                                dict(quality.max_bad_fraction_by_reason))
    report.update({
        "status": "failed" if found else "ok",
        "problems": found,
        "counts": dict(sorted(counts.items())),
        "dead_letters": sum(v for k, v in counts.items() if k.startswith("dead_letter/")),
        "seconds": round(time.time() - start, 2),
        "outputs": output_patterns(layout, splits_of(config)),
    })
    write_text(layout.ingest_report, json.dumps(report, indent=2, sort_keys=True),
               "application/json")
    write_text(report["outputs"]["report_text"], report_lib.render(report) + "\n", "text/plain")
    logging.info("ingest: %s", {s: v["examples"] for s, v in report["splits"].items()})
    if found:
        examples_dir = os.path.dirname(layout.examples("train"))
        if FileSystems.exists(examples_dir):
            FileSystems.delete([examples_dir])
        report_lib.check_quality(report, quality.max_bad_fraction,
                                 dict(quality.max_bad_fraction_by_reason))
    return report


def validate(config, beam_args: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """``shoprec validate``: the whole ingest, counted but not written.

    The report and dead letters go to ``<run_dir>/validate/ingest/``.
    """
    return run(config, beam_args, write_examples=False,
               out_dir=os.path.join(config.run_dir, "validate"))
