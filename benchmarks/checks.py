"""Checks that the baseline computes what the TFT path computes.

A speed comparison is only honest if both sides produce the same features.
Three checks, from cheap to thorough:

* vocabularies: the files TFT wrote equal the baseline's, in the same order;
* sample: raw rows of each split (plus rows of never-seen tokens, which take
  the OOV hash buckets) put through TFT's transform graph and through the
  baseline's transformer agree: indices exactly, floats within ``atol``;
* outputs: the written shards hold the same number of rows and, per feature,
  the same multiset of values (per-row sums for the embedding), compared sorted
  since the two writers order rows differently.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Dict, List

import numpy as np

from benchmarks import baseline as B
from shoprec.core import registry as F

MOMENTS_FILE = "moments.json"


def save_statistics(stats: B.Statistics, output_dir: str) -> None:
    """Writes the moments beside the vocabularies the baseline already wrote."""
    with open(os.path.join(output_dir, MOMENTS_FILE), "w") as f:
        json.dump({k: [np.asarray(m).tolist(), np.asarray(v).tolist()]
                   for k, (m, v) in stats.moments.items()}, f)


def load_statistics(registry, output_dir: str) -> B.Statistics:
    with open(os.path.join(output_dir, MOMENTS_FILE)) as f:
        moments = {k: (np.float32(m), np.float32(v)) if not isinstance(m, list)
                   else (np.asarray(m, np.float32), np.asarray(v, np.float32))
                   for k, (m, v) in json.load(f).items()}
    vocabularies = {}
    for f in registry.features:
        if f.kind in (F.Kind.ID, F.Kind.CATEGORICAL):
            vocabularies[f.name] = _lines(os.path.join(output_dir, f.vocab_filename))
    return B.Statistics(vocabularies, moments)


def _lines(path: str) -> List[bytes]:
    with open(path, "rb") as f:
        return f.read().split(b"\n")[:-1]


def check_vocabularies(registry, transform_dir: str, baseline_dir: str) -> Dict[str, int]:
    """{feature: vocabulary size}; raises AssertionError on the first mismatch."""
    sizes = {}
    for f in registry.of_kind(F.Kind.ID, F.Kind.CATEGORICAL):
        tft_vocab = _lines(os.path.join(transform_dir, "transform_fn", "assets", f.vocab_filename))
        ours = _lines(os.path.join(baseline_dir, f.vocab_filename))
        assert tft_vocab == ours, f"{f.name}: vocabularies differ (TFT {len(tft_vocab)}, " \
                                  f"baseline {len(ours)} tokens)"
        sizes[f.name] = len(ours)
    return sizes


def _unseen_rows(registry, serialized: bytes, count: int) -> List[bytes]:
    """Copies of one raw example with every id / category replaced by a new token."""
    import tensorflow as tf

    rows = []
    for i in range(count):
        example = tf.train.Example.FromString(serialized)
        for f in registry.of_kind(F.Kind.ID, F.Kind.CATEGORICAL):
            example.features.feature[f.name].bytes_list.value[:] = [f"never-seen-{i}".encode()]
        rows.append(example.SerializeToString())
    return rows


def check_sample(registry, transform_dir: str, baseline_dir: str, raw_prefixes: Dict[str, str],
                 rows_per_split: int = 512, atol: float = 1e-5) -> Dict[str, float]:
    """Max |TFT - baseline| per feature over sampled raw rows; raises past ``atol``."""
    import tensorflow as tf
    import tensorflow_transform as tft
    from tensorflow_transform.tf_metadata import schema_utils
    from tfx_bsl.coders import example_coder

    serialized: List[bytes] = []
    for prefix in raw_prefixes.values():
        files = sorted(glob.glob(prefix + "-*"))
        data = tf.data.TFRecordDataset(files, compression_type="GZIP").take(rows_per_split)
        serialized += [bytes(s) for s in data.as_numpy_iterator()]
    serialized += _unseen_rows(registry, serialized[0], 32)

    spec = registry.raw_feature_spec()
    tft_out = tft.TFTransformOutput(transform_dir).transform_raw_features(
        tf.io.parse_example(tf.constant(serialized), spec))
    decoder = example_coder.ExamplesToRecordBatchDecoder(
        schema_utils.schema_from_feature_spec(spec).SerializeToString())
    ours = B.Transformer(registry, load_statistics(registry, baseline_dir)).columns(
        decoder.DecodeBatch(serialized))
    worst = {}
    for name, theirs in tft_out.items():
        theirs = theirs.numpy()
        assert theirs.shape == ours[name].shape, \
            f"{name}: shape {theirs.shape} vs {ours[name].shape}"
        if theirs.dtype.kind in "iu":
            assert np.array_equal(theirs, ours[name]), f"{name}: indices differ"
            worst[name] = 0.0
        else:
            worst[name] = float(np.max(np.abs(theirs - ours[name])))
            assert worst[name] <= atol, f"{name}: max |diff| {worst[name]} > {atol}"
    return worst


def _output_summary(pattern: str, schema, max_rows: int) -> Dict[str, np.ndarray]:
    """Sorted values per scalar feature and sorted per-row sums per vector feature."""
    import tensorflow as tf
    from tfx_bsl.coders import example_coder

    decoder = example_coder.ExamplesToRecordBatchDecoder(schema.SerializeToString())
    parts: Dict[str, List[np.ndarray]] = {}
    rows = 0
    files = sorted(glob.glob(pattern))
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(8192):
        record_batch = decoder.DecodeBatch(list(batch.numpy()))
        rows += record_batch.num_rows
        if rows > max_rows:
            raise ValueError(f"{pattern}: more than {max_rows} rows; raise --full_check_rows")
        for name, column in zip(record_batch.schema.names, record_batch.columns):
            values = column.flatten().to_numpy(zero_copy_only=False)
            if len(values) != record_batch.num_rows:
                values = values.reshape(record_batch.num_rows, -1).astype(np.float64).sum(axis=1)
            parts.setdefault(name, []).append(values)
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


def check_outputs(transform_dir: str, tft_patterns: Dict[str, str],
                  baseline_patterns: Dict[str, str], max_rows: int,
                  atol: float = 1e-5) -> Dict[str, int]:
    """{split: rows}; raises when the two outputs differ as multisets of values."""
    import tensorflow_transform as tft

    schema = tft.TFTransformOutput(transform_dir).transformed_metadata.schema
    rows = {}
    for split in tft_patterns:
        theirs = _output_summary(tft_patterns[split], schema, max_rows)
        ours = _output_summary(baseline_patterns[split], schema, max_rows)
        assert theirs.keys() == ours.keys(), f"{split}: features {theirs.keys()} vs {ours.keys()}"
        for name in theirs:
            assert theirs[name].shape == ours[name].shape, f"{split}/{name}: row counts differ"
            # Embedding rows are compared by their sums of floats: allow their rounding.
            tol = atol * 1000 if theirs[name].dtype == np.float64 else atol
            assert np.allclose(theirs[name], ours[name], rtol=0, atol=tol), \
                f"{split}/{name}: values differ"
        rows[split] = len(next(iter(theirs.values())))
    return rows
