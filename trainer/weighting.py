"""Task weighting: how the per-task losses combine into the joint loss.

``model.loss_weighting`` picks one of:

- ``fixed``: ``sum_i w_i L_i`` with each task's configured ``weight``.
- ``uncertainty`` (Kendall, Gal & Cipolla, CVPR 2018): a learned log-variance
  ``s_i`` per task. A classification task (binary, multiclass) contributes
  ``exp(-s_i) L_i + s_i``, a regression task ``1/2 exp(-s_i) L_i + 1/2 s_i``
  (the Gaussian likelihood's form); both are multiplied by ``w_i``. ``s_i``
  starts at 0, i.e. at the fixed weights.
- ``dwa`` (Liu, Johns & Davison, CVPR 2019, dynamic weight average):
  ``sum_i w_i lambda_i L_i`` with ``lambda_i = K exp(r_i / T) / sum_j exp(r_j / T)``,
  ``r_i = L_i(t-1) / L_i(t-2)`` the ratio of task ``i``'s mean training loss
  in the last two epochs, ``K`` the number of tasks and ``T`` =
  ``model.dwa_temperature``; ``lambda_i = 1`` for the first two epochs.
  :class:`DynamicWeightAverage` (a callback) sets the weights after each epoch.

``L_i`` is one replica's share of the global-batch mean loss (per-example
losses summed and divided by the global batch), so summing over replicas gives
the global objective. Terms that do not depend on the batch (uncertainty's
``s_i``) are the same on every replica and are divided by the replica count,
so they too count once. Every variable is created in the model's constructor,
i.e. inside the caller's strategy scope; DWA's live in the model's weights, so
a backup or checkpoint carries them and a resumed job continues the schedule.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import numpy as np

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf

from shoprec.core.model_config import LOSS_WEIGHTINGS, TaskConfig


def dwa_weights(last: Sequence[float], before_last: Sequence[float],
                temperature: float) -> np.ndarray:
    """DWA's ``lambda = K softmax(r / T)`` with ``r = last / before_last``."""
    ratios = np.asarray(last, np.float64) / np.asarray(before_last, np.float64)
    scaled = np.exp((ratios - ratios.max()) / float(temperature))
    return len(ratios) * scaled / scaled.sum()


class TaskWeighting(tf.keras.layers.Layer):
    """Combines ``{task: replica share of its mean loss}`` into the joint loss.

    Args:
        tasks: The tasks, in order; their ``weight`` multiplies every form.
        method: fixed | uncertainty | dwa.
        temperature: DWA's ``T``.
    """

    def __init__(self, tasks: Sequence[TaskConfig], method: str = "fixed",
                 temperature: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        if method not in LOSS_WEIGHTINGS:
            raise ValueError(f"unknown loss weighting {method!r}; expected one of "
                             f"{LOSS_WEIGHTINGS}")
        self.method = method
        self.temperature = float(temperature)
        self.tasks = tuple(tasks)
        k = len(self.tasks)
        self.log_variance = None
        self.dwa_lambda = None
        if method == "uncertainty":
            self.log_variance = self.add_weight(name="log_variance", shape=(k,),
                                                initializer="zeros", trainable=True)
        if method == "dwa":
            self.dwa_lambda = self.add_weight(name="dwa_lambda", shape=(k,),
                                              initializer="ones", trainable=False)
            # Rows: the mean training loss of the last and the one before; the
            # epoch count says how many of them are real.
            self.dwa_losses = self.add_weight(name="dwa_losses", shape=(2, k),
                                              initializer="ones", trainable=False)
            # float32: a mirrored int64 variable would have to live on the host.
            self.dwa_epochs = self.add_weight(name="dwa_epochs", shape=(),
                                              initializer="zeros", trainable=False)
        self.built = True

    def call(self, losses: Mapping[str, tf.Tensor]) -> tf.Tensor:
        total = tf.constant(0.0)
        for i, task in enumerate(self.tasks):
            loss = task.weight * losses[task.name]
            if self.method == "uncertainty":
                half = 0.5 if task.type == "regression" else 1.0
                s = self.log_variance[i]
                # s_i does not depend on the batch: count it once over replicas.
                loss = half * (tf.exp(-s) * loss
                               + task.weight * tf.nn.scale_regularization_loss(s))
            elif self.method == "dwa":
                loss = self.dwa_lambda[i] * loss
            total += loss
        return total

    def report(self) -> Dict[str, Dict[str, float]]:
        """``{task: {"weight": effective multiplier of L_i, ...}}`` for metrics and logs.

        uncertainty adds ``log_variance`` (``s_i``); the weight is
        ``w_i exp(-s_i)`` (halved for regression). dwa's weight is ``w_i lambda_i``.
        """
        out = {}
        for i, task in enumerate(self.tasks):
            entry = {"weight": float(task.weight)}
            if self.method == "uncertainty":
                s = float(self.log_variance[i].numpy())
                half = 0.5 if task.type == "regression" else 1.0
                entry = {"weight": half * task.weight * float(np.exp(-s)), "log_variance": s}
            elif self.method == "dwa":
                entry = {"weight": task.weight * float(self.dwa_lambda[i].numpy())}
            out[task.name] = entry
        return out

    def end_epoch(self, epoch_losses: Mapping[str, float]) -> None:
        """DWA: records an epoch's mean training losses and sets the next epoch's lambdas."""
        if self.method != "dwa":
            return
        current = np.array([epoch_losses[t.name] for t in self.tasks], np.float32)
        last = self.dwa_losses.numpy()[0]
        self.dwa_losses.assign(np.stack([current, last]))
        self.dwa_epochs.assign_add(1.0)
        if int(self.dwa_epochs.numpy()) >= 2:
            self.dwa_lambda.assign(dwa_weights(current, last, self.temperature)
                                   .astype(np.float32))


class DynamicWeightAverage(tf.keras.callbacks.Callback):
    """Hands each epoch's mean task losses (Keras' ``<task>_loss``) to DWA.

    It must come before ``BackupAndRestore``, so that a backed-up epoch holds
    the weights the next epoch trains with. Every worker sees the same
    cross-replica loss means and so sets the same weights.
    """

    def __init__(self, weighting: TaskWeighting):
        super().__init__()
        self._weighting = weighting

    def on_epoch_end(self, epoch: int, logs: Optional[Dict] = None) -> None:
        logs = logs or {}
        missing = [t.name for t in self._weighting.tasks if f"{t.name}_loss" not in logs]
        if missing:
            raise ValueError(f"dwa: the epoch's logs have no loss for task(s) {missing}")
        self._weighting.end_epoch({t.name: float(logs[f"{t.name}_loss"])
                                   for t in self._weighting.tasks})
