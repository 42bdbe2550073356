"""Task heads: a tower and output layer per branch, and a TFRS task per objective.

A task's type decides its output, loss and prediction:

============  ===================  ===========================  ======================
type          raw output           per-example loss             prediction
============  ===================  ===========================  ======================
binary        logit ``[batch]``    sigmoid cross-entropy        probability
regression    value ``[batch]``    squared error                the value
multiclass    logits ``[b, C]``    softmax cross-entropy        class probabilities
============  ===================  ===========================  ======================

Losses are per example (``Reduction.NONE``): the model averages them over the
global batch itself, which is what summing gradients across replicas needs
(TFRS's default reduction is rejected inside ``tf.distribute``).
"""

from __future__ import annotations

from typing import Optional, Sequence

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf
import tensorflow_recommenders as tfrs

from shoprec.core.model_config import TaskConfig
from trainer.architectures import mlp

_NONE = tf.keras.losses.Reduction.NONE


def output_width(task_type: str, num_classes: int = 0) -> int:
    """Units of a task's output layer.

    Raises:
        ValueError: unknown type, or a multiclass task with fewer than 2 classes.
    """
    if task_type in ("binary", "regression"):
        return 1
    if task_type == "multiclass":
        if num_classes < 2:
            raise ValueError(f"a multiclass task needs >= 2 classes, got {num_classes}")
        return int(num_classes)
    raise ValueError(f"unknown task type {task_type!r}")


class Tower(tf.keras.layers.Layer):
    """A branch's MLP and output layer: ``[batch, d] -> raw output``."""

    def __init__(self, name: str, units: Sequence[int], width: int, dropout: float = 0.0,
                 **kwargs):
        super().__init__(name=f"{name}_tower", **kwargs)
        self.width = int(width)
        self.mlp = mlp(units, f"{name}_mlp", dropout)
        self.out = tf.keras.layers.Dense(self.width, name=f"{name}_output")

    def call(self, h: tf.Tensor, training: bool = False) -> tf.Tensor:
        out = self.out(self.mlp(h, training=training))
        # Scalar outputs drop their unit axis: one value per example.
        return tf.squeeze(out, axis=1) if self.width == 1 else out


def _loss(task_type: str) -> tf.keras.losses.Loss:
    if task_type == "binary":
        return tf.keras.losses.BinaryCrossentropy(from_logits=True, reduction=_NONE)
    if task_type == "regression":
        return tf.keras.losses.MeanSquaredError(reduction=_NONE)
    if task_type == "multiclass":
        return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=_NONE)
    raise ValueError(f"unknown task type {task_type!r}")


class Objective(tf.keras.layers.Layer):
    """One task's loss (a ``tfrs.tasks.Ranking``) and its prediction transform.

    Args:
        task: The task; its ``type`` picks the loss.
    """

    def __init__(self, task: TaskConfig, **kwargs):
        super().__init__(name=f"{task.name}_objective", **kwargs)
        self.task_type = task.type
        self.ranking = tfrs.tasks.Ranking(loss=_loss(task.type), name=f"{task.name}_task")
        # Used through its methods rather than __call__, so Keras would never
        # mark it built (and would skip it when serializing); nothing is left to build.
        self.built = True

    def per_example_loss(self, labels: tf.Tensor, outputs: tf.Tensor,
                         sample_weight: Optional[tf.Tensor] = None) -> tf.Tensor:
        """Loss of each example, ``[batch]``, times ``sample_weight`` when given."""
        if self.task_type == "multiclass":
            labels = tf.cast(labels, tf.int64)
            predictions = outputs
        else:
            # Keras losses reduce over the last axis, so each example gets a
            # length-1 axis to come back as one loss.
            labels = tf.expand_dims(tf.cast(labels, tf.float32), -1)
            predictions = tf.expand_dims(outputs, -1)
        return self.ranking(labels=labels, predictions=predictions,
                            sample_weight=sample_weight, compute_metrics=False)

    def predict(self, outputs: tf.Tensor) -> tf.Tensor:
        """Raw output -> probability (binary), value (regression) or class probabilities."""
        if self.task_type == "binary":
            return tf.sigmoid(outputs)
        if self.task_type == "multiclass":
            return tf.nn.softmax(outputs, axis=-1)
        return outputs


def ctcvr_logit(ctr_logit: tf.Tensor, cvr_logit: tf.Tensor) -> tf.Tensor:
    """The logit of ``sigmoid(a) * sigmoid(b)``, computed without forming the product.

    With ``p = s(a) s(b)``: ``log p = log s(a) + log s(b)`` and
    ``1 - p = (e^-a + e^-b + e^-(a+b)) s(a) s(b)``, so
    ``logit(p) = -logsumexp(-a, -b, -a-b)``. Sigmoid cross-entropy on this logit
    is ESMM's CTCVR log loss, stable even when both probabilities are tiny.
    """
    a, b = ctr_logit, cvr_logit
    return -tf.reduce_logsumexp(tf.stack([-a, -b, -a - b], axis=-1), axis=-1)
