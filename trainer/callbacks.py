"""Training callbacks: exact eval metrics per epoch, early stopping on one, an epoch record.

``EpochEvaluation`` evaluates every task over the whole eval split after each
epoch (``trainer.evaluation``): the per-epoch history ``metrics.json`` keeps,
per-task TensorBoard scalars under ``logs/eval``, each task's AUC on Keras'
epoch line, and the result early stopping judges. With ``loss_weights`` it also
records each task's loss weight (``trainer.weighting``) per epoch, in the
history and as ``<task>/loss_weight`` (and ``<task>/log_variance``) scalars.

Early stopping watches a metric computed by ``trainer.evaluation`` over the
whole eval split after each epoch, not a Keras streaming metric, so it means
the same under every strategy. Under MultiWorkerMirroredStrategy each worker
evaluates the same weights on the same (unsharded) eval data and so reaches
the same decision, which keeps the workers' step counts in lockstep.

With a ``backup`` (``trainer.checkpoints.EarlyStoppingBackup``) the stopper
records its state after every epoch and, when a job resumes from Keras'
backup, takes up the state of the last backed-up epoch: the epochs without
improvement, the best value, epoch and weights, and the history. It must come
before ``BackupAndRestore`` in the callback list, so that its record of an
epoch is on disk before Keras backs that epoch up.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Callable, Dict, List, Optional

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf

log = logging.getLogger(__name__)

# Metrics where a smaller value is better; the rest improve upwards.
_LOWER_IS_BETTER = frozenset({"log_loss", "rmse"})
# Per-task metrics kept per epoch and written as TensorBoard scalars.
EPOCH_METRICS = ("auc", "gauc", "log_loss", "calibration", "rmse", "accuracy")


class EpochEvaluation(tf.keras.callbacks.Callback):
    """Evaluates every task after each epoch; keeps the history and writes scalars.

    It must come before the callbacks that read :attr:`latest` (early
    stopping) and before Keras' progress bar, which prints the ``eval_<task>_auc``
    entries it adds to the epoch's logs.

    Args:
        evaluate: Returns ``trainer.evaluation.evaluate``'s result for the
            current weights.
        log_dir: TensorBoard folder; scalars ``<task>/<metric>`` go to its
            ``eval`` run (None: none written, e.g. on a non-chief worker).
        loss_weights: Returns ``{task: {"weight": ..., ...}}``, the weights
            the epoch trained with (``TaskWeighting.report``); None: not kept.
    """

    def __init__(self, evaluate: Callable[[], dict], log_dir: Optional[str] = None,
                 loss_weights: Optional[Callable[[], Dict[str, Dict[str, float]]]] = None):
        super().__init__()
        self._evaluate = evaluate
        self._log_dir = log_dir
        self._loss_weights = loss_weights
        self._writer = None
        self.latest: Optional[dict] = None
        self.history: List[dict] = []

    def on_epoch_end(self, epoch: int, logs: Optional[Dict] = None) -> None:
        self.latest = self._evaluate()
        tasks = {}
        for task, values in self.latest["tasks"].items():
            tasks[task] = {k: float(values[k]) for k in EPOCH_METRICS
                           if values.get(k) is not None and math.isfinite(values[k])}
            if logs is not None and "auc" in tasks[task]:
                logs[f"eval_{task}_auc"] = tasks[task]["auc"]
        entry = {"epoch": int(epoch), "tasks": tasks}
        scalars = {f"{task}/{metric}": value for task, values in tasks.items()
                   for metric, value in values.items()}
        if self._loss_weights is not None:
            entry["loss_weights"] = self._loss_weights()
            for task, values in entry["loss_weights"].items():
                scalars[f"{task}/loss_weight"] = values["weight"]
                if "log_variance" in values:
                    scalars[f"{task}/log_variance"] = values["log_variance"]
        self.history.append(entry)
        if self._log_dir is None:
            return
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self._log_dir, "eval"))
        with self._writer.as_default():
            for name, value in scalars.items():
                tf.summary.scalar(name, value, step=epoch)
        self._writer.flush()

    def on_train_end(self, logs: Optional[Dict] = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class EvalEarlyStopping(tf.keras.callbacks.Callback):
    """Stops training when a task's eval metric stops improving; restores the best weights.

    Args:
        evaluate: Returns ``trainer.evaluation.evaluate``'s result for the
            current weights.
        task: Task whose metric is watched.
        metric: Metric name, e.g. ``auc``, ``gauc``, ``log_loss``.
        patience: Epochs without improvement after which training stops (as in
            Keras' EarlyStopping; 0 stops at the first epoch that does not improve).
        min_delta: Smallest change that counts as an improvement.
        restore_best: Put back the best epoch's weights when training ends.
        backup: Where to record the state after each epoch and to take it up
            from when training resumes (None: not kept across jobs).
    """

    def __init__(self, evaluate: Callable[[], dict], task: str, metric: str, patience: int,
                 min_delta: float = 0.0, restore_best: bool = True, backup=None):
        super().__init__()
        self._evaluate = evaluate
        self.task, self.metric = task, metric
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.restore_best = restore_best
        self._sign = -1.0 if metric in _LOWER_IS_BETTER else 1.0
        self.history: List[Optional[float]] = []
        self.best: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.stopped_epoch: Optional[int] = None
        self._best_weights = None
        self._wait = 0
        self._backup = backup
        self._epochs_begun = 0

    def improved(self, value: float) -> bool:
        """Whether ``value`` beats the best so far by more than ``min_delta``."""
        if value is None or math.isnan(value):
            return False
        if self.best is None:
            return True
        return self._sign * (value - self.best) > self.min_delta

    def on_train_begin(self, logs: Optional[Dict] = None) -> None:
        self._epochs_begun = 0

    def on_epoch_begin(self, epoch: int, logs: Optional[Dict] = None) -> None:
        self._epochs_begun += 1
        # fit's first epoch is past 0 only when BackupAndRestore resumed it.
        if self._epochs_begun == 1 and epoch > 0 and self._backup is not None:
            self._take_up(epoch - 1)

    def _take_up(self, epoch: int) -> None:
        """Restores the state recorded after ``epoch``, the last one backed up."""
        recorded = self._backup.load(epoch)
        if recorded is None:
            # E.g. a backup from a job that ran without early stopping.
            log.warning("early stopping: no state recorded for epoch %d; resuming with "
                        "fresh counters", epoch)
            return
        state, weights = recorded
        self._wait, self.best, self.best_epoch = state["wait"], state["best"], state["best_epoch"]
        self.history = list(state["history"])
        if self.restore_best:
            self._best_weights = weights
        log.info("early stopping: resumed after epoch %d (best %s at epoch %s, %d epoch(s) "
                 "without improvement)", epoch, self.best, self.best_epoch, self._wait)

    def state(self) -> dict:
        """What a resumed job needs to decide as this one would (JSON-able)."""
        return {"wait": self._wait, "best": self.best, "best_epoch": self.best_epoch,
                "history": list(self.history)}

    def on_epoch_end(self, epoch: int, logs: Optional[Dict] = None) -> None:
        value = self._evaluate()["tasks"][self.task][self.metric]
        value = None if value is None or math.isnan(value) else float(value)
        self.history.append(value)
        if logs is not None and value is not None:
            logs[f"eval_{self.task}_{self.metric}"] = value
        new_best_weights = None
        if self.improved(value):
            self.best, self.best_epoch, self._wait = value, epoch, 0
            if self.restore_best:
                self._best_weights = new_best_weights = self.model.get_weights()
        else:
            self._wait += 1
            if self._wait >= self.patience:
                self.stopped_epoch = epoch
                self.model.stop_training = True
        if self._backup is not None:
            self._backup.save(epoch, self.state(), new_best_weights)

    def on_train_end(self, logs: Optional[Dict] = None) -> None:
        if self.restore_best and self._best_weights is not None:
            self.model.set_weights(self._best_weights)

    def summary(self) -> dict:
        return {"task": self.task, "metric": self.metric, "best": self.best,
                "best_epoch": self.best_epoch, "stopped_epoch": self.stopped_epoch,
                "history": list(self.history)}


class EpochLog(tf.keras.callbacks.Callback):
    """Records which epochs this process ran, so a resumed run can show where it began."""

    def __init__(self):
        super().__init__()
        self.begun: List[int] = []
        self.completed: List[int] = []

    def on_epoch_begin(self, epoch: int, logs: Optional[Dict] = None) -> None:
        self.begun.append(int(epoch))

    def on_epoch_end(self, epoch: int, logs: Optional[Dict] = None) -> None:
        self.completed.append(int(epoch))

    @property
    def initial_epoch(self) -> Optional[int]:
        """First epoch run here: above 0 when training resumed from a backup."""
        return self.begun[0] if self.begun else None
