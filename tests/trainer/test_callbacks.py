"""trainer.callbacks: early stopping decisions on a scripted metric sequence."""

import numpy as np
import pytest
import tensorflow as tf

from trainer import callbacks


class _Scripted:
    """Returns the next value of a fixed AUC sequence at each evaluation."""

    def __init__(self, values, metric="auc"):
        self.values, self.metric, self.calls = list(values), metric, 0

    def __call__(self):
        value = self.values[self.calls]
        self.calls += 1
        return {"tasks": {"click": {self.metric: value}}}


def _fit(evaluate, metric="auc", patience=1, epochs=6):
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(2,))])
    model.compile(optimizer=tf.keras.optimizers.SGD(0.1), loss="mse")
    stopper = callbacks.EvalEarlyStopping(evaluate, "click", metric, patience=patience)
    epochs_log = callbacks.EpochLog()
    weights = []

    class Snapshot(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            weights.append(self.model.get_weights())

    x = np.ones((8, 2), np.float32)
    # Snapshot runs before the stopper, so weights[i] are epoch i's weights.
    model.fit(x, x[:, :1], epochs=epochs, verbose=0,
              callbacks=[Snapshot(), stopper, epochs_log])
    return model, stopper, epochs_log, weights


def test_stops_after_patience_and_restores_the_best_epoch():
    model, stopper, epochs_log, weights = _fit(_Scripted([0.6, 0.7, 0.69, 0.65, 0.8, 0.9]))
    # Best at epoch 1; epoch 2 does not improve and patience is 1: stop there.
    assert epochs_log.completed == [0, 1, 2]
    assert stopper.best == 0.7 and stopper.best_epoch == 1 and stopper.stopped_epoch == 2
    for restored, best in zip(model.get_weights(), weights[1]):
        np.testing.assert_array_equal(restored, best)


def test_lower_is_better_for_log_loss_and_nan_never_improves():
    _, stopper, epochs_log, _ = _fit(_Scripted([0.5, 0.4, float("nan"), 0.45, 0.3],
                                               metric="log_loss"), metric="log_loss", patience=2)
    # 0.4 at epoch 1 is best; nan and 0.45 do not improve: stop at epoch 3.
    assert stopper.best == 0.4 and stopper.stopped_epoch == 3
    assert stopper.summary()["history"] == [0.5, 0.4, None, 0.45]
    assert epochs_log.initial_epoch == 0


def test_runs_every_epoch_while_improving():
    _, stopper, epochs_log, _ = _fit(_Scripted([0.1, 0.2, 0.3]), epochs=3)
    assert epochs_log.completed == [0, 1, 2] and stopper.stopped_epoch is None


def _scalars(folder):
    """{tag: [(step, value)]} of the TensorBoard event files in ``folder``."""
    import glob
    import os

    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                out.setdefault(value.tag, []).append(
                    (event.step, float(tf.make_ndarray(value.tensor))))
    return out


def test_epoch_evaluation_keeps_each_task_metric_per_epoch_and_writes_scalars(tmp_path):
    aucs = iter([0.6, 0.75])

    def evaluate():
        auc = next(aucs)
        return {"tasks": {"click": {"auc": auc, "log_loss": 1 - auc, "examples": 8},
                          "conversion": {"auc": float("nan"), "log_loss": None}}}

    epoch_eval = callbacks.EpochEvaluation(evaluate, log_dir=str(tmp_path))
    logged = []

    class Logs(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logged.append(dict(logs))

    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(2,))])
    model.compile(optimizer=tf.keras.optimizers.SGD(0.1), loss="mse")
    x = np.ones((8, 2), np.float32)
    model.fit(x, x[:, :1], epochs=2, verbose=0, callbacks=[epoch_eval, Logs()])
    # Undefined (nan, None) metrics and counts are left out.
    assert epoch_eval.history == [
        {"epoch": 0, "tasks": {"click": {"auc": 0.6, "log_loss": 0.4}, "conversion": {}}},
        {"epoch": 1, "tasks": {"click": {"auc": 0.75, "log_loss": 0.25}, "conversion": {}}}]
    assert epoch_eval.latest["tasks"]["click"]["auc"] == 0.75
    # Each task's AUC goes on Keras' epoch line.
    assert [log["eval_click_auc"] for log in logged] == [0.6, 0.75]
    assert not any("eval_conversion_auc" in log for log in logged)
    scalars = _scalars(str(tmp_path / "eval"))
    assert set(scalars) == {"click/auc", "click/log_loss"}
    assert scalars["click/auc"] == [(0, pytest.approx(0.6)), (1, pytest.approx(0.75))]


def test_epoch_evaluation_without_a_log_dir_still_keeps_the_history():
    epoch_eval = callbacks.EpochEvaluation(lambda: {"tasks": {"click": {"auc": 0.5}}})
    epoch_eval.set_model(tf.keras.Sequential())
    epoch_eval.on_epoch_end(0, {})
    epoch_eval.on_train_end()
    assert epoch_eval.history == [{"epoch": 0, "tasks": {"click": {"auc": 0.5}}}]
