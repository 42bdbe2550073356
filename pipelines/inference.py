"""RunInference over pre-batched chunks: one SavedModel signature call per chunk.

Per-element overhead, not the model, dominates RunInference on small models,
so the jobs batch their elements into chunks first (``beam.BatchElements``)
and this handler calls the signature once per chunk. Scoring feeds serialized
raw examples, the embed job decoded photos; each says how a chunk becomes the
signature's inputs.

A worker process loads each exported model once (:func:`saved_model`),
however many handlers call its signatures: recommend calls three, and a
SavedModel load costs seconds. :func:`signature_names` reads a model's
signatures from its ``saved_model.pb`` without loading it.
"""

from __future__ import annotations

import collections
import os
import threading
from typing import Any, Callable, Dict, Iterable, List, Mapping, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

Chunk = Sequence[Any]

# (model_dir, saved_model.pb's mtime, size and, on a local disk, inode) → the
# loaded model, the most recent few: a re-exported model is a new key, never a stale hit.
_MODELS: "collections.OrderedDict[Any, Any]" = collections.OrderedDict()
_MODELS_KEPT = 2
_MODELS_LOCK = threading.Lock()


def saved_model(model_dir: str):
    """``tf.saved_model.load(model_dir)``, loaded once per process and version."""
    import tensorflow as tf

    graph = os.path.join(model_dir, "saved_model.pb")
    if "://" in graph:
        stat = tf.io.gfile.stat(graph)
        key = (model_dir, stat.mtime_nsec, stat.length)
    else:
        # gfile's mtime has whole seconds only on local disks; a re-export
        # within the second writes a new file (inode) all the same.
        local = os.stat(graph)
        key = (model_dir, local.st_mtime_ns, local.st_size, local.st_ino)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = tf.saved_model.load(model_dir)
            while len(_MODELS) > _MODELS_KEPT:
                _MODELS.popitem(last=False)
        _MODELS.move_to_end(key)
        return _MODELS[key]


# The exported model's signature fed raw feature columns (``trainer.export``'s
# name for it; pipelines never import the trainer).
COLUMNS_SIGNATURE = "serving_columns"


def signature_names(model_dir: str) -> List[str]:
    """The serving signatures a SavedModel exports, read from its graph, not loaded."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(model_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    # As the loaded model's ``.signatures``: without TF's own entries
    # (``__saved_model_init_op``).
    return sorted({name for graph in proto.meta_graphs for name in graph.signature_def
                   if not name.startswith("__")})


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

        return saved_model(self._model_dir).signatures[self._signature]

    def run_inference(self, batch: Sequence[Chunk], model, inference_args=None
                      ) -> Iterable[PredictionResult]:
        import tensorflow as tf

        for chunk in batch:
            if not len(chunk):
                # BatchElements with an element_size_fn emits an empty batch
                # before an element that alone outweighs max_batch_size.
                continue
            feed = {k: tf.constant(v) for k, v in self._inputs(chunk).items()}
            outputs = model(**feed)
            yield PredictionResult(chunk, {k: np.asarray(v) for k, v in outputs.items()})

    def batch_elements_kwargs(self) -> Dict[str, Any]:
        # Elements are chunks already: RunInference must not batch them again.
        return {"min_batch_size": 1, "max_batch_size": 1}

    def get_num_bytes(self, batch: Sequence[Chunk]) -> int:
        return sum(self._num_bytes(chunk) for chunk in batch)
