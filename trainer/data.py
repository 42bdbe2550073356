"""tf.data input over the featurize job's transformed TFRecord shards.

Examples are batched as serialized strings and parsed a whole batch at a time:
one ``parse_example`` call per batch is far cheaper than one per record. A small
training split is parsed once and held as columns instead, its batches gathered
in the order streaming would read them.
"""

from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional, Tuple

import numpy as np

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf

from shoprec.core import registry as F
from shoprec.core.model_config import TaskConfig

# Shards read concurrently; featurize writes a handful, so this covers them all.
_CYCLE_LENGTH = 4
# Shuffle buffer in batches: enough to mix neighbouring shards' records. Not a
# full shuffle: records come in runs of one user, and a new order of the users
# every epoch trained to lower AUC and NDCG on the demo (docs/architectures.md,
# "Training order").
_SHUFFLE_BATCHES = 8
# Training shards totalling at most this many (gzip) bytes are parsed once and
# held in memory as columns, batches gathered from them in the streamed order:
# streaming pays reading, inflating, shuffling and parsing every example every
# epoch (benchmarks/train_input.py). Some 5-10x this in RAM; larger splits stream.
CACHE_MAX_BYTES = 64 << 20
# Batches parsed at once, and batches kept ready ahead of the train step. Fixed,
# with tf.data's autotuner off: the autotuner's own bookkeeping and the threads
# it adds cost 24% of the input's CPU per example on a 2-core host, where that
# CPU is taken from training (benchmarks/train_input.py). Two parses at once
# still feed ~700k examples/s.
_PARSE_CALLS = 2
_PREFETCH_BATCHES = 2


def parse_spec(transformed_spec: Mapping[str, tf.io.FixedLenFeature],
               tasks: Iterable[TaskConfig],
               registry: F.Registry,
               extra_labels: Iterable[str] = ()) -> Dict[str, tf.io.FixedLenFeature]:
    """The slice of TFT's transformed feature spec the trainer reads.

    Model inputs come from the registry and labels from the tasks (and
    ``extra_labels``), so extra columns in the transformed data are never parsed.

    Raises:
        KeyError: the transformed data lacks a registry input or task label.
    """
    inputs = [f.name for f in registry.inputs()]
    labels = {t.label for t in tasks} | set(extra_labels)
    names = inputs + sorted(labels - set(inputs))
    missing = [n for n in names if n not in transformed_spec]
    if missing:
        raise KeyError(f"transformed data has no feature(s) {missing}; re-run featurize")
    return {n: transformed_spec[n] for n in names}


def split_labels(parsed: Dict[str, tf.Tensor], tasks: Iterable[TaskConfig],
                 registry: F.Registry, extra_labels: Iterable[str] = ()
                 ) -> Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]]:
    """Splits parsed columns into (model inputs, labels).

    Labels are ``{task name: its label}`` plus ``{column: column}`` for each
    of ``extra_labels`` (a task's condition, the retrieval positives). A label
    that is also a model input (a multiclass item attribute) stays an input.

    Raises:
        ValueError: an extra label column is also the name of a task that
            reads a different column.
    """
    tasks = tuple(tasks)
    labels = {t.name: parsed[t.label] for t in tasks}
    for column in extra_labels:
        task = next((t for t in tasks if t.name == column), None)
        if task is not None and task.label != column:
            raise ValueError(f"label column {column!r} clashes with task {column!r}, "
                             f"whose label is {task.label!r}")
        labels[column] = parsed[column]
    input_names = {f.name for f in registry.inputs()}
    inputs = {k: v for k, v in parsed.items() if k in input_names}
    return inputs, labels


def _interleaved(files: tf.data.Dataset, read, batch_size: int, training: bool,
                 seed: Optional[int], repeat: bool) -> tf.data.Dataset:
    """The training order over ``files``: interleaved, shuffled, repeated.

    One definition for both inputs: the streamed one reads records, the cached
    one the same positions as indices into its columns. The shuffle ops draw
    the same random sequence whatever the elements hold, so under a seed both
    yield the same examples in the same order.
    """
    # A sequential interleave (still mixing _CYCLE_LENGTH shards record by
    # record) costs less CPU per record than a parallel one, and the CPU it
    # saves goes to training on a CPU-bound host (benchmarks/train_input.py);
    # the batched parse runs in parallel with training either way.
    # The fixed order also keeps runs with the same seed reproducible.
    dataset = files.interleave(read, cycle_length=_CYCLE_LENGTH)
    if training:
        dataset = dataset.shuffle(_SHUFFLE_BATCHES * batch_size, seed=seed,
                                  reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return dataset


def _streamed(file_pattern: str, spec, batch_size: int, training: bool, seed: Optional[int],
              repeat: bool, drop_remainder: bool) -> tf.data.Dataset:
    """Parsed batches read from the shards every epoch: records shuffled in a buffer."""
    dataset = _interleaved(
        tf.data.Dataset.list_files(file_pattern, shuffle=training, seed=seed),
        lambda path: tf.data.TFRecordDataset(path, compression_type="GZIP"),
        batch_size, training, seed, repeat)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).map(
        lambda serialized: tf.io.parse_example(serialized, spec),
        num_parallel_calls=_PARSE_CALLS)


def _from_memory(file_pattern: str, spec, batch_size: int, training: bool, seed: Optional[int],
                 repeat: bool, drop_remainder: bool) -> tf.data.Dataset:
    """The streamed input's batches, gathered from the split parsed once and held as columns.

    Each file's records are parsed once into columns; the streamed input's
    interleave and shuffles then run over row indices, not records, and a
    batch is one gather per column. Same examples in the same order as
    :func:`_streamed` under the same seed, without inflating and parsing every
    example every epoch.
    """
    # The files in list_files' order: the one the streamed input shuffles.
    paths = tf.io.matching_files(file_pattern).numpy()
    parts, counts = [], []
    for path in paths:
        parsed = tf.data.TFRecordDataset(path, compression_type="GZIP").batch(4096).map(
            lambda serialized: tf.io.parse_example(serialized, spec))
        counts.append(0)
        for part in parsed:
            parts.append(part)
            counts[-1] += int(next(iter(part.values())).shape[0])
    if not parts:  # nothing to hold: the streamed input yields the same (nothing)
        return _streamed(file_pattern, spec, batch_size, training, seed, repeat,
                         drop_remainder)
    columns = {name: tf.concat([p[name] for p in parts], axis=0) for name in spec}
    ends = tf.constant(np.cumsum(counts), tf.int64)
    starts = ends - tf.constant(counts, tf.int64)
    files = tf.data.Dataset.range(len(paths))
    if training:
        # What list_files(shuffle=True, seed=seed) does after matching.
        files = files.shuffle(max(len(paths), 1), seed=seed)
    dataset = _interleaved(
        files, lambda file: tf.data.Dataset.range(starts[file], ends[file]),
        batch_size, training, seed, repeat)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).map(
        lambda index: {name: tf.gather(values, index) for name, values in columns.items()})


def make_dataset(file_pattern: str,
                 transformed_spec: Mapping[str, tf.io.FixedLenFeature],
                 tasks: Iterable[TaskConfig],
                 global_batch_size: int,
                 training: bool,
                 *,
                 registry: F.Registry,
                 seed: Optional[int] = None,
                 repeat: bool = False,
                 extra_labels: Iterable[str] = (),
                 keep_if: Optional[str] = None,
                 cache: Optional[bool] = None) -> tf.data.Dataset:
    """Batched (features, labels) from gzip TFRecords of transformed tf.Examples.

    The batch size is the global one; under a strategy, Keras splits each batch
    across replicas (and, multi-worker, across workers).

    Args:
        file_pattern: Glob of transformed shards, e.g. ``layout.transformed('train') + '-*'``.
        transformed_spec: ``tft_output.transformed_feature_spec()``.
        tasks: Tasks whose labels to yield, keyed by task name.
        global_batch_size: Examples per step over all replicas.
        training: Shuffle files and records, and drop the last partial batch
            so every step averages its loss over exactly the global batch.
        seed: Shuffle seed. Multi-worker file sharding needs every worker to
            list files in the same order, so training runs should pass one.
        repeat: Repeat indefinitely (for a fixed ``steps_per_epoch``).
        registry: The run's feature registry (which model inputs to parse).
        extra_labels: 0/1 label columns to yield beside the task labels,
            keyed by column name.
        keep_if: A 0/1 label column: keep only examples where it is 1 (e.g.
            clicked impressions for a naive CVR model); batches stay full.
        cache: True: parse the split once and hold it in memory as columns
            (some 5-10x its gzip size); each epoch's batches are then
            gathered from them in the very order streaming reads them (same
            seed, same examples, same order), at about the in-memory feed's
            rate (benchmarks/train_input.py). False: stream the shards every
            epoch, records mixed in a shuffle buffer. None: cache when
            training on shards of at most :data:`CACHE_MAX_BYTES`.

    Returns:
        A dataset of ``(features, labels)`` dicts with a leading batch axis.

    Raises:
        FileNotFoundError: nothing matches ``file_pattern``.
    """
    paths = tf.io.gfile.glob(file_pattern)
    if not paths:
        raise FileNotFoundError(f"no transformed examples at {file_pattern}; run featurize first")
    if cache is None:
        cache = training and sum(tf.io.gfile.stat(p).length for p in paths) <= CACHE_MAX_BYTES
    tasks = tuple(tasks)
    extra_labels = tuple(sorted(set(extra_labels) | ({keep_if} if keep_if else set())))
    spec = parse_spec(transformed_spec, tasks, registry, extra_labels)

    def labelled(parsed):
        return split_labels(parsed, tasks, registry, extra_labels)

    drop = training and not keep_if
    if cache:
        dataset = _from_memory(file_pattern, spec, global_batch_size, training, seed,
                               repeat, drop).map(labelled)
    else:
        dataset = _streamed(file_pattern, spec, global_batch_size, training, seed, repeat,
                            drop).map(labelled)
    if keep_if:
        # Filtering parsed batches and re-batching keeps the one-parse-per-batch
        # cost; the filter leaves ragged batches that unbatch/batch evens out.
        dataset = dataset.unbatch().filter(
            lambda features, labels: labels[keep_if] > 0.5).batch(
                global_batch_size, drop_remainder=training)
    dataset = dataset.prefetch(_PREFETCH_BATCHES)

    options = tf.data.Options()
    options.autotune.enabled = False
    # Multi-worker: each worker reads whole shards (FILE) when there are at
    # least as many shards as workers, else (and for a split held in memory)
    # every worker reads all examples and keeps its share (DATA). Ignored by
    # single-worker strategies.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.AUTO
    return dataset.with_options(options)


def scan_column(file_pattern: str, transformed_spec: Mapping[str, tf.io.FixedLenFeature],
                column: str, keep_if: Optional[str] = None) -> np.ndarray:
    """One column of every (kept) example, in file order, parsing nothing else.

    Used before training for what needs one pass over the data: the number of
    training examples and the candidates' impression counts.

    Args:
        file_pattern: Glob of transformed shards.
        transformed_spec: ``tft_output.transformed_feature_spec()``.
        column: Scalar transformed feature to read.
        keep_if: A 0/1 label column; only examples where it is 1 are read.

    Raises:
        FileNotFoundError: nothing matches ``file_pattern``.
    """
    return scan_columns(file_pattern, transformed_spec, (column,), keep_if)[column]


def scan_columns(file_pattern: str, transformed_spec: Mapping[str, tf.io.FixedLenFeature],
                 columns: Iterable[str], keep_if: Optional[str] = None
                 ) -> Dict[str, np.ndarray]:
    """:func:`scan_column` of several columns in one pass: ``{column: values}``.

    Raises:
        FileNotFoundError: nothing matches ``file_pattern``.
    """
    files = sorted(tf.io.gfile.glob(file_pattern))
    if not files:
        raise FileNotFoundError(f"no transformed examples at {file_pattern}; run featurize first")
    columns = tuple(dict.fromkeys(columns))
    names = set(columns) | ({keep_if} if keep_if else set())
    spec = {n: transformed_spec[n] for n in names}
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096).map(
        lambda serialized: tf.io.parse_example(serialized, spec))
    parts: Dict[str, list] = {c: [] for c in columns}
    for batch in dataset:
        keep = batch[keep_if].numpy() > 0.5 if keep_if else None
        for column in columns:
            values = batch[column].numpy()
            parts[column].append(values if keep is None else values[keep])
    return {c: np.concatenate(v) if v else np.zeros([0]) for c, v in parts.items()}
