"""A Beam coder for the score job's batch elements: pickled, sized without pickling.

Beam sizes every PCollection by sampling its elements (the first ten of a
bundle, then ever fewer) and asking the PCollection's coder for each one's
encoded size. An element of unknown type gets the fallback coder, which
pickles the whole element to measure it: for the score job's chunks of
columns (thousands of rows, string columns as object arrays) and the
scored batches carrying them, that is the full cost of serialising a batch
each time one is sampled — at 50x the demo's pairs about a third of the
chunks and 0.2 CPU seconds, for a number only the runner's metrics read.

:class:`ChunkCoder` encodes as the fallback does (pickle: a fused job never
encodes these elements; a runner that does gets them whole) and estimates
the size from the arrays' byte counts (:func:`estimated_bytes`). It is
registered here for RunInference's ``PredictionResult`` and by
:mod:`pipelines.pair_columns` and :mod:`pipelines.pair_join` for their chunks;
the job declares those as its PCollections' types (``with_output_types``),
which is what picks the coder (an undeclared PCollection keeps the fallback).
"""

from __future__ import annotations

import pickle
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.ml.inference.base import PredictionResult

# Values of an object array whose lengths estimate its size.
SAMPLED = 32


def estimated_bytes(value: Any) -> int:
    """About the bytes ``value`` holds, in one pass over its arrays, not its rows' objects.

    A numpy array counts its buffer (an object array, a column of strings, its
    length times the mean length of its first :data:`SAMPLED` values: summing
    every string's length costs as much as the sampling saves), an Arrow array
    its buffers, bytes and strings their length, containers their items;
    anything else its pickled size.
    """
    if isinstance(value, np.ndarray):
        if value.dtype != object:
            return int(value.nbytes)
        sample = value.ravel()[:SAMPLED]
        return value.size * sum(len(v) if isinstance(v, (bytes, str)) else 8
                                for v in sample) // max(len(sample), 1)
    if isinstance(value, (pa.Array, pa.ChunkedArray, pa.Table, pa.RecordBatch)):
        return int(value.nbytes)
    if isinstance(value, (bytes, str)):
        return len(value)
    if isinstance(value, (list, tuple)):
        return sum(map(estimated_bytes, value))
    if isinstance(value, dict):
        return sum(map(estimated_bytes, value.values()))
    if value is None:
        return 0
    return len(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))


class ChunkCoder(beam.coders.Coder):
    """Pickles a batch element; its size estimate is :func:`estimated_bytes`."""

    def encode(self, value: Any) -> bytes:
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> Any:
        return pickle.loads(encoded)

    def estimate_size(self, value: Any) -> int:
        return estimated_bytes(value)

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self):
        return Any


beam.coders.registry.register_coder(PredictionResult, ChunkCoder)
