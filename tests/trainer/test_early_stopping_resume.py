"""Early stopping across an interrupted job: a resumed job decides as an uninterrupted one.

Real Keras training with the real BackupAndRestore on real files; the watched
metric is scripted by epoch, so both jobs see the same values and must stop at
the same epoch with the same best weights.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from shoprec.core.layout import Layout
from shoprec.core.model_config import EarlyStoppingConfig
from trainer import callbacks, checkpoints, train

# Best at epoch 1; epochs 2, 3, 4 do not improve: patience 3 stops at epoch 4.
# A job that forgot its counters after epoch 3 would count 0.67 as a new best
# and then keep improving to the last epoch.
VALUES = [0.60, 0.70, 0.69, 0.68, 0.67, 0.80, 0.90, 0.95]
PATIENCE = 3
EPOCHS = len(VALUES)
STOP = 4
X = np.arange(16, dtype=np.float32).reshape(8, 2) / 16.0
Y = X.sum(axis=1, keepdims=True)


class _Clock(tf.keras.callbacks.Callback):
    """Knows the epoch being trained, for the scripted metric."""

    epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch


class _FailAt(tf.keras.callbacks.Callback):
    """Raises at the end of ``epoch``, as a job that dies there would stop."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError(f"simulated failure after epoch {epoch}")


class _Weights(tf.keras.callbacks.Callback):
    """Each epoch's weights, taken before the stopper can restore any."""

    def __init__(self):
        super().__init__()
        self.by_epoch = {}

    def on_epoch_end(self, epoch, logs=None):
        self.by_epoch[epoch] = self.model.get_weights()


def _job(layout, order, fail_at=None):
    """One training job over ``layout``; returns (model, stopper, epoch log, weights)."""
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(2,))])
    model.compile(optimizer=tf.keras.optimizers.SGD(0.1), loss="mse")
    clock = _Clock()

    def evaluate():
        return {"tasks": {"click": {"auc": VALUES[clock.epoch]}}}

    parts = {
        "stopper": callbacks.EvalEarlyStopping(
            evaluate, "click", "auc", PATIENCE,
            backup=checkpoints.early_stopping_backup(layout, chief=True)),
        "backup": checkpoints.backup_callback(layout),
        "fail": _FailAt(fail_at),
    }
    epoch_log, weights = callbacks.EpochLog(), _Weights()
    model.fit(X, Y, batch_size=4, epochs=EPOCHS, shuffle=False, verbose=0,
              callbacks=[clock, weights, epoch_log] + [parts[name] for name in order])
    return model, parts["stopper"], epoch_log, weights


def _uninterrupted(tmp_path):
    return _job(Layout(str(tmp_path / "whole")), ("stopper", "backup"))


@pytest.mark.parametrize("order, fail_at, resumes_at", [
    # As trainer.train orders them: the job dies after epoch 3 is fully backed up.
    (("stopper", "backup", "fail"), 3, 4),
    # Dies between the stopper's record of epoch 3 and Keras' backup of it:
    # Keras resumes at epoch 3 and the stopper must still have epoch 2's state.
    (("stopper", "fail", "backup"), 3, 3),
])
def test_resumed_job_stops_where_an_uninterrupted_one_does(tmp_path, order, fail_at,
                                                           resumes_at):
    whole_model, whole, whole_log, whole_weights = _uninterrupted(tmp_path)
    assert whole_log.completed == list(range(STOP + 1))
    assert (whole.stopped_epoch, whole.best_epoch, whole.best) == (STOP, 1, 0.70)

    layout = Layout(str(tmp_path / "resumed"))
    with pytest.raises(RuntimeError, match="simulated failure"):
        _job(layout, order, fail_at=fail_at)
    assert checkpoints.has_backup(layout)
    model, resumed, resumed_log, _ = _job(layout, ("stopper", "backup"))

    assert resumed_log.initial_epoch == resumes_at
    assert resumed_log.completed == list(range(resumes_at, STOP + 1))
    assert resumed.summary() == whole.summary()
    assert resumed.summary()["history"] == VALUES[:STOP + 1]
    # Both end on epoch 1's weights, which the resumed job only had from the backup.
    for got, want, best in zip(model.get_weights(), whole_model.get_weights(),
                               whole_weights.by_epoch[1]):
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got, best)


def test_backup_keeps_two_epochs_and_the_weights_they_name(tmp_path):
    store = checkpoints.EarlyStoppingBackup(str(tmp_path / "es"))
    weights = {e: [np.full((2, 1), e, np.float32), np.array([e], np.float32)] for e in range(4)}
    for epoch, improved in ((0, True), (1, True), (2, False), (3, False)):
        state = {"wait": 0 if improved else epoch - 1, "best": 0.1 * (1 + min(epoch, 1)),
                 "best_epoch": min(epoch, 1), "history": [0.1, 0.2, 0.15, 0.12][:epoch + 1]}
        store.save(epoch, state, weights[epoch] if improved else None)
    assert sorted(os.listdir(tmp_path / "es")) == ["best-1.npz", "state-2.json", "state-3.json"]
    state, best = store.load(3)
    assert state == {"wait": 2, "best": 0.2, "best_epoch": 1, "history": [0.1, 0.2, 0.15, 0.12],
                     "epoch": 3}
    for got, want in zip(best, weights[1]):
        np.testing.assert_array_equal(got, want)
    assert store.load(1) is None
    # A worker that is not the chief reads the shared record but writes nothing.
    reader = checkpoints.EarlyStoppingBackup(str(tmp_path / "es"), write=False)
    reader.save(4, state, weights[0])
    assert reader.load(4) is None and reader.load(3)[0] == state


def test_train_resumes_early_stopping_from_the_backup(featurized_dir, tmp_path):
    """trainer.train.run wires the stopper's record into the backup and takes it up."""
    from tests.trainer.synthetic import make_config

    os.symlink(os.path.join(featurized_dir, "featurize"), str(tmp_path / "featurize"))
    config = make_config(str(tmp_path), per_replica_batch_size=32, epochs=3,
                         early_stopping=EarlyStoppingConfig(task="click", metric="auc",
                                                            patience=3))
    seen = []

    class Record(_FailAt):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(logs["eval_click_auc"])
            super().on_epoch_end(epoch, logs)

    with pytest.raises(RuntimeError, match="simulated failure"):
        train.run(config, strategy_name="default", extra_callbacks=[Record(1)])
    with open(os.path.join(config.layout.backup_dir, checkpoints.EARLY_STOPPING_DIR,
                           "state-1.json")) as f:
        assert json.load(f)["history"] == seen

    result = train.run(config, strategy_name="default")
    record = result["training"]
    stopping = record["early_stopping"]
    assert record["initial_epoch"] == 2 and record["epochs_run"] == [2]
    assert stopping["history"][:2] == seen and len(stopping["history"]) == 3
    best_epoch = int(np.argmax(stopping["history"]))  # first of ties, as the stopper keeps
    assert (stopping["best_epoch"], stopping["best"]) == (best_epoch, max(stopping["history"]))
    # The model ends on the best epoch's weights, wherever that epoch ran.
    assert result["tasks"]["click"]["auc"] == stopping["best"]
    assert not os.path.exists(config.layout.backup_dir)
