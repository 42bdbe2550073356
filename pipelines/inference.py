"""RunInference over pre-batched chunks: one SavedModel signature call per chunk.

Per-element overhead, not the model, dominates RunInference on small models,
so the jobs batch their elements into chunks first (``beam.BatchElements``)
and this handler calls the signature once per chunk. Scoring feeds serialized
raw examples, the embed job decoded photos; each says how a chunk becomes the
signature's inputs.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Mapping, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

Chunk = Sequence[Any]


class ChunkHandler(ModelHandler):
    """Calls ``signature`` of the SavedModel at ``model_dir`` once per chunk.

    Args:
        model_dir: The SavedModel.
        signature: Its signature to call.
        inputs: Picklable ``chunk → {input name: array}``.
        num_bytes: Picklable ``chunk → bytes it holds`` (Beam's batch sizing).

    Each result is a ``PredictionResult(chunk, {output name: numpy array})``.
    """

    def __init__(self, model_dir: str, signature: str,
                 inputs: Callable[[Chunk], Mapping[str, Any]],
                 num_bytes: Callable[[Chunk], int]):
        self._model_dir = model_dir
        self._signature = signature
        self._inputs = inputs
        self._num_bytes = num_bytes

    def load_model(self):
        import shoprec  # noqa: F401  (Keras 2 before TensorFlow loads on workers)
        import tensorflow as tf

        return tf.saved_model.load(self._model_dir).signatures[self._signature]

    def run_inference(self, batch: Sequence[Chunk], model, inference_args=None
                      ) -> Iterable[PredictionResult]:
        import tensorflow as tf

        for chunk in batch:
            feed = {k: tf.constant(v) for k, v in self._inputs(chunk).items()}
            outputs = model(**feed)
            yield PredictionResult(chunk, {k: np.asarray(v) for k, v in outputs.items()})

    def batch_elements_kwargs(self) -> Dict[str, Any]:
        # Elements are chunks already: RunInference must not batch them again.
        return {"min_batch_size": 1, "max_batch_size": 1}

    def get_num_bytes(self, batch: Sequence[Chunk]) -> int:
        return sum(self._num_bytes(chunk) for chunk in batch)
