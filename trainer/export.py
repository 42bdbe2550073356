"""Exports the trained model as a SavedModel that scores raw tf.Examples.

The serving signature parses raw examples (the bytes ingest and scoring both
build with ``pipelines.examples``), applies the TFT transform graph and runs
the model, so a scorer never re-implements featurization. The TFT layer is an
attribute of the exported module, which makes the transform graph and its
vocabulary assets part of the SavedModel.
"""

from __future__ import annotations

from typing import Dict, Sequence

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf

from trainer import strategy as strategy_lib
from transforms import features as F

SIGNATURE = "serving_default"
INPUT_NAME = "examples"


def output_name(task_name: str) -> str:
    """Signature output key holding a task's probability."""
    return f"p_{task_name}"


class ServingModule(tf.Module):
    """Raw serialized tf.Examples in, per-task probabilities out.

    Args:
        model: Maps transformed features to ``{task name: logit}``.
        tft_output: ``tft.TFTransformOutput`` the model was trained on.
        task_names: Tasks to expose, each as output ``p_<task>``.
    """

    def __init__(self, model: tf.keras.Model, tft_output, task_names: Sequence[str]):
        super().__init__(name="shoprec_serving")
        self.model = model
        # Tracked so that saving captures the transform graph and its assets.
        self.tft_layer = tft_output.transform_features_layer()
        self._task_names = tuple(task_names)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_NAME)])
    def serve(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
        """Scores a batch of serialized raw tf.Examples (labels not needed).

        Returns:
            ``{'p_<task>': float32 [batch]}`` for every task.
        """
        # Labels are not parsed: TFT supplies placeholders for unfed inputs and
        # prunes the outputs that depend on them.
        raw = tf.io.parse_example(examples, F.raw_feature_spec(include_labels=False))
        transformed = self.tft_layer(raw)
        logits = self.model(transformed, training=False)
        return {output_name(name): tf.sigmoid(tf.cast(logits[name], tf.float32))
                for name in self._task_names}


def export(model: tf.keras.Model, tft_output, task_names: Sequence[str], export_dir: str,
           chief: bool = True) -> str:
    """Writes the serving SavedModel; every worker of a multi-worker run must call it.

    Args:
        model: Trained model.
        tft_output: ``tft.TFTransformOutput`` the model was trained on.
        task_names: Tasks to expose.
        export_dir: Final SavedModel folder (replaced if it exists).
        chief: Whether this process owns ``export_dir``; other workers save
            to a temporary folder that is deleted afterwards.

    Returns:
        ``export_dir``.
    """
    target, temporary = strategy_lib.write_dir(export_dir, chief)
    if not temporary and tf.io.gfile.exists(target):
        tf.io.gfile.rmtree(target)
    module = ServingModule(model, tft_output, task_names)
    try:
        tf.saved_model.save(module, target, signatures={SIGNATURE: module.serve})
    finally:
        strategy_lib.discard_write_dir(target, temporary)
    return export_dir

