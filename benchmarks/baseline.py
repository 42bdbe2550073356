"""The featurize job done by hand in one process: the yardstick for the TFT path.

Reads the raw example shards ingest wrote, computes the same featurization as
``transforms.preprocessing.preprocessing_fn`` (vocabularies by frequency with
hashed OOV buckets, z-scores after an optional log1p, per-dimension z-scores
of the item embedding, flags and labels to float, hashed strings and crosses,
explicit-boundary buckets), with the statistics taken from the train split
only, and writes gzip TFRecords of transformed tf.Examples. It refuses what it
does not implement (history lists, text, quantile buckets, shared
vocabularies): see :func:`check_supported`.

It streams in record batches (one pass over train to analyse, one pass over
each split to transform), so its memory does not grow with the data: the
numbers it gives are what this machine can do for this featurization, not
what a cleverer algorithm could. Parsing and encoding use tfx_bsl's C++
coders, the same ones the TFT path uses, and columns are handled with pyarrow
and numpy; TensorFlow is used only for the gzip TFRecord reader/writer and to
hash the (few) out-of-vocabulary tokens, hashed values and crosses with the
same Fingerprint64 buckets TFT uses (each distinct string hashed once a batch).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoprec.core import registry as F

SUFFIX = ".tfrecord.gz"


@dataclasses.dataclass
class Statistics:
    """What the analyse pass learns from train: vocabularies and moments."""

    vocabularies: Dict[str, List[bytes]]  # most frequent first, as TFT writes them
    # (mean, variance) per numeric; per dimension ([width] arrays) for an embedding.
    moments: Dict[str, Tuple[np.ndarray, np.ndarray]]

    def index(self, name: str) -> Dict[bytes, int]:
        return {token: i for i, token in enumerate(self.vocabularies[name])}


def raw_batches(pattern: str, batch_size: int, registry) -> Iterator[pa.RecordBatch]:
    """Yields decoded record batches of the raw example shards matching ``pattern``.

    Args:
        pattern: Glob of gzip TFRecord shards of raw examples.
        batch_size: Examples per batch (the last one may be shorter).
        registry: The run's feature registry (``features``, ``raw_feature_spec()``).
    """
    import tensorflow as tf
    from tensorflow_transform.tf_metadata import schema_utils
    from tfx_bsl.coders import example_coder

    spec = registry.raw_feature_spec()
    decoder = example_coder.ExamplesToRecordBatchDecoder(
        schema_utils.schema_from_feature_spec(spec).SerializeToString())
    files = sorted(tf.io.gfile.glob(pattern))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP", buffer_size=1 << 22)
    for serialized in dataset.batch(batch_size).as_numpy_iterator():
        yield decoder.DecodeBatch(list(serialized))


def _values(batch: pa.RecordBatch, name: str) -> pa.Array:
    # Every raw feature is a length-1 list (FixedLenFeature []): flatten to one value a row.
    return batch.column(batch.schema.get_field_index(name)).flatten()


def _sort_vocabulary(counts: Dict[bytes, int], top_k: Optional[int]) -> List[bytes]:
    # TFT orders by count, then by the token itself, both descending.
    ordered = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
    return [token for token, _ in (ordered[:top_k] if top_k else ordered)]


SUPPORTED_KINDS = frozenset({"id", "categorical", "numeric", "embedding", "flag", "label",
                             "hashed", "cross", "bucketized"})


def check_supported(registry) -> None:
    """Raises NotImplementedError for a registry this baseline cannot featurize."""
    unsupported = [f.name for f in registry.features
                   if f.kind.value not in SUPPORTED_KINDS or getattr(f, "vocabulary", None)
                   or (f.kind == F.Kind.BUCKETIZED and not f.boundaries)
                   or getattr(f, "target", None)]
    if unsupported:
        raise NotImplementedError(f"baseline featurizes scalar features with their own "
                                  f"vocabularies, hashes, crosses and explicit buckets "
                                  f"only; not {unsupported}")


def analyze(pattern: str, registry, batch_size: int = 8192) -> Statistics:
    """One streaming pass over train: token counts and float64 sums per feature."""
    features = registry.features
    counted = [f for f in features if f.kind in (F.Kind.ID, F.Kind.CATEGORICAL)]
    numeric = [f for f in features if f.kind in (F.Kind.NUMERIC, F.Kind.EMBEDDING)]
    counts: Dict[str, Dict[bytes, int]] = {f.name: {} for f in counted}
    # n, sum, sum of squares: per dimension for an embedding.
    sums = {f.name: np.zeros((3, max(f.width, 1)), np.float64) for f in numeric}
    for batch in raw_batches(pattern, batch_size, registry):
        for f in counted:
            table = counts[f.name]
            value_counts = pc.value_counts(_values(batch, f.name))
            tokens = value_counts.field("values").to_pylist()
            for token, n in zip(tokens, value_counts.field("counts").to_numpy()):
                table[token] = table.get(token, 0) + int(n)
        for f in numeric:
            x = _numeric_input(f, _values(batch, f.name)).astype(np.float64)
            x = x.reshape(batch.num_rows, -1)
            sums[f.name] += np.stack([np.full(x.shape[1], len(x)), x.sum(axis=0),
                                      np.square(x).sum(axis=0)])
    moments = {}
    for name, (n, total, total_sq) in sums.items():
        mean = total / n
        # Population variance, as tft.mean_and_var; clamped at 0 against rounding.
        var = np.maximum(total_sq / n - mean * mean, 0.0)
        if registry.by_name[name].kind == F.Kind.NUMERIC:
            mean, var = mean[0], var[0]
        moments[name] = (np.float32(mean), np.float32(var))
    return Statistics({f.name: _sort_vocabulary(counts[f.name], f.top_k) for f in counted},
                      moments)


def _numeric_input(feature: F.Feature, values: pa.Array) -> np.ndarray:
    x = values.to_numpy(zero_copy_only=False).astype(np.float32)
    if feature.log:
        x = np.log1p(np.maximum(x, np.float32(0.0)))
    return x


def _hash(values: pa.Array, buckets: int) -> np.ndarray:
    """``tf.strings.to_hash_bucket_fast`` of each value, hashing each distinct one once."""
    import tensorflow as tf

    encoded = pc.dictionary_encode(values)
    uniques = encoded.dictionary.to_pylist()
    hashed = (tf.strings.to_hash_bucket_fast(uniques, buckets).numpy() if uniques
              else np.zeros(0, np.int64))
    return hashed[encoded.indices.to_numpy(zero_copy_only=False)]


def _derived(feature: F.Feature, batch: pa.RecordBatch) -> np.ndarray:
    """A cross or an explicit-boundary bucket index, as ``preprocessing_fn._derived``."""
    inputs = [_values(batch, n) for n in feature.derived_from]
    if feature.kind == F.Kind.CROSS:
        separator = pa.scalar(F.CROSS_SEPARATOR.encode(), inputs[0].type)
        return _hash(pc.binary_join_element_wise(*inputs, separator), feature.hash_buckets)
    # tft.apply_buckets: the number of boundaries <= x (NaN past the last one).
    x = inputs[0].to_numpy(zero_copy_only=False).astype(np.float32)
    return np.searchsorted(np.asarray(feature.boundaries, np.float32), x,
                           side="right").astype(np.int64)


class _Vocabulary:
    """Token → index with TFT's OOV rule: vocab size + Fingerprint64(token) % buckets."""

    def __init__(self, tokens: List[bytes], oov_buckets: int):
        self._index = {t: i for i, t in enumerate(tokens)}
        self._size = len(tokens)
        self._buckets = oov_buckets

    def apply(self, values: pa.Array) -> np.ndarray:
        encoded = pc.dictionary_encode(values)
        uniques = encoded.dictionary.to_pylist()
        mapped = np.fromiter((self._index.get(t, -1) for t in uniques), np.int64, len(uniques))
        unseen = np.flatnonzero(mapped < 0)
        if len(unseen):
            import tensorflow as tf

            hashed = tf.strings.to_hash_bucket_fast(
                [uniques[i] for i in unseen], self._buckets).numpy()
            mapped[unseen] = self._size + hashed
        return mapped[encoded.indices.to_numpy(zero_copy_only=False)]


def _list_array(values: np.ndarray, width: int) -> pa.LargeListArray:
    offsets = np.arange(0, len(values) + 1, dtype=np.int64) * width
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values.reshape(-1)))


class Transformer:
    """Applies learnt statistics to raw record batches, as ``preprocessing_fn`` does."""

    def __init__(self, registry, stats: Statistics):
        self._features = tuple(registry.features)
        self._stats = stats
        self._vocabs = {f.name: _Vocabulary(stats.vocabularies[f.name], f.oov_buckets)
                        for f in self._features if f.kind in (F.Kind.ID, F.Kind.CATEGORICAL)}

    def columns(self, batch: pa.RecordBatch) -> Dict[str, np.ndarray]:
        """Transformed numpy columns of one raw batch, keyed by feature name."""
        out = {}
        for f in self._features:
            if f.source == F.Source.DERIVED:
                out[f.name] = _derived(f, batch)
                continue
            values = _values(batch, f.name)
            if f.kind in (F.Kind.ID, F.Kind.CATEGORICAL):
                out[f.name] = self._vocabs[f.name].apply(values)
            elif f.kind == F.Kind.HASHED:
                out[f.name] = _hash(values, f.hash_buckets)
            elif f.kind in (F.Kind.NUMERIC, F.Kind.EMBEDDING):
                mean, var = self._stats.moments[f.name]
                x = _numeric_input(f, values)
                if f.kind == F.Kind.EMBEDDING:
                    x = x.reshape(batch.num_rows, f.width)
                centred = x - mean
                # A zero variance leaves the centred value, as tft.scale_to_z_score does.
                out[f.name] = np.where(var != 0, centred / np.sqrt(np.where(var != 0, var, 1)),
                                       centred).astype(np.float32)
            else:
                out[f.name] = values.to_numpy(zero_copy_only=False).astype(np.float32)
        return out

    def record_batch(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        columns = self.columns(batch)
        arrays, names = [], []
        for name in sorted(columns):
            column = columns[name]
            arrays.append(_list_array(column, column.shape[1] if column.ndim == 2 else 1))
            names.append(name)
        return pa.RecordBatch.from_arrays(arrays, names)


def transform_split(pattern: str, output_prefix: str, transformer: Transformer,
                    registry, num_shards: int, batch_size: int) -> dict:
    """Streams one split through ``transformer`` into ``num_shards`` gzip TFRecord shards."""
    import tensorflow as tf
    from tfx_bsl.coders import example_coder

    encoder = example_coder.RecordBatchToExamplesEncoder()
    paths = [f"{output_prefix}-{i:05d}-of-{num_shards:05d}{SUFFIX}" for i in range(num_shards)]
    writers = [tf.io.TFRecordWriter(p, tf.io.TFRecordOptions(compression_type="GZIP"))
               for p in paths]
    rows, write_s = 0, 0.0
    try:
        for i, batch in enumerate(raw_batches(pattern, batch_size, registry)):
            writer = writers[i % num_shards]  # whole batches round-robin over shards
            encoded = encoder.encode(transformer.record_batch(batch))
            started = time.perf_counter()
            for serialized in encoded:
                writer.write(serialized)
            write_s += time.perf_counter() - started
            rows += batch.num_rows
    finally:
        for writer in writers:
            writer.close()
    return {"rows": rows, "bytes": sum(os.path.getsize(p) for p in paths), "files": paths,
            "write_seconds": write_s}


def featurize(raw_prefixes: Dict[str, str], output_dir: str,
              registry, num_shards: int = 4,
              batch_size: int = 8192) -> dict:
    """Analyses train and transforms train and eval; returns rows, bytes, seconds, phases.

    Args:
        raw_prefixes: {split: raw example shard prefix} (``layout.examples(split)``);
            statistics come from ``train``, every split is transformed.
        output_dir: Folder for ``{split}-SSSSS-of-NNNNN.tfrecord.gz`` and vocabularies.
        registry: The run's feature registry (``config.registry``).
        num_shards: Output shards per split.
        batch_size: Examples per record batch.
    """
    check_supported(registry)
    os.makedirs(output_dir, exist_ok=True)
    start = time.perf_counter()
    stats = analyze(raw_prefixes["train"] + "-*", registry, batch_size)
    analysed = time.perf_counter()
    transformer = Transformer(registry, stats)
    splits = {s: transform_split(prefix + "-*", os.path.join(output_dir, s), transformer,
                                 registry, num_shards, batch_size)
              for s, prefix in raw_prefixes.items()}
    for f in registry.features:
        if f.name in stats.vocabularies:
            with open(os.path.join(output_dir, f.vocab_filename), "wb") as out:
                out.write(b"".join(t + b"\n" for t in stats.vocabularies[f.name]))
    seconds = time.perf_counter() - start
    write_s = sum(split["write_seconds"] for split in splits.values())
    return {"rows": {s: split["rows"] for s, split in splits.items()},
            "bytes": {s: split["bytes"] for s, split in splits.items()},
            "seconds": seconds,
            # Where the time goes: the gzip TFRecord writes are timed on their own.
            "phases": {"analyze": analysed - start, "gzip_write": write_s,
                       "read_transform_encode": seconds - (analysed - start) - write_s},
            "statistics": stats}
