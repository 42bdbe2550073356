"""trainer.callbacks: early stopping decisions on a scripted metric sequence."""

import numpy as np
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
