"""tf.data input over the featurize job's transformed TFRecord shards.

Examples are batched as serialized strings and parsed a whole batch at a time:
one ``parse_example`` call per batch is far cheaper than one per record.
"""

from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional, Tuple

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf

from shoprec.config import TaskConfig
from transforms import features as F

# Shards read concurrently; featurize writes a handful, so this covers them all.
_CYCLE_LENGTH = 4
# Shuffle buffer in batches: enough to mix neighbouring shards' records.
_SHUFFLE_BATCHES = 8


def parse_spec(transformed_spec: Mapping[str, tf.io.FixedLenFeature],
               tasks: Iterable[TaskConfig]) -> Dict[str, tf.io.FixedLenFeature]:
    """The slice of TFT's transformed feature spec the trainer reads.

    Model inputs come from the registry and labels from the tasks, so extra
    columns in the transformed data are never parsed.

    Raises:
        KeyError: the transformed data lacks a registry input or task label.
    """
    names = [f.name for f in F.inputs()] + sorted({t.label for t in tasks})
    missing = [n for n in names if n not in transformed_spec]
    if missing:
        raise KeyError(f"transformed data has no feature(s) {missing}; re-run featurize")
    return {n: transformed_spec[n] for n in names}


def split_labels(parsed: Dict[str, tf.Tensor], tasks: Iterable[TaskConfig]
                 ) -> Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]]:
    """Splits parsed columns into (model inputs, {task name: label})."""
    tasks = tuple(tasks)
    labels = {t.name: parsed[t.label] for t in tasks}
    label_names = {t.label for t in tasks}
    inputs = {k: v for k, v in parsed.items() if k not in label_names}
    return inputs, labels


def make_dataset(file_pattern: str,
                 transformed_spec: Mapping[str, tf.io.FixedLenFeature],
                 tasks: Iterable[TaskConfig],
                 global_batch_size: int,
                 training: bool,
                 seed: Optional[int] = None,
                 repeat: bool = False) -> tf.data.Dataset:
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

    Returns:
        A dataset of ``(features, labels)`` dicts with a leading batch axis.

    Raises:
        FileNotFoundError: nothing matches ``file_pattern``.
    """
    if not tf.io.gfile.glob(file_pattern):
        raise FileNotFoundError(f"no transformed examples at {file_pattern}; run featurize first")
    tasks = tuple(tasks)
    spec = parse_spec(transformed_spec, tasks)

    files = tf.data.Dataset.list_files(file_pattern, shuffle=training, seed=seed)
    dataset = files.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type="GZIP"),
        cycle_length=_CYCLE_LENGTH,
        num_parallel_calls=tf.data.AUTOTUNE,
        # Fixed interleave order keeps runs with the same seed reproducible.
        deterministic=True)
    if training:
        dataset = dataset.shuffle(_SHUFFLE_BATCHES * global_batch_size, seed=seed,
                                  reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(global_batch_size, drop_remainder=training)
    dataset = dataset.map(
        lambda serialized: split_labels(tf.io.parse_example(serialized, spec), tasks),
        num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)

    options = tf.data.Options()
    # Multi-worker: each worker reads whole shards (FILE) when there are at
    # least as many shards as workers, else every worker reads all records
    # and keeps its share (DATA). Ignored by single-worker strategies.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.AUTO
    return dataset.with_options(options)
