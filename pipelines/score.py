"""Batch scoring job: (user, item) pairs in, ranked recommendations out.

Pairs are joined with ingest's user and item tables into *raw* tf.Examples
(the same encoder ingest used), scored by the published model's serving
signature (the version ``models/CURRENT`` names; it carries its transform
graph) through Beam RunInference, ranked within user and written as Parquet.
Elements are moved in batches, not rows: per-element overhead, not the model,
dominates RunInference on small models.

Output columns: ``user_id``, ``item_id``, ``rank`` (1 = best within the user,
by ``scoring.rank_by``) and, per task, by its type:

- binary and regression: ``p_<task>``, float32 (probability or value);
- multiclass: ``p_<task>``, list<float32> of the ``C`` class probabilities
  (the signature's ``[batch, C]`` row; position ``k`` is class index ``k``,
  the label's TFT vocabulary index, indices from the vocabulary size on being
  its OOV buckets), ``<task>_class``, int32, the most probable class index
  (the lowest on a tie, as ``numpy.argmax``), and ``<task>_class_name``,
  string, that class's vocabulary token (null for an OOV bucket or a label
  without a vocabulary). Probabilities with the class name mirror TFX's
  classification output (class labels with scores); the index is the encoded
  id a Merlin / NVTabular Categorify user joins on.
"""

from __future__ import annotations

import csv
import os
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.ml.inference.base import PredictionResult, RunInference

from pipelines import dead_letter, examples, options as beam_options
from pipelines.inference import ChunkHandler
from pipelines.outputs import Outputs
from pipelines.rows import raw_row
from shoprec.core import registry as F
from shoprec.core.config import Config
from shoprec.core.errors import InputMissingError, StageOrderError
from shoprec.core.layout import JSONL_SUFFIX, PARQUET_SUFFIX
from shoprec.core.model_config import TaskConfig
from shoprec.io import models
from shoprec.io.outputs import clear, require_success, write_report, write_success

Pair = Tuple[str, str]
Chunk = List[Tuple[str, str, bytes]]


def scores_schema(tasks: Sequence[TaskConfig]) -> pa.Schema:
    """Parquet schema of the scores (see the module docstring)."""
    columns = [("user_id", pa.string()), ("item_id", pa.string())]
    for task in tasks:
        if task.type == "multiclass":
            columns += [(f"p_{task.name}", pa.list_(pa.float32())),
                        (f"{task.name}_class", pa.int32()),
                        (f"{task.name}_class_name", pa.string())]
        else:
            columns.append((f"p_{task.name}", pa.float32()))
    return pa.schema(columns + [("rank", pa.int32())])


def class_names(config: Config, transform_dir: Optional[str] = None) -> Dict[str, List[str]]:
    """Each multiclass task's class tokens by index: its label's TFT vocabulary.

    Read from the transform graph the model was trained with; a task whose
    label has no vocabulary (an event label) has no names.

    Args:
        config: Run config (tasks, registry).
        transform_dir: The model's TFT output (a published version's
            ``transform/``); None: this run's ``featurize/transform``.

    Raises:
        FileNotFoundError: a task needs a vocabulary and featurize's output is missing.
    """
    registry = config.registry
    wanted = {}
    for task in config.model.tasks:
        feature = registry.by_name.get(task.label)
        if task.type == "multiclass" and feature is not None and feature.kind in (
                F.Kind.ID, F.Kind.CATEGORICAL):
            wanted[task.name] = feature.vocab_filename
    if not wanted:
        return {}
    import tensorflow as tf
    import tensorflow_transform as tft

    transform_dir = transform_dir or config.layout.transform_dir
    if not tf.io.gfile.exists(os.path.join(transform_dir, "transform_fn")):
        raise FileNotFoundError(f"score: no transform graph at {transform_dir} for the "
                                f"class names of {sorted(wanted)}; run featurize first")
    tft_output = tft.TFTransformOutput(transform_dir)
    return {name: [t.decode("utf-8") if isinstance(t, bytes) else str(t)
                   for t in tft_output.vocabulary_by_name(vocab)]
            for name, vocab in wanted.items()}


def _serialized(chunk: Chunk) -> Dict[str, List[bytes]]:
    """A chunk's serialized raw examples, the serving signature's ``examples`` input."""
    return {"examples": [s for _, _, s in chunk]}


def _example_bytes(chunk: Chunk) -> int:
    return sum(len(s) for _, _, s in chunk)


class ReadPairs(beam.PTransform):
    """Reads a user_id,item_id CSV (header required) into (user, item) pairs."""

    def __init__(self, pattern: str):
        super().__init__()
        self._pattern = pattern

    def expand(self, pbegin):
        return (pbegin
                | "Read" >> beam.io.ReadFromText(self._pattern, skip_header_lines=1, validate=False)
                | "Parse" >> beam.ParDo(_ParsePair()).with_outputs(
                    dead_letter.DEAD_LETTER_TAG, main="pairs"))


class _ParsePair(beam.DoFn):
    def process(self, line: str):
        fields = next(csv.reader([line]))
        if len(fields) != 2 or not all(f.strip() for f in fields):
            yield dead_letter.tagged("pairs", "bad_pair", "expected user_id,item_id", line)
            return
        yield fields[0].strip(), fields[1].strip()


def _keyed_row(serialized: bytes, key: str, registry: F.Registry):
    row = examples.decode(serialized, registry)
    return row[key], row


class ReadSideTable(beam.PTransform):
    """Reads an ingest side table (items, users or user history) as (id, row) pairs."""

    def __init__(self, pattern: str, key: str, registry: F.Registry):
        super().__init__()
        self._pattern = pattern
        self._key = key
        self._registry = registry

    def expand(self, pbegin):
        return (pbegin
                | "Read" >> beam.io.ReadFromTFRecord(self._pattern, validate=False)
                | "Decode" >> beam.Map(_keyed_row, self._key, self._registry))


class BuildRawExamples(beam.PTransform):
    """Joins pairs with user/item attributes and encodes raw serving examples.

    Users and their history are joined by key (CoGroupByKey): no worker holds
    the users table. The items are a side input: every worker holds the
    catalogue, as retrieval does. A pair naming an unknown item is a dead
    letter; an unknown user is scored with the registry's user defaults (a
    new user still gets recommendations). History features are the user's
    history after their last logged event (ingest's history table), empty for
    a user it does not know.
    """

    def __init__(self, users, items, registry: F.Registry, history=None):
        super().__init__()
        self._users = users
        self._items = items
        self._registry = registry
        self._history = history

    def expand(self, pairs):
        history = self._history
        if history is None:
            history = pairs.pipeline | "NoHistory" >> beam.Create([])
        return ({"pairs": pairs, "user": self._users, "history": history}
                | "JoinUsers" >> beam.CoGroupByKey()
                | "Join" >> beam.ParDo(_JoinPairs(self._registry),
                                       items=beam.pvalue.AsDict(self._items))
                .with_outputs(dead_letter.DEAD_LETTER_TAG, main="examples"))


class _JoinPairs(beam.DoFn):
    """(user_id, {pairs: item ids, user: [row], history: [row]}) → raw examples."""

    def __init__(self, registry: F.Registry):
        self._registry = registry
        self._names = registry.example_names(include_labels=False)

    def process(self, user_and_groups, items):
        registry = self._registry
        user_id, groups = user_and_groups
        users, histories = list(groups["user"]), list(groups["history"])
        user = users[0] if users else None
        history = histories[0] if histories else None
        for item_id in groups["pairs"]:
            item = items.get(item_id)
            if item is None:
                yield dead_letter.tagged("pairs", "unknown_item",
                                         f"item {item_id!r} not in catalogue",
                                         f"{user_id},{item_id}")
                continue
            event = {F.USER_KEY: user_id, F.ITEM_KEY: item_id}
            row = raw_row(event, user, item, history, registry)
            yield user_id, item_id, examples.encode(row, self._names, registry)


class RankWithinUser(beam.PTransform):
    """Scored rows → rows with ``rank`` (1 = best) within each user."""

    def __init__(self, rank_by: str):
        super().__init__()
        self._rank_by = rank_by

    def expand(self, rows):
        rank_by = self._rank_by

        def rank(user_rows):
            _, group = user_rows
            ordered = sorted(group, key=lambda r: (-r[rank_by], r["item_id"]))
            for position, row in enumerate(ordered, start=1):
                yield dict(row, rank=position)

        return (rows
                | "KeyByUser" >> beam.Map(lambda r: (r["user_id"], r))
                | "GroupByUser" >> beam.GroupByKey()
                | "Rank" >> beam.FlatMap(rank))


def _to_rows(result: PredictionResult, tasks: Sequence[TaskConfig],
             names: Dict[str, List[str]]):
    counter = beam.metrics.Metrics.counter(dead_letter.NAMESPACE, "score/rows")
    for i, (user_id, item_id, _) in enumerate(result.example):
        row = {"user_id": user_id, "item_id": item_id}
        for task in tasks:
            key = f"p_{task.name}"
            if task.type != "multiclass":
                row[key] = float(result.inference[key][i])
                continue
            probabilities = np.asarray(result.inference[key][i], np.float32)
            best = int(np.argmax(probabilities))
            tokens = names.get(task.name, ())
            row[key] = probabilities.tolist()
            row[f"{task.name}_class"] = best
            row[f"{task.name}_class_name"] = tokens[best] if best < len(tokens) else None
        counter.inc()
        yield row


class Score(beam.PTransform):
    """(user_id, item_id) pairs → scored rows ranked within user, plus dead letters.

    Stages: BuildRawExamples → Batch → RunInference → ToRows → RankWithinUser.

    Args:
        model_dir: The exported model (its serving signature takes raw examples).
        registry: The run's registry.
        tasks: The model's tasks (one output column set each).
        class_names: Each multiclass task's class tokens (:func:`class_names`).
        rank_by: Output column to rank by (``p_<task>``).
        batch_size: Examples per signature call.
        users, items: (id, row) side tables (:class:`ReadSideTable`).
        history: (user_id, history after the user's last event), or None.
    """

    def __init__(self, model_dir: str, registry: F.Registry, tasks: Sequence[TaskConfig],
                 class_names: Dict[str, List[str]], rank_by: str, batch_size: int, *,
                 users, items, history=None):
        super().__init__()
        self._model_dir = model_dir
        self._registry = registry
        self._tasks = tuple(tasks)
        self._names = dict(class_names)
        self._rank_by = rank_by
        self._batch_size = int(batch_size)
        self._users, self._items, self._history = users, items, history

    def expand(self, pairs) -> Outputs:
        joined = pairs | "BuildRawExamples" >> BuildRawExamples(
            self._users, self._items, self._registry, self._history)
        handler = ChunkHandler(self._model_dir, "serving_default", _serialized, _example_bytes)
        ranked = (
            joined.examples
            | "Batch" >> beam.BatchElements(min_batch_size=min(64, self._batch_size),
                                            max_batch_size=self._batch_size)
            | "RunInference" >> RunInference(handler)
            | "ToRows" >> beam.FlatMap(_to_rows, self._tasks, self._names)
            | "RankWithinUser" >> RankWithinUser(self._rank_by))
        return Outputs(ranked, joined[dead_letter.DEAD_LETTER_TAG])


def build(pipeline: beam.Pipeline, config: Config, pairs: str, model_dir: str,
          names: Mapping[str, Sequence[str]]) -> None:
    """Adds the score job to ``pipeline``: read pairs and side tables, :class:`Score`, write.

    Args:
        pipeline: The graph to add to.
        config: Run config.
        pairs: user_id,item_id CSV pattern to score.
        model_dir: The serving SavedModel (the published version's).
        names: Class names of each multiclass task.
    """
    import tensorflow as tf

    layout = config.layout
    tasks = tuple(config.model.tasks)
    read = pipeline | "ReadPairs" >> ReadPairs(pairs)
    registry = config.registry
    users = pipeline | "ReadUsers" >> ReadSideTable(layout.users_table + "*", registry.user_key,
                                                    registry)
    items = pipeline | "ReadItems" >> ReadSideTable(layout.items_table + "*", registry.item_key,
                                                    registry)
    history = None
    history_pattern = layout.history_table + "*"
    if tf.io.gfile.glob(history_pattern):
        history = pipeline | "ReadHistory" >> ReadSideTable(history_pattern, registry.user_key,
                                                            registry)
    scored = read.pairs | "Score" >> Score(
        model_dir, registry, tasks, names, config.scoring.rank_by,
        config.scoring.batch_size, users=users, items=items, history=history)
    _ = scored.main | "WriteScores" >> beam.io.WriteToParquet(
        layout.scores, scores_schema(tasks), file_name_suffix=PARQUET_SUFFIX)
    _ = ((read[dead_letter.DEAD_LETTER_TAG], scored.dead_letter)
         | "MergeDeadLetters" >> beam.Flatten()
         | "DeadLetterJson" >> beam.Map(lambda d: d.to_json())
         | "WriteDeadLetters" >> beam.io.WriteToText(
             layout.score_dead_letter, file_name_suffix=JSONL_SUFFIX))


def run(config: Config, beam_args: Optional[Sequence[str]] = None,
        pairs: Optional[str] = None) -> dict:
    """Scores pairs with the published model; returns counts, paths and its version.

    Args:
        config: Run config; the model is the version ``models/CURRENT`` names
            (``shoprec.io.models``), not this run's ``train/model``: a model
            the gate refused is never used.
        beam_args: Pass-through Beam flags.
        pairs: user_id,item_id CSV pattern; default ``scoring.pairs`` or, when
            unset, the eval-window pairs ingest wrote.
    """
    import tensorflow as tf

    layout = config.layout
    pattern = pairs or config.path(config.scoring.pairs) or layout.eval_pairs + "*"
    require_success(layout.ingest_dir, "ingest")
    version, model_dir = models.require_current(layout)
    if not tf.io.gfile.glob(pattern):
        raise InputMissingError(f"no pairs to score at {pattern}: check --pairs or "
                                f"scoring.pairs")
    if not tf.io.gfile.glob(layout.items_table + "*"):
        raise StageOrderError(f"nothing at {layout.items_table}*; run `shoprec ingest` again")
    clear(layout.score_dir)
    names = class_names(config, layout.published_transform(version))
    start = time.time()
    pipeline = beam.Pipeline(options=beam_options.pipeline_options(beam_args))
    build(pipeline, config, pattern, model_dir, names)
    result = pipeline.run()
    result.wait_until_finish()
    report = {
        "counts": dead_letter.counts_from_result(result),
        "seconds": round(time.time() - start, 2),
        "scores": layout.scores + "-*" + PARQUET_SUFFIX,
        "pairs": pattern,
        "model_version": version,
        "model_dir": model_dir,
    }
    write_report(layout.score_report, report)
    write_success(layout.score_dir, "score")
    return report
