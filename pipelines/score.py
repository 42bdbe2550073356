"""Batch scoring job: (user, item) pairs in, ranked recommendations out.

Pairs are joined with ingest's user and item tables into *raw* tf.Examples
(the same row assembler and bytes as ingest), scored by the published model's
serving signature (the version ``models/CURRENT`` names; it carries its
transform graph) through Beam RunInference, ranked within user and written as
Parquet. Elements are batches, never rows: per-element overhead, not the
model, dominates a job around a small model. The pairs are read as Arrow
tables, joined with the users by key in hash buckets of the user id, turned
into chunks of whole users' examples, scored one signature call per batch,
ranked within each user with Arrow's sort and written as Arrow tables, with
no second shuffle.

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

import itertools
import os
import time
import zlib
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io import fileio
from apache_beam.ml.inference.base import PredictionResult, RunInference

from pipelines import dead_letter, examples, options as beam_options
from pipelines.inference import ChunkHandler
from pipelines.outputs import Outputs
from pipelines.pair_examples import PairExamples
from shoprec.core import registry as F
from shoprec.core.config import Config
from shoprec.core.errors import InputMissingError, StageOrderError
from shoprec.core.layout import JSONL_SUFFIX, PARQUET_SUFFIX
from shoprec.core.model_config import TaskConfig
from shoprec.io import models
from shoprec.io.outputs import clear, require_success, write_report, write_success

Pair = Tuple[str, str]
# What ReadPairs yields and Score reads: tables of pairs.
PAIRS_SCHEMA = pa.schema([("user_id", pa.string()), ("item_id", pa.string())])
# Stored bytes of the joined inputs (pairs, users, history) per hash bucket of
# the join by user: a worker holds one bucket's users and pairs at a time.
BUCKET_BYTES = 32 << 20


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


class ExampleChunk(NamedTuple):
    """Raw examples of whole users, in parallel lists: row ``k`` is (user, item, example)."""

    user_ids: List[str]
    item_ids: List[str]
    examples: List[bytes]


def pairs_table(pairs: Sequence[Pair]) -> pa.Table:
    """(user_id, item_id) pairs as the Arrow table :class:`ReadPairs` yields."""
    return pa.table({"user_id": pa.array([u for u, _ in pairs], pa.string()),
                     "item_id": pa.array([i for _, i in pairs], pa.string())},
                    schema=PAIRS_SCHEMA)


def bucket_of(user_id: str, buckets: int) -> int:
    """The join bucket of a user: a CRC-32 of the id, the same in every process."""
    return zlib.crc32(user_id.encode("utf-8")) % buckets if buckets > 1 else 0


def _serialized(chunks: Sequence[ExampleChunk]) -> Dict[str, List[bytes]]:
    """Chunks' serialized raw examples, the serving signature's ``examples`` input."""
    if len(chunks) == 1:
        return {"examples": chunks[0].examples}
    return {"examples": [s for chunk in chunks for s in chunk.examples]}


def _example_bytes(chunks: Sequence[ExampleChunk]) -> int:
    return sum(len(s) for chunk in chunks for s in chunk.examples)


class ReadPairs(beam.PTransform):
    """Reads user_id,item_id CSV files (header required) into Arrow tables of pairs.

    Each file is parsed by Arrow's CSV reader in blocks (one table of
    :data:`PAIRS_SCHEMA` per block, ids stripped of surrounding blanks), not
    line by line; a file is read by one worker. A record without exactly two
    fields, or with a blank id, is a ``bad_pair`` dead letter.
    """

    def __init__(self, pattern: str):
        super().__init__()
        self._pattern = pattern

    def expand(self, pbegin):
        return (pbegin
                | "Match" >> fileio.MatchFiles(self._pattern)
                | "Open" >> fileio.ReadMatches()
                | "Parse" >> beam.ParDo(_ParsePairs()).with_outputs(
                    dead_letter.DEAD_LETTER_TAG, main="pairs"))


def _bad_pair(record: str):
    return dead_letter.tagged("pairs", "bad_pair", "expected user_id,item_id", record)


class _ParsePairs(beam.DoFn):
    def process(self, readable_file):
        import pyarrow.csv as pa_csv

        invalid: List[str] = []

        def skip_invalid(row):
            # Called by the reader for a record with the wrong number of fields.
            invalid.append(row.text)
            return "skip"

        names = PAIRS_SCHEMA.names
        with readable_file.open() as f:
            try:
                reader = pa_csv.open_csv(
                    f, read_options=pa_csv.ReadOptions(column_names=names, skip_rows=1),
                    parse_options=pa_csv.ParseOptions(invalid_row_handler=skip_invalid,
                                                      ignore_empty_lines=False),
                    convert_options=pa_csv.ConvertOptions(
                        column_types=dict(zip(names, PAIRS_SCHEMA.types)),
                        strings_can_be_null=False, quoted_strings_can_be_null=False))
            except pa.ArrowInvalid as err:
                if "Empty CSV file" in str(err):  # no header either: no pairs
                    return
                raise
            for batch in reader:
                yield from (_bad_pair(text) for text in invalid)
                invalid.clear()
                yield from self._pairs(batch)
        yield from (_bad_pair(text) for text in invalid)

    @staticmethod
    def _pairs(batch: pa.RecordBatch):
        users = pc.utf8_trim_whitespace(batch.column(0))
        items = pc.utf8_trim_whitespace(batch.column(1))
        blank = pc.or_(pc.equal(pc.utf8_length(users), 0), pc.equal(pc.utf8_length(items), 0))
        if pc.any(blank).as_py():
            for user, item in zip(batch.column(0).filter(blank).to_pylist(),
                                  batch.column(1).filter(blank).to_pylist()):
                yield _bad_pair(f"{user},{item}")
            keep = pc.invert(blank)
            users, items = users.filter(keep), items.filter(keep)
        if len(users):
            yield pa.Table.from_arrays([users, items], schema=PAIRS_SCHEMA)


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


def _split_by_bucket(table: pa.Table, buckets: int):
    """A table of pairs → (bucket, its pairs), one table per bucket present."""
    if buckets <= 1:
        yield 0, table
        return
    users = table.column("user_id").combine_chunks().dictionary_encode()
    lookup = np.array([bucket_of(u, buckets) for u in users.dictionary.to_pylist()], np.int64)
    of_row = lookup[users.indices.to_numpy(zero_copy_only=False)]
    order = np.argsort(of_row, kind="stable")
    sorted_buckets = of_row[order]
    starts = np.flatnonzero(np.r_[True, sorted_buckets[1:] != sorted_buckets[:-1]])
    for begin, end in zip(starts, np.r_[starts[1:], len(order)]):
        yield int(sorted_buckets[begin]), table.take(pa.array(order[begin:end]))


class PairsByBucket(beam.PTransform):
    """Tables of pairs → (bucket, table of that bucket's pairs) (:func:`bucket_of`)."""

    def __init__(self, buckets: int):
        super().__init__()
        self._buckets = int(buckets)

    def expand(self, tables):
        return tables | "Split" >> beam.FlatMap(_split_by_bucket, self._buckets)


class BuildRawExamples(beam.PTransform):
    """Joins pairs with user/item attributes and encodes raw serving examples.

    Input: tables of pairs (:data:`PAIRS_SCHEMA`). Output ``examples``:
    :class:`ExampleChunk` s of whole users, about ``batch_size`` rows each;
    ``dead_letter``: the unknown items.

    Users and their history are joined by key (CoGroupByKey) on ``buckets``
    hash buckets of the user id (:func:`bucket_of`): a worker holds the
    users of one bucket, never the users table. The items are a side input:
    every worker holds the catalogue, as retrieval does. A pair naming an
    unknown item is a dead letter; an unknown user is scored with the
    registry's user defaults (a new user still gets recommendations). History
    features are the user's history after their last logged event (ingest's
    history table), empty for a user it does not know. Each example is
    ``examples.encode(raw_row(...))`` byte for byte, assembled from the
    user's and the item's parts (:mod:`pipelines.pair_examples`).
    """

    def __init__(self, users, items, registry: F.Registry, history=None, *,
                 buckets: int = 1, batch_size: int = 1024):
        super().__init__()
        self._users = users
        self._items = items
        self._registry = registry
        self._history = history
        self._buckets = int(buckets)
        self._batch_size = int(batch_size)

    def expand(self, pairs):
        buckets = self._buckets
        history = self._history
        if history is None:
            history = pairs.pipeline | "NoHistory" >> beam.Create([])

        def by_bucket(side, label):
            return side | label >> beam.Map(lambda kv: (bucket_of(kv[0], buckets), kv))

        return ({"pairs": pairs | "PairsByBucket" >> PairsByBucket(buckets),
                 "user": by_bucket(self._users, "UsersByBucket"),
                 "history": by_bucket(history, "HistoryByBucket")}
                | "JoinUsers" >> beam.CoGroupByKey()
                | "Join" >> beam.ParDo(_JoinBucket(self._registry, self._batch_size),
                                       items=beam.pvalue.AsDict(self._items))
                .with_outputs(dead_letter.DEAD_LETTER_TAG, main="examples"))


class _JoinBucket(beam.DoFn):
    """(bucket, {pairs: tables, user: [(id, row)], history: [(id, row)]}) → example chunks."""

    def __init__(self, registry: F.Registry, batch_size: int):
        self._registry = registry
        self._batch_size = batch_size
        self._assemble = None
        self._item_parts: Dict[str, Tuple[Any, ...]] = {}

    def setup(self):
        self._assemble = PairExamples(self._registry)

    def process(self, bucket_and_groups, items):
        _, groups = bucket_and_groups
        tables = list(groups["pairs"])
        if not tables:
            return
        users, histories = dict(groups["user"]), dict(groups["history"])
        pairs = pa.concat_tables(tables)
        # Sorted by user (stable): each user's pairs are consecutive.
        order = pc.sort_indices(pairs, [("user_id", "ascending")])
        user_ids = pairs.column("user_id").take(order).to_pylist()
        item_ids = pairs.column("item_id").take(order).to_pylist()
        assemble, parts = self._assemble, self._item_parts
        chunk = ExampleChunk([], [], [])
        for user_id, group in itertools.groupby(range(len(user_ids)), user_ids.__getitem__):
            user_items = [item_ids[k] for k in group]
            if chunk.examples and len(chunk.examples) + len(user_items) > self._batch_size:
                yield chunk
                chunk = ExampleChunk([], [], [])
            user = assemble.user(user_id, users.get(user_id), histories.get(user_id))
            for item_id in user_items:
                part = parts.get(item_id)
                if part is None:
                    item = items.get(item_id)
                    if item is None:
                        yield dead_letter.tagged("pairs", "unknown_item",
                                                 f"item {item_id!r} not in catalogue",
                                                 f"{user_id},{item_id}")
                        continue
                    part = parts[item_id] = (item, assemble.item(item))
                chunk.user_ids.append(user_id)
                chunk.item_ids.append(item_id)
                chunk.examples.append(assemble.example(user, item_id, *part))
        if chunk.examples:
            yield chunk


def _task_columns(task: TaskConfig, values: np.ndarray, names: Sequence[str]) -> List[pa.Array]:
    """One task's output columns (see the module docstring) from the signature's output."""
    if task.type != "multiclass":
        return [pa.array(np.asarray(values, np.float32).reshape(-1))]
    probabilities = np.asarray(values, np.float32)
    n, classes = probabilities.shape
    best = np.argmax(probabilities, axis=1).astype(np.int32)
    offsets = pa.array(np.arange(0, n * classes + 1, classes, dtype=np.int32))
    lists = pa.ListArray.from_arrays(offsets, pa.array(probabilities.reshape(-1)))
    tokens = pa.array(list(names) + [None], pa.string())
    known = np.where(best < len(names), best, len(names))
    return [lists, pa.array(best), tokens.take(pa.array(known))]


def _to_table(result: PredictionResult, tasks: Sequence[TaskConfig],
              names: Dict[str, List[str]], rank_by: str, schema: pa.Schema) -> pa.Table:
    """Scored chunks of whole users → their rows, ranked within each user, as one table.

    Rank 1 is the highest ``rank_by``; equal scores rank by item id. The rows
    come sorted by user, then rank.
    """
    chunks = result.example
    columns = [pa.array([u for c in chunks for u in c.user_ids], pa.string()),
               pa.array([i for c in chunks for i in c.item_ids], pa.string())]
    for task in tasks:
        columns += _task_columns(task, result.inference[f"p_{task.name}"],
                                 names.get(task.name, ()))
    n = len(columns[0])
    unranked = pa.Table.from_arrays(columns + [pa.nulls(n, pa.int32())], schema=schema)
    table = unranked.take(pc.sort_indices(unranked, [
        ("user_id", "ascending"), (rank_by, "descending"), ("item_id", "ascending")]))
    users = table.column("user_id").to_numpy(zero_copy_only=False)
    position = np.arange(n)
    first = np.maximum.accumulate(np.where(np.r_[True, users[1:] != users[:-1]], position, 0))
    rank = pa.array((position - first + 1).astype(np.int32))
    beam.metrics.Metrics.counter(dead_letter.NAMESPACE, "score/rows").inc(n)
    return table.set_column(table.num_columns - 1, "rank", rank)


class Score(beam.PTransform):
    """Tables of (user_id, item_id) pairs → scored tables ranked within user, + dead letters.

    Stages: BuildRawExamples (chunks of whole users) → Batch (about
    ``batch_size`` pairs) → RunInference → ToRows (one Arrow table of
    :func:`scores_schema` per batch, ranked within user).

    Args:
        model_dir: The exported model (its serving signature takes raw examples).
        registry: The run's registry.
        tasks: The model's tasks (one output column set each).
        class_names: Each multiclass task's class tokens (:func:`class_names`).
        rank_by: Output column to rank by (``p_<task>``).
        batch_size: Examples per signature call.
        users, items: (id, row) side tables (:class:`ReadSideTable`).
        history: (user_id, history after the user's last event), or None.
        buckets: Hash buckets of the join by user (:class:`BuildRawExamples`).
    """

    def __init__(self, model_dir: str, registry: F.Registry, tasks: Sequence[TaskConfig],
                 class_names: Dict[str, List[str]], rank_by: str, batch_size: int, *,
                 users, items, history=None, buckets: int = 1):
        super().__init__()
        self._model_dir = model_dir
        self._registry = registry
        self._tasks = tuple(tasks)
        self._names = dict(class_names)
        self._rank_by = rank_by
        self._batch_size = int(batch_size)
        self._users, self._items, self._history = users, items, history
        self._buckets = int(buckets)

    def expand(self, pairs) -> Outputs:
        joined = pairs | "BuildRawExamples" >> BuildRawExamples(
            self._users, self._items, self._registry, self._history, buckets=self._buckets,
            batch_size=self._batch_size)
        handler = ChunkHandler(self._model_dir, "serving_default", _serialized, _example_bytes)
        ranked = (
            joined.examples
            | "Batch" >> beam.BatchElements(min_batch_size=min(64, self._batch_size),
                                            max_batch_size=self._batch_size,
                                            element_size_fn=lambda chunk: len(chunk.examples))
            | "RunInference" >> RunInference(handler)
            | "ToRows" >> beam.Map(_to_table, self._tasks, self._names, self._rank_by,
                                   scores_schema(self._tasks)))
        return Outputs(ranked, joined[dead_letter.DEAD_LETTER_TAG])


def join_buckets(patterns: Sequence[str], bucket_bytes: int = BUCKET_BYTES) -> int:
    """Hash buckets for the join by user: one per ``bucket_bytes`` of the joined inputs' files."""
    import tensorflow as tf

    size = sum(tf.io.gfile.stat(path).length for pattern in patterns
               for path in tf.io.gfile.glob(pattern))
    return max(1, -(-size // bucket_bytes))


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
    joined = [pairs, layout.users_table + "*"]
    if tf.io.gfile.glob(history_pattern):
        history = pipeline | "ReadHistory" >> ReadSideTable(history_pattern, registry.user_key,
                                                            registry)
        joined.append(history_pattern)
    scored = read.pairs | "Score" >> Score(
        model_dir, registry, tasks, names, config.scoring.rank_by,
        config.scoring.batch_size, users=users, items=items, history=history,
        buckets=join_buckets(joined))
    _ = scored.main | "WriteScores" >> beam.io.WriteToParquetBatched(
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
