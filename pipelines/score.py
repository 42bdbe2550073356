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

import os
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io import fileio
from apache_beam.ml.inference.base import PredictionResult, RunInference

from pipelines import dead_letter, examples, options as beam_options
from pipelines.inference import COLUMNS_SIGNATURE, ChunkHandler, signature_names
from pipelines.outputs import Outputs
from pipelines.pair_columns import column_bytes, concat
from pipelines.pair_join import (PAIRS_SCHEMA, BuildRawExamples, ExampleChunk, ReadRecords,
                                 join_buckets)
from pipelines.side_inputs import Limited, run_checked
from pipelines.sinks import WriteParquetTables
from shoprec.core import registry as F
from shoprec.core.config import Config
from shoprec.core.errors import ConfigError, InputMissingError, StageOrderError
from shoprec.core.layout import JSONL_SUFFIX, PARQUET_SUFFIX
from shoprec.core.model_config import TaskConfig
from shoprec.io import models
from shoprec.io.outputs import clear, require_success, write_report, write_success


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


def _serialized(chunks: Sequence[ExampleChunk]) -> Dict[str, List[bytes]]:
    """Chunks' serialized raw examples, the serving signature's ``examples`` input."""
    if len(chunks) == 1:
        return {"examples": chunks[0].examples}
    return {"examples": [s for chunk in chunks for s in chunk.examples]}


def _example_bytes(chunks: Sequence[ExampleChunk]) -> int:
    return sum(sum(map(len, chunk.examples)) for chunk in chunks)


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


def _string_ranks(strings: pa.Array) -> np.ndarray:
    """Each row's rank among the distinct values of ``strings`` in Arrow's (byte) order:
    equal strings rank equal, and the ranks sort as the strings do."""
    codes = strings.dictionary_encode()
    order = pc.sort_indices(codes.dictionary).to_numpy()
    ranks = np.empty(len(order), np.int64)
    ranks[order] = np.arange(len(order))
    return ranks[codes.indices.to_numpy(zero_copy_only=False)]


def ranked_order(user_ids: pa.Array, scores: np.ndarray, item_ids: pa.Array
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """The row order by user id, then score descending (NaN last), then item id, and
    each row's user rank (:func:`_string_ranks`) in that order.

    The order ``pc.sort_indices`` gives with those three keys (stable: equal
    keys keep their order), from integer keys: a string sorts by its rank
    among the batch's distinct values (a few hundred strings sorted, not every
    row compared by its strings), and the user's rank, the NaN flag and the
    score's bits ordered as integers are one int64. Where the item's rank fits
    in that int64's spare low bits (under 2**30 distinct users times distinct
    items: any batch of the job's size), the rows are one stable argsort of
    one int64, a tenth of ``numpy.lexsort``'s time on two keys; otherwise
    ``numpy.lexsort`` of both, the same order.
    """
    # + 0: -0.0 becomes 0.0, which Arrow ranks equal.
    scores = np.asarray(scores, np.float32).reshape(-1) + np.float32(0)
    nan = np.isnan(scores)
    bits = scores.view(np.int32).astype(np.int64)
    # A float's order as an integer's: a negative float's magnitude bits reversed.
    ascending = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    descending = np.where(nan, 0, (1 << 31) - 1 - ascending)  # in [0, 2**32)
    users, items = _string_ranks(user_ids), _string_ranks(item_ids)
    key = (users << 33) | (nan.astype(np.int64) << 32) | descending
    item_bits = int(items.max()).bit_length() if len(items) else 0
    user_bits = int(users.max()).bit_length() if len(users) else 0
    if user_bits + 33 + item_bits <= 63:
        order = np.argsort((key << item_bits) | items, kind="stable")
    else:
        order = np.lexsort((items, key))
    return order, users[order]


def _to_table(result: PredictionResult, tasks: Sequence[TaskConfig],
              names: Dict[str, List[str]], rank_by: str, schema: pa.Schema) -> pa.Table:
    """Scored chunks of whole users → their rows, ranked within each user, as one table.

    Rank 1 is the highest ``rank_by``; equal scores rank by item id. The rows
    come sorted by user, then rank (:func:`ranked_order`).
    """
    chunks = result.example
    user_ids = pa.concat_arrays([c.user_ids for c in chunks])
    item_ids = pa.concat_arrays([c.item_ids for c in chunks])
    columns = [user_ids, item_ids]
    for task in tasks:
        columns += _task_columns(task, result.inference[f"p_{task.name}"],
                                 names.get(task.name, ()))
    n = len(user_ids)
    order, users = ranked_order(user_ids, result.inference[rank_by], item_ids)
    position = np.arange(n)
    first = np.maximum.accumulate(np.where(np.r_[True, users[1:] != users[:-1]], position, 0))
    rank = pa.array((position - first + 1).astype(np.int32))
    beam.metrics.Metrics.counter(dead_letter.NAMESPACE, "score/rows").inc(n)
    table = pa.Table.from_arrays(columns + [pa.nulls(n, pa.int32())], schema=schema)
    return table.take(pa.array(order)).set_column(len(columns), "rank", rank)


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
        users: Lists of the users table's (user_id, serialized row) records
            (``pipelines.pair_join.ReadRecords``).
        items: (item_id, item-table row), the catalogue (:class:`ReadSideTable`).
        history: Lists of the history table's records (history after each
            user's last event), or None.
        buckets: Hash buckets of the join by user (``pipelines.pair_join``).
        columns: Feed the model's ``serving_columns`` raw feature columns;
            False: serialized examples to ``serving_default`` (a model
            exported before that signature existed).
    """

    def __init__(self, model_dir: str, registry: F.Registry, tasks: Sequence[TaskConfig],
                 class_names: Dict[str, List[str]], rank_by: str, batch_size: int, *,
                 users, items, history=None, buckets: int = 1, columns: bool = False):
        super().__init__()
        self._model_dir = model_dir
        self._registry = registry
        self._tasks = tuple(tasks)
        self._names = dict(class_names)
        self._rank_by = rank_by
        self._batch_size = int(batch_size)
        self._users, self._items, self._history = users, items, history
        self._buckets = int(buckets)
        self._columns = columns

    def expand(self, pairs) -> Outputs:
        joined = pairs | "BuildRawExamples" >> BuildRawExamples(
            self._users, self._items, self._registry, self._history, buckets=self._buckets,
            batch_size=self._batch_size, columns=self._columns)
        handler = (ChunkHandler(self._model_dir, COLUMNS_SIGNATURE, concat, column_bytes)
                   if self._columns else
                   ChunkHandler(self._model_dir, "serving_default", _serialized, _example_bytes))
        ranked = (
            joined.examples
            | "Batch" >> beam.BatchElements(min_batch_size=min(64, self._batch_size),
                                            max_batch_size=self._batch_size,
                                            element_size_fn=lambda chunk: len(chunk.user_ids))
            # Typed, so that Beam sizes the results by pipelines.chunk_coder.
            | "RunInference" >> RunInference(handler).with_output_types(PredictionResult)
            | "ToRows" >> beam.Map(_to_table, self._tasks, self._names, self._rank_by,
                                   scores_schema(self._tasks)))
        return Outputs(ranked, joined[dead_letter.DEAD_LETTER_TAG])


def build(pipeline: beam.Pipeline, config: Config, pairs: str, model_dir: str,
          names: Mapping[str, Sequence[str]], columns: bool = True) -> None:
    """Adds the score job to ``pipeline``: read pairs and side tables, :class:`Score`, write.

    Args:
        pipeline: The graph to add to.
        config: Run config.
        pairs: user_id,item_id CSV pattern to score.
        model_dir: The serving SavedModel (the published version's).
        names: Class names of each multiclass task.
        columns: Feed the model raw feature columns (``Score``'s ``columns``).
    """
    import tensorflow as tf

    layout = config.layout
    tasks = tuple(config.model.tasks)
    read = pipeline | "ReadPairs" >> ReadPairs(pairs)
    registry = config.registry
    users = pipeline | "ReadUsers" >> ReadRecords(layout.users_table + "*", registry.user_key)
    items = (pipeline
             | "ReadItems" >> ReadSideTable(layout.items_table + "*", registry.item_key, registry)
             | "CatalogueLimit" >> Limited(config.ingest.max_catalogue_items,
                                           "ingest.max_catalogue_items", "items in the catalogue"))
    history = None
    history_pattern = layout.history_table + "*"
    joined = [pairs, layout.users_table + "*"]
    if tf.io.gfile.glob(history_pattern):
        history = pipeline | "ReadHistory" >> ReadRecords(history_pattern, registry.user_key)
        joined.append(history_pattern)
    scored = read.pairs | "Score" >> Score(
        model_dir, registry, tasks, names, config.scoring.rank_by,
        config.scoring.batch_size, users=users, items=items, history=history,
        buckets=join_buckets(joined), columns=columns)
    _ = scored.main | "WriteScores" >> WriteParquetTables(
        layout.scores, scores_schema(tasks), PARQUET_SUFFIX)
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

    Raises:
        ConfigError: the registry has candidate features (``recommend`` ranks
            candidates; arbitrary pairs have no candidate signals), or the
            items table has more than ``ingest.max_catalogue_items`` items
            (every worker holds it).
    """
    import tensorflow as tf

    layout = config.layout
    signals = config.registry.candidate_features()
    if signals:
        # A pair's candidate signals (which sources proposed it, how high) exist
        # only where the sources built the list: scoring any other pair would
        # hand the ranker made-up inputs.
        raise ConfigError(f"score: the ranker reads candidate signals "
                          f"{[f.name for f in signals][:3]}... that only the candidate "
                          f"sources give; use `shoprec recommend`, which ranks their lists")
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
    pipeline = beam_options.new_pipeline(beam_args)
    build(pipeline, config, pattern, model_dir, names,
          columns=COLUMNS_SIGNATURE in signature_names(model_dir))
    result = run_checked(pipeline)
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
