"""The ingest Beam job: raw events, catalogue, users and photos → raw tf.Examples.

Stages (stable labels, so a runner's monitoring and an update keep their names):

    ReadEvents/ReadItems/ReadUsers (ReadTable) → ParseEvents/ParseItems/ParseUsers
    → AttachImages (LoadItemImages) → DropUnknownItems → DedupEvents
    → BuildExamples → JoinFeatures → SplitByTime → Write*

Outputs, under ``config.layout`` (files named ``<prefix><suffix>`` unless sharded):

* ``examples(split)-SSSSS-of-NNNNN.tfrecord.gz``: raw examples per split,
  ``ingest.num_shards`` gzip TFRecord shards, every registry feature + timestamp;
* ``items_table.tfrecord.gz`` / ``users_table.tfrecord.gz``: valid side tables;
* ``eval_pairs.csv``: distinct (user_id, item_id) of the eval split, with header;
* ``dead_letter.jsonl``: every rejected record, one JSON object a line;
* ``ingest_report``: counters of the run (also returned by :func:`run`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines import dead_letter as dl
from pipelines import examples as ex
from pipelines.events import CLICK, CONVERSION, BuildExamples, DedupEvents, DropUnknownItems
from pipelines.images import LoadItemImages
from pipelines.options import pipeline_options
from pipelines.outputs import Outputs
from pipelines.parse import (EVENTS, IMAGE_PATH_COLUMN, ITEMS, USERS, ParseEvents, ParseItems,
                             ParseUsers, csv_line, default_user)
from pipelines.read import ReadTable
from transforms import features as F

__all__ = [
    "AttachImages", "BuildExamples", "DedupEvents", "DropUnknownItems", "JoinFeatures",
    "LoadItemImages", "Outputs", "ParseEvents", "ParseItems", "ParseUsers", "ReadTable",
    "SplitByTime", "Splits", "WriteTFRecords", "build", "output_patterns", "report_keys", "run",
]

SPLITS = ("train", "eval")
EXAMPLES_SUFFIX = ".tfrecord.gz"
TABLE_SUFFIX = ".tfrecord.gz"
PAIRS_SUFFIX = ".csv"
PAIRS_HEADER = f"{F.USER_KEY},{F.ITEM_KEY}"
DEAD_LETTER_SUFFIX = ".jsonl"
LABELS = (CLICK, CONVERSION)


def output_patterns(layout) -> Dict[str, str]:
    """Glob per ingest output, for the stages and tools that read them."""
    patterns = {split: f"{layout.examples(split)}-*-of-*{EXAMPLES_SUFFIX}" for split in SPLITS}
    patterns.update(items=layout.items_table + TABLE_SUFFIX,
                    users=layout.users_table + TABLE_SUFFIX,
                    eval_pairs=layout.eval_pairs + PAIRS_SUFFIX,
                    dead_letter=layout.dead_letter + DEAD_LETTER_SUFFIX,
                    report=layout.ingest_report)
    return patterns


class AttachImages(beam.PTransform):
    """(item_id, parsed item row) → (item_id, item-table row with image features).

    The item-table row carries exactly ``examples.source_names(Source.ITEM)``.
    """

    def __init__(self, images_root: str, shape):
        super().__init__()
        self._root = images_root
        self._shape = tuple(shape)

    def expand(self, items) -> Outputs:
        images = (items
                  | "ImagePaths" >> beam.Map(lambda kv: (kv[0], kv[1][IMAGE_PATH_COLUMN]))
                  | "LoadItemImages" >> LoadItemImages(self._root, self._shape))

        def merge(kv):
            item_id, grouped = kv
            (row,), (image,) = grouped["row"], grouped["image"]
            merged = {k: v for k, v in row.items() if k != IMAGE_PATH_COLUMN}
            merged.update(image)
            return item_id, merged

        joined = ({"row": items, "image": images.main}
                  | "Join" >> beam.CoGroupByKey()
                  | "Merge" >> beam.Map(merge))
        return Outputs(joined, images.dead_letter)


class JoinFeatures(beam.PTransform):
    """Labelled examples → full raw-example rows, joining item and user attributes.

    Both tables are side inputs (``AsDict``): catalogue- and user-base-sized
    tables fit in worker memory at this project's scale. Users missing from
    the table get registry defaults; a missing item (cannot happen after
    :class:`DropUnknownItems`) is an ``unknown_item`` dead letter.
    """

    def __init__(self, items: beam.PCollection, users: beam.PCollection):
        """Args:
            items: (item_id, item-table row) from :class:`AttachImages`.
            users: (user_id, user row) from :class:`ParseUsers`.
        """
        super().__init__()
        self._items = items
        self._users = users

    def expand(self, examples) -> Outputs:
        def join(example, items, users):
            item = items.get(example[F.ITEM_KEY])
            if item is None:
                yield dl.tagged(EVENTS, "unknown_item", "item not in the item table",
                                json.dumps(example, sort_keys=True))
                return
            row = dict(example)
            row.update(item)
            row.update(users.get(example[F.USER_KEY]) or default_user(example[F.USER_KEY]))
            yield row

        out = examples | "Join" >> beam.FlatMap(
            join, items=beam.pvalue.AsDict(self._items),
            users=beam.pvalue.AsDict(self._users)).with_outputs(dl.DEAD_LETTER_TAG, main="main")
        return Outputs(out.main, out[dl.DEAD_LETTER_TAG])


class Splits(NamedTuple):
    train: beam.PCollection
    eval: beam.PCollection


class SplitByTime(beam.PTransform):
    """Rows with ``timestamp < eval_start_ts`` → train, the rest → eval."""

    def __init__(self, eval_start_ts: int):
        super().__init__()
        self._eval_start_ts = int(eval_start_ts)

    def expand(self, rows) -> Splits:
        start = self._eval_start_ts
        train, eval_ = rows | "Partition" >> beam.Partition(
            lambda row, _: 0 if row[F.TIMESTAMP_KEY] < start else 1, 2)
        return Splits(train, eval_)


def _count_example(row: Dict[str, Any], split: str) -> Dict[str, Any]:
    beam.metrics.Metrics.counter(dl.NAMESPACE, f"examples/{split}").inc()
    for label in LABELS:
        if row[label]:
            beam.metrics.Metrics.counter(dl.NAMESPACE, f"positives/{split}/{label}").inc()
    return row


class WriteTFRecords(beam.PTransform):
    """Rows → gzip TFRecord files of raw examples carrying ``names`` (+ timestamp).

    With ``num_shards == 1`` the single file is named exactly ``prefix + suffix``.
    """

    def __init__(self, prefix: str, names: Sequence[str], num_shards: int, suffix: str):
        super().__init__()
        self._prefix = prefix
        self._names = list(names)
        self._num_shards = int(num_shards)
        self._suffix = suffix

    def expand(self, rows):
        unsharded = {"shard_name_template": ""} if self._num_shards == 1 else {}
        return (rows
                | "Encode" >> beam.Map(ex.encode, self._names)
                | "Write" >> beam.io.WriteToTFRecord(
                    self._prefix, file_name_suffix=self._suffix, num_shards=self._num_shards,
                    compression_type=CompressionTypes.GZIP, **unsharded))


def _text_file(prefix: str, suffix: str, header: Optional[str] = None) -> beam.PTransform:
    """A sink writing one text file named exactly ``prefix + suffix``."""
    return beam.io.WriteToText(prefix, file_name_suffix=suffix, num_shards=1,
                               shard_name_template="", header=header)


def _read(pipeline, pattern: Optional[str], file_format: str, input_name: str) -> Outputs:
    label = input_name.title()
    if not pattern:
        # No users file configured: every user gets registry defaults.
        return Outputs(pipeline | f"No{label}" >> beam.Create([]),
                       pipeline | f"No{label}DeadLetters" >> beam.Create([]))
    return pipeline | f"Read{label}" >> ReadTable(pattern, file_format, input_name)


def build(pipeline, config) -> None:
    """Adds the whole ingest job to ``pipeline``, writing every output but the report."""
    layout, inputs, ingest = config.layout, config.inputs, config.ingest
    dead: List[beam.PCollection] = []

    def keep(outputs: Outputs) -> beam.PCollection:
        dead.append(outputs.dead_letter)
        return outputs.main

    def path(relative: Optional[str]) -> Optional[str]:
        if not relative:
            return None
        resolved = config.path(relative)
        # '../raw' against a run folder not yet made would not match any file.
        return resolved if "://" in resolved else os.path.normpath(resolved)

    events = keep(_read(pipeline, path(inputs.events), inputs.format, EVENTS))
    items = keep(_read(pipeline, path(inputs.items), inputs.format, ITEMS))
    users = keep(_read(pipeline, path(inputs.users), inputs.format, USERS))

    events = keep(events | "ParseEvents" >> ParseEvents())
    items = keep(items | "ParseItems" >> ParseItems())
    users = keep(users | "ParseUsers" >> ParseUsers())
    items = keep(items | "AttachImages" >> AttachImages(
        path(inputs.images_root), F.image_feature().image_shape))

    events = keep(events | "DropUnknownItems" >> DropUnknownItems(items))
    events = keep(events | "DedupEvents" >> DedupEvents())
    labelled = keep(events | "BuildExamples" >> BuildExamples(
        ingest.click_window_s, ingest.conversion_window_s))
    rows = keep(labelled | "JoinFeatures" >> JoinFeatures(items, users))
    splits = rows | "SplitByTime" >> SplitByTime(config.eval_start_ts)

    names = ex.example_names()
    for split, split_rows in zip(SPLITS, splits):
        title = split.title()
        (split_rows
         | f"Count{title}" >> beam.Map(_count_example, split)
         | f"Write{title}Examples" >> WriteTFRecords(
             layout.examples(split), names, ingest.num_shards, EXAMPLES_SUFFIX))

    for label, table, prefix, source in (("Items", items, layout.items_table, F.Source.ITEM),
                                         ("Users", users, layout.users_table, F.Source.USER)):
        (table
         | f"{label}Rows" >> beam.Values()
         | f"Write{label}Table" >> WriteTFRecords(prefix, ex.source_names(source), 1,
                                                  TABLE_SUFFIX))

    (splits.eval
     | "EvalPairs" >> beam.Map(lambda row: (row[F.USER_KEY], row[F.ITEM_KEY]))
     | "DistinctPairs" >> beam.Distinct()
     | "PairLines" >> beam.Map(csv_line)
     | "WriteEvalPairs" >> _text_file(layout.eval_pairs, PAIRS_SUFFIX, PAIRS_HEADER))

    (dead
     | "FlattenDeadLetters" >> beam.Flatten()
     | "DeadLetterJson" >> beam.Map(dl.DeadLetter.to_json)
     | "WriteDeadLetters" >> _text_file(layout.dead_letter, DEAD_LETTER_SUFFIX))


def report_keys() -> List[str]:
    """Counters every report carries, zero when nothing incremented them."""
    keys = [f"rows_read/{name}" for name in (EVENTS, ITEMS, USERS)]
    keys += [f"rows_valid/{name}" for name in (EVENTS, ITEMS, USERS)]
    keys += ["images/loaded"]
    for split in SPLITS:
        keys += [f"examples/{split}"] + [f"positives/{split}/{label}" for label in LABELS]
    return keys


def _clear(directory: str) -> None:
    """Deletes a previous run's outputs so no stale shard survives a re-run."""
    if FileSystems.exists(directory):
        FileSystems.delete([directory])  # Local folders: removed recursively.
    # Object stores have no folders: delete whatever still lies under the prefix.
    leftover = FileSystems.match([FileSystems.join(directory, "**")])[0].metadata_list
    if leftover:
        FileSystems.delete([m.path for m in leftover])


def run(config, beam_args: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Runs ingest for ``config`` and writes its report to ``layout.ingest_report``.

    Args:
        config: A :class:`shoprec.config.Config`.
        beam_args: Pass-through Beam flags (runner, workers, ...); the local
            default runner is the in-process FnApiRunner.

    Returns:
        The report: ``counts`` ({counter: value} for every ``shoprec`` counter,
        the :func:`report_keys` always present), ``dead_letters`` (their
        total), ``seconds`` and ``outputs`` (:func:`output_patterns`).
    """
    start = time.time()
    layout = config.layout
    _clear(layout.ingest_dir)
    pipeline = beam.Pipeline(options=pipeline_options(beam_args))
    build(pipeline, config)
    result = pipeline.run()
    result.wait_until_finish()

    counts = {key: 0 for key in report_keys()}
    counts.update(dl.counts_from_result(result))
    report = {
        "counts": dict(sorted(counts.items())),
        "dead_letters": sum(v for k, v in counts.items() if k.startswith("dead_letter/")),
        "seconds": round(time.time() - start, 2),
        "outputs": output_patterns(layout),
    }
    with FileSystems.create(layout.ingest_report, mime_type="application/json",
                            compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(json.dumps(report, indent=2, sort_keys=True).encode("utf-8"))
    logging.info("ingest: %d train / %d eval examples, %d dead letters",
                 counts["examples/train"], counts["examples/eval"], report["dead_letters"])
    return report
