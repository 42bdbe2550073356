"""The ingest Beam job: a data set's raw files → raw tf.Examples, dead letters and a report.

Stages (stable labels, so a runner's monitoring and an update keep their names):
Read* (:func:`read_inputs`) → Ingest (the composite :class:`Ingest`) → Write*
(:func:`write_outputs`); :func:`run` only reads, applies and writes.

What the files mean comes from ``config.data`` (``shoprec.core.dataset``): schema,
roles, funnel mapping, label mode, history, negatives, robot filter and the
quality threshold. Outputs, under ``config.layout`` (``Layout.ingest_outputs``):
raw examples per split (gzip TFRecord shards with every registry feature,
``timestamp`` and ``sampled``), the item and user side tables, each user's
history after their last event (for scoring), a per-user anomaly table,
eval pairs, dead letters and the report (JSON and text).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines import dead_letter as dl
from pipelines import report as report_lib
from pipelines.aggregates import AddAggregates, with_user_aggregates
from pipelines.anomaly import ANOMALY_COLUMNS, FilterRobots
from pipelines.candidate_examples import CandidateExamples, windows
from pipelines.event_batches import ReadEventBatches, ValidEvents
from pipelines.event_log import WriteEvents, WriteEventTables
from pipelines.events import BuildExamples, DedupEvents, DropUnknownItems
from pipelines.history import AddHistory
from pipelines.impressions import ImpressionExamples, supports
from pipelines.inference import signature_names
from pipelines.join import AttachEmbeddings, EMBEDDINGS, ItemsFromEvents, JoinFeatures
from pipelines.labels import FunnelExamples, NextEventLabels, SampledPositives
from pipelines.negatives import SampleNegatives
from pipelines.options import new_pipeline
from pipelines.outputs import Outputs
from pipelines.parse import (EVENTS, ITEMS, USERS, ParseEvents, ParseTable, csv_line,
                             required_columns)
from pipelines.read import ReadTable
from pipelines.side_inputs import Limited, run_checked
from pipelines.sinks import WritePartitions, WriteTFRecords, text_file
from pipelines.sources import plan
from pipelines.split import CountCleanLog, SplitByTime, count_example
from shoprec.core import registry as F
from shoprec.core.recommend_config import TWO_TOWER, recommend_settings
from shoprec.core.errors import StageOrderError
from shoprec.core.layout import CSV_SUFFIX, JSONL_SUFFIX, Layout, SPLITS, TFRECORD_SUFFIX
from shoprec.io import models
from shoprec.io.outputs import clear, require_success, write_report, write_success, write_text

PAIRS_HEADER = f"{F.USER_KEY},{F.ITEM_KEY}"
# Marks the per-user probes at the eval start among the examples AddHistory sees.
PROBE_KEY = "_probe"


class IngestOutputs(NamedTuple):
    """What :class:`Ingest` makes of a data set's rows."""

    examples: Dict[str, beam.PCollection]  # {split: raw-example rows}
    items: beam.PCollection  # (item_id, item-table row, with the item aggregates)
    users: beam.PCollection  # (user_id, user row)
    history: Optional[beam.PCollection]  # (user_id, history after their last event)
    history_at_eval: Optional[beam.PCollection]  # (user_id, history before the eval start)
    anomalies: beam.PCollection  # per-user anomaly rows (ANOMALY_COLUMNS)
    # Distinct (user_id, item_id) of the eval split (the batch path: CSV lines, in blocks).
    eval_pairs: beam.PCollection
    events: beam.PCollection  # the clean event log
    dead_letter: beam.PCollection  # every row rejected on the way
    # The batch path: examples are framed records per shard, the event log Arrow tables.
    batched: bool = False


class Ingest(beam.PTransform):
    """A data set's rows → raw-example rows per split, side tables and dead letters.

    Input: ``{"events": ..., "items": ..., "users": ...}`` of (record, row)
    pairs as ``ReadTable`` yields them (``items`` absent when the data set
    builds its items from the events), plus ``"embeddings"``, the embed
    stage's serialized rows, when the registry has a photo embedding. On the
    batch path the events are ``ReadEventBatches``' record batches.

    The batch path (``batched``; default: where
    :func:`pipelines.impressions.supports` the config): ValidEvents (the
    checks as masks over record batches, unknown items dropped) →
    ImpressionExamples (one group per pair, one per user,
    ``pipelines.impressions``), the same outputs as the row path below, with
    examples serialized and the event log as tables.

    Stages (stable labels): ParseEvents, ParseItems (or ItemsFromEvents),
    ParseUsers → AttachEmbeddings → DropUnknownItems → DedupEvents →
    FilterRobots → CountCleanLog → BuildExamples | FunnelExamples |
    SampledPositives + SampleNegatives | CandidateExamples → NextEventLabels (with next-event
    targets) → AddAggregates → AddHistory → JoinFeatures →
    SplitByTime → Count<Split> → EvalPairs.

    Args:
        config: The run config.
        towers: The last published model's folder, whose towers a
            ``two_tower`` source of label mode ``candidates`` proposes from
            (:func:`published_towers`); None: that source proposes nothing.
        batched: Take the batch path (None: where the config supports it).

    Raises:
        ValueError: ``batched`` for a config the batch path does not support.
    """

    def __init__(self, config, towers: Optional[str] = None, batched: Optional[bool] = None):
        super().__init__()
        self._config = config
        self._towers = towers
        self._batched = supports(config) if batched is None else batched
        if self._batched and not supports(config):
            raise ValueError("the batch path makes impression examples without history, "
                             "aggregates or next-event targets only")

    def _examples(self, events, keep, users, items) -> beam.PCollection:
        """Labelled examples (no features yet) in the data set's label mode."""
        config = self._config
        data, registry = config.data, config.registry
        if data.labels == "candidates":
            rec = recommend_settings(config)
            history = ((data.history.event_types, data.history.bucket_s)
                       if registry.of_source(F.Source.HISTORY) else None)
            towers = (self._towers, history, rec.user_batch,
                      rec.max_catalogue_items) if self._towers else None
            return events | "CandidateExamples" >> CandidateExamples(
                plan(config), registry, rec.relevance_label, windows(config),
                config.split_starts, users, items, rec.max_catalogue_items, towers)
        if data.labels == "impressions":
            return keep(events | "BuildExamples" >> BuildExamples(
                config.ingest.click_window_s, config.ingest.conversion_window_s, registry))
        if data.labels == "funnel":
            stages = set(data.funnel_of.values()) if data.events.event_type else {
                data.events.event_value}
            start = "impression" if "impression" in stages else "click"
            return events | "FunnelExamples" >> FunnelExamples(registry, start,
                                                               config.split_starts)
        positives = events | "SampledPositives" >> SampledPositives(registry)
        spec = data.negatives
        negatives = positives | "SampleNegatives" >> SampleNegatives(
            spec.per_positive, spec.window_days, spec.seed, registry)
        return (positives, negatives) | "PositivesAndNegatives" >> beam.Flatten()

    def expand(self, inputs: Mapping[str, beam.PCollection]) -> IngestOutputs:
        config = self._config
        data, registry = config.data, config.registry
        dead: List[beam.PCollection] = []

        def keep(outputs) -> beam.PCollection:
            dead.append(outputs.dead_letter)
            return outputs.main

        if self._batched:
            events = None
        else:
            events = keep(inputs[EVENTS] | "ParseEvents" >> ParseEvents(data))
        if data.items.from_events:
            items = keep(events | "ItemsFromEvents" >> ItemsFromEvents(registry))
        else:
            items = keep(inputs[ITEMS] | "ParseItems" >> ParseTable(data, F.Source.ITEM))
        users = keep(inputs[USERS] | "ParseUsers" >> ParseTable(data, F.Source.USER))
        embedding = registry.embedding_feature()
        if embedding is not None:
            items = keep(items | "AttachEmbeddings" >> AttachEmbeddings(
                inputs[EMBEDDINGS], embedding))
        # Every worker of the steps below holds the catalogue (pipelines.side_inputs).
        items = items | "CatalogueLimit" >> Limited(
            config.ingest.max_catalogue_items, "ingest.max_catalogue_items",
            "items in the catalogue")
        if self._batched:
            return self._batch_path(inputs[EVENTS], items, users, dead)

        events = keep(events | "DropUnknownItems" >> DropUnknownItems(items))
        events = keep(events | "DedupEvents" >> DedupEvents(data.dedup))
        anomalies = events | "FilterRobots" >> FilterRobots(data.anomaly.window_s,
                                                            data.anomaly.max_events,
                                                            data.anomaly.pass_flagged)
        events = keep(anomalies) | "CountCleanLog" >> CountCleanLog()

        examples = self._examples(events, keep, users, items)
        if registry.of_source(F.Source.NEXT):
            examples = examples | "NextEventLabels" >> NextEventLabels(registry, events, items)
        user_history = at_eval = aggregates = None
        if registry.of_source(F.Source.HISTORY):
            # One probe per user at the eval start: the same point-in-time state
            # an example there would get, for recommendations judged on eval.
            eval_ts = config.split_starts[0]
            probes = (events
                      | "EventUsers" >> beam.Map(lambda e: e[F.USER_KEY])
                      | "DistinctUsers" >> beam.Distinct()
                      | "EvalProbes" >> beam.Map(lambda u: {
                          F.USER_KEY: u, F.TIMESTAMP_KEY: eval_ts, PROBE_KEY: 1}))
            examples = (examples, probes) | "WithProbes" >> beam.Flatten()
        if registry.aggregates():
            aggregates = examples | "AddAggregates" >> AddAggregates(registry, events, items)
            examples = aggregates.main
        if registry.of_source(F.Source.HISTORY):
            history = examples | "AddHistory" >> AddHistory(
                registry, data.history.event_types, data.history.bucket_s, events, items)
            examples, probed = history.main | "SplitProbes" >> beam.Partition(
                lambda pair, _: 1 if pair[0].get(PROBE_KEY) else 0, 2)
            user_aggregates = registry.user_aggregates()
            at_eval = probed | "ProbeHistory" >> beam.Map(
                lambda pair: (pair[0][F.USER_KEY], dict(
                    pair[1], **{f.name: pair[0][f.name] for f in user_aggregates})))
            user_history = history.users
            if aggregates is not None:
                user_history = (
                    {"history": user_history, "aggregates": aggregates.users}
                    | "JoinUserAggregates" >> beam.CoGroupByKey()
                    | "WithUserAggregates" >> beam.FlatMap(
                        lambda kv: [(kv[0], with_user_aggregates(
                            h, next(iter(kv[1]["aggregates"]), None), registry))
                            for h in kv[1]["history"]]))
        else:
            examples = examples | "NoHistory" >> beam.Map(lambda example: (example, None))
        rows = keep(examples | "JoinFeatures" >> JoinFeatures(items, users, registry))
        eval_ts, test_ts = config.split_starts
        splits = rows | "SplitByTime" >> SplitByTime(eval_ts, test_ts)
        counted = {split: split_rows | f"Count{split.title()}" >> beam.Map(
            count_example, split, registry) for split, split_rows in zip(SPLITS, splits)}
        eval_pairs = (counted["eval"]
                      | "EvalPairs" >> beam.Map(
                          lambda row: (row[registry.user_key], row[registry.item_key]))
                      | "DistinctPairs" >> beam.Distinct())
        return IngestOutputs(
            examples={split: counted[split] for split in config.splits},
            items=items if aggregates is None else aggregates.items,
            users=users, history=user_history, history_at_eval=at_eval,
            anomalies=anomalies.users,
            eval_pairs=eval_pairs, events=events,
            dead_letter=dead | "FlattenDeadLetters" >> beam.Flatten())

    def _batch_path(self, batches, items, users, dead) -> IngestOutputs:
        config = self._config
        valid = batches | "ValidEvents" >> ValidEvents(config.data, items)
        out = valid.main | "ImpressionExamples" >> ImpressionExamples(config, users, items)
        return IngestOutputs(
            examples={split: out.examples[split] for split in config.splits},
            items=items, users=users, history=None, history_at_eval=None,
            anomalies=out.anomalies, eval_pairs=out.eval_pairs, events=out.events,
            dead_letter=(dead + [valid.dead_letter, out.dead_letter])
            | "FlattenDeadLetters" >> beam.Flatten(), batched=True)


def _read(pipeline, pattern: Optional[str], file_format: str, input_name: str,
          required: Sequence[str]) -> Outputs:
    label = input_name.title()
    if not pattern:
        # No file configured (e.g. no users table): every user gets registry defaults.
        return Outputs(pipeline | f"No{label}" >> beam.Create([]),
                       pipeline | f"No{label}DeadLetters" >> beam.Create([]))
    return pipeline | f"Read{label}" >> ReadTable(pattern, file_format, input_name, required)


def read_inputs(pipeline, config, batched: bool = False
                ) -> Tuple[Dict[str, beam.PCollection], beam.PCollection]:
    """Reads a data set's files: ({input: rows} for :class:`Ingest`, read dead letters).

    With ``batched`` the events come as record batches (``ReadEventBatches``).

    Raises:
        InputMissingError: an input file is missing.
        StageOrderError: the registry has a photo embedding and the embed
            stage has not finished (no success marker, or no shards).
    """
    inputs, data, registry = config.inputs, config.data, config.registry
    embedding = registry.embedding_feature()
    if embedding is not None:
        # Stage order first: a missing embed stage is the mistake to report.
        require_success(config.layout.embed_dir, "embed")

    def path(relative: Optional[str]) -> Optional[str]:
        resolved = config.input_path(relative)
        # '../raw' against a run folder not yet made would not match any file.
        return resolved if not resolved or "://" in resolved else os.path.normpath(resolved)

    tables = [(EVENTS, inputs.events, data.events), (USERS, inputs.users, data.users)]
    if not data.items.from_events:
        tables.append((ITEMS, inputs.items, data.items))
    read, dead = {}, []
    for name, relative, spec in tables:
        if batched and name == EVENTS:
            outputs = pipeline | "ReadEvents" >> ReadEventBatches(
                path(relative), inputs.format, required_columns(spec))
        else:
            outputs = _read(pipeline, path(relative), inputs.format, name,
                            required_columns(spec))
        read[name] = outputs.main
        dead.append(outputs.dead_letter)
    if embedding is not None:
        pattern = config.layout.item_embeddings_pattern
        if not FileSystems.match([pattern])[0].metadata_list:
            raise StageOrderError(f"no item embeddings at {pattern}; the registry's "
                                  f"{embedding.name} comes from `shoprec embed`: run it first")
        read[EMBEDDINGS] = pipeline | "ReadEmbeddings" >> beam.io.ReadFromTFRecord(pattern)
    return read, dead | "FlattenReadDeadLetters" >> beam.Flatten()


def write_outputs(outputs: IngestOutputs, read_dead: beam.PCollection, config, layout,
                  write_examples: bool = True) -> None:
    """Writes what :class:`Ingest` made: examples, side tables, pairs, dead letters.

    With ``write_examples`` False (``shoprec validate``) only the dead letters.
    """
    registry = config.registry
    (((read_dead, outputs.dead_letter) | "AllDeadLetters" >> beam.Flatten())
     | "DeadLetterJson" >> beam.Map(dl.DeadLetter.to_json)
     | "WriteDeadLetters" >> text_file(layout.dead_letter, JSONL_SUFFIX))
    if not write_examples:
        return
    names = registry.example_names()
    for split, rows in outputs.examples.items():
        _ = rows | f"Write{split.title()}Examples" >> (
            WritePartitions(layout.examples(split), config.ingest.num_shards, TFRECORD_SUFFIX)
            if outputs.batched else WriteTFRecords(
                layout.examples(split), names, config.ingest.num_shards, TFRECORD_SUFFIX,
                registry, one_file=False))
    for label, table, prefix, names in (
            ("Items", outputs.items, layout.items_table, registry.item_table_names()),
            ("Users", outputs.users, layout.users_table, registry.source_names(F.Source.USER))):
        (table
         | f"{label}Rows" >> beam.Values()
         | f"Write{label}Table" >> WriteTFRecords(prefix, names, 1, TFRECORD_SUFFIX, registry,
                                                            one_file=True))
    for label, table, prefix, names in (
            ("History", outputs.history, layout.history_table, registry.history_table_names()),
            ("HistoryAtEval", outputs.history_at_eval, layout.history_at_eval_table,
             registry.at_eval_history_names())):
        if table is None:
            continue
        (table
         | f"{label}Rows" >> beam.MapTuple(lambda user, h: dict(h, **{registry.user_key: user}))
         | f"Write{label}Table" >> WriteTFRecords(prefix, names, 1,
                                                  TFRECORD_SUFFIX, registry, one_file=True))
    (outputs.anomalies
     | "AnomalyLines" >> beam.Map(lambda r: csv_line(
         ["" if r[c] is None else r[c] for c in ANOMALY_COLUMNS]))
     | "WriteAnomalies" >> text_file(layout.anomaly_table, CSV_SUFFIX,
                                      ",".join(ANOMALY_COLUMNS)))
    # The batch path's pairs are CSV lines already, in blocks.
    (outputs.eval_pairs
     | "PairLines" >> beam.Map(lambda pair: pair if outputs.batched else csv_line(pair))
     | "WriteEvalPairs" >> text_file(layout.eval_pairs, CSV_SUFFIX, PAIRS_HEADER))
    write_events = WriteEventTables if outputs.batched else WriteEvents
    _ = outputs.events | "WriteEvents" >> write_events(layout.events_log,
                                                       config.data.event_columns_kept())


def report_keys(config) -> List[str]:
    """Counters every report carries, zero when nothing incremented them."""
    names = (EVENTS, ITEMS, USERS)
    keys = [f"rows_read/{name}" for name in names] + [f"rows_valid/{name}" for name in names]
    if config.registry.embedding_feature() is not None:
        keys += ["rows_read/embeddings", "rows_valid/embeddings", "embeddings/with_image",
                 "embeddings/no_image", "embeddings/unmatched"]
    for split in config.splits:
        keys += [f"examples/{split}"] + [f"positives/{split}/{f.name}"
                                         for f in config.registry.labels()]
    return keys


def _read_inputs(config) -> Dict[str, str]:
    """{input: its file or glob} of every table this data set reads."""
    inputs, data = config.inputs, config.data
    tables = {EVENTS: inputs.events, USERS: inputs.users}
    if not data.items.from_events:
        tables[ITEMS] = inputs.items
    return {name: config.input_path(path) for name, path in tables.items() if path}


def published_towers(config) -> Optional[str]:
    """The last published model's folder, where a ``two_tower`` source of label mode
    ``candidates`` can use its towers (None: no such source, no published model,
    or one without towers)."""
    if config.data.labels != "candidates" or not recommend_settings(config).source(TWO_TOWER):
        return None
    layout = config.layout
    version = models.current_version(layout)
    if version is None:
        return None
    model_dir = layout.published_model(version)
    return model_dir if "user_embedding" in signature_names(model_dir) else None


def build(pipeline: beam.Pipeline, config, layout: Layout, write_examples: bool = True,
          batched: Optional[bool] = None) -> None:
    """Adds the ingest job to ``pipeline``: read the inputs, :class:`Ingest`, write.

    ``batched``: take :class:`Ingest`'s batch path (None: where the config
    supports it; False: the row path, which the batch path is tested against).

    Raises:
        InputMissingError, StageOrderError: see :func:`read_inputs`.
    """
    batched = supports(config) if batched is None else batched
    inputs, read_dead = read_inputs(pipeline, config, batched)
    outputs = inputs | "Ingest" >> Ingest(config, published_towers(config), batched)
    write_outputs(outputs, read_dead, config, layout, write_examples)


def run(config, beam_args: Optional[Sequence[str]] = None, write_examples: bool = True,
        out_dir: Optional[str] = None, batched: Optional[bool] = None) -> Dict[str, Any]:
    """Runs ingest for ``config`` and writes its report (JSON and text).

    Args:
        config: A :class:`shoprec.core.config.Config`.
        beam_args: Pass-through Beam flags (runner, workers, ...); the local
            default runner is the in-process FnApiRunner.
        write_examples: False checks and counts only (``shoprec validate``).
        out_dir: Where the report and dead letters go when not writing
            examples (default: the ingest folder).
        batched: See :func:`build`.

    Returns:
        The report: ``counts`` ({counter: value}, the :func:`report_keys`
        always present), ``dead_letters`` (their total), the data report
        sections (``inputs``, ``events``, ``splits``), ``status``,
        ``problems``, ``seconds`` and ``outputs``.

    Raises:
        ConfigError: the catalogue has more items than
            ``ingest.max_catalogue_items`` (every worker holds it).
        report.DataQualityError: an input's bad fraction is over the data set's
            threshold.
        InputEmptyError: an input has fewer data rows, or a split fewer
            examples, than ``dataset.quality.min_rows``.
        Either way the report and dead letters are still written, the
        examples are removed and no success marker is written, so that no
        later stage trains on them.
    """
    start = time.time()
    layout = config.layout if out_dir is None else Layout(out_dir)
    clear(layout.ingest_dir)
    pipeline = new_pipeline(beam_args)
    build(pipeline, config, layout, write_examples, batched)
    result = run_checked(pipeline)

    counts = {key: 0 for key in report_keys(config)}
    counts.update(dl.counts_from_result(result))
    quality = config.data.quality
    report = report_lib.build(counts, config.splits,
                              [f.name for f in config.registry.labels()], config.data.name)
    found = report_lib.problems(report, quality.max_bad_fraction,
                                dict(quality.max_bad_fraction_by_reason))
    empty = report_lib.too_few_rows(counts, _read_inputs(config), config.splits,
                                    quality.min_rows)
    report.update({
        "status": "failed" if found or empty else "ok",
        "problems": empty + found,
        "counts": dict(sorted(counts.items())),
        "dead_letters": sum(v for k, v in counts.items() if k.startswith("dead_letter/")),
        "seconds": round(time.time() - start, 2),
        "outputs": layout.ingest_outputs(config.splits),
    })
    if config.data.labels == "candidates" and recommend_settings(config).source(TWO_TOWER):
        # Which towers proposed the training candidates: none on a first run.
        report["two_tower_model"] = published_towers(config)
    write_report(layout.ingest_report, report)
    write_text(report["outputs"]["report_text"], report_lib.render(report) + "\n", "text/plain")
    logging.info("ingest: %s", {s: v["examples"] for s, v in report["splits"].items()})
    if found or empty:
        examples_dir = os.path.dirname(layout.examples("train"))
        if FileSystems.exists(examples_dir):
            FileSystems.delete([examples_dir])
        # The gate first: bad rows over the threshold usually explain the empty splits.
        report_lib.check_quality(report, quality.max_bad_fraction,
                                 dict(quality.max_bad_fraction_by_reason))
        report_lib.check_rows(empty, report)
    write_success(layout.ingest_dir, "validate" if not write_examples else "ingest")
    return report


def validate(config, beam_args: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """``shoprec validate``: the whole ingest, counted but not written.

    The report and dead letters go to ``<run_dir>/validate/ingest/``.
    """
    return run(config, beam_args, write_examples=False,
               out_dir=config.layout.validate_dir)
