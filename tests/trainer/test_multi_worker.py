"""MultiWorkerMirroredStrategy with 2 worker processes on 127.0.0.1, a worker
killed mid-epoch whose job resumes from the per-epoch backup, and the learned
task weights (uncertainty, DWA) and soft sharing's loss against one process.

Each job's workers are fresh processes started with their own TF_CONFIG on
free loopback ports; every process is killed and reaped when a test ends,
and every wait is bounded.
"""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from shoprec.core.layout import TFRECORD_SUFFIX, Layout
from tests.trainer import cluster
from tests.trainer.synthetic import (NUM_TRAIN, learned_fraction, make_config,
                                     served_eval_metrics)
from trainer import checkpoints, train, weighting

PER_REPLICA = 16
WORKERS = 2
GLOBAL_BATCH = PER_REPLICA * WORKERS
# The global batch of 2 x 16 and 6 steps an epoch are those of test_train's
# mirrored run, so the same 4 epochs at 0.03 learn the planted signal here.
EPOCHS = 4
LEARNING_RATE = 0.03
# Two processes importing TensorFlow, training and exporting on 2 shared cores.
JOB_TIMEOUT_S = 240


@pytest.fixture
def run_dir(featurized_dir, tmp_path):
    """A private run folder holding a copy of the shared featurize output."""
    layout = Layout(str(tmp_path / "run"))
    shutil.copytree(os.path.join(featurized_dir, "featurize"), layout.featurize_dir)
    return layout.run_dir


def _config(run_dir, tmp_path, epochs, learning_rate=None):
    training = {} if learning_rate is None else {"learning_rate": learning_rate}
    config = make_config(run_dir, per_replica_batch_size=PER_REPLICA, epochs=epochs, **training)
    return cluster.write_config(config, str(tmp_path / "config.yaml"))


def _steps_per_epoch():
    return NUM_TRAIN // (PER_REPLICA * WORKERS)


def _run_job(commands, tmp_path, tag):
    with cluster.Job(commands, str(tmp_path), tag) as job:
        codes = job.wait(JOB_TIMEOUT_S)
        return codes, job.tail()


def test_two_workers_train_and_only_the_chief_writes(run_dir, tmp_path):
    config_path = _config(run_dir, tmp_path, epochs=EPOCHS, learning_rate=LEARNING_RATE)
    codes, logs = _run_job([cluster.train_command(config_path)] * WORKERS, tmp_path, "mw")
    assert codes == [0, 0], logs

    layout = Layout(run_dir)
    with open(layout.metrics_file) as f:
        result = json.load(f)
    record = result["training"]
    assert record["strategy"] == "multi_worker" and record["replicas"] == WORKERS
    assert record["global_batch_size"] == PER_REPLICA * WORKERS
    # Two transformed train shards for two workers: each reads whole files.
    assert record["input_sharding"] == "file"
    assert record["steps_per_epoch"] == _steps_per_epoch()
    assert record["steps"] == EPOCHS * _steps_per_epoch()
    assert record["epochs_run"] == list(range(EPOCHS))
    # Evaluation under MultiWorkerMirroredStrategy is exact (Keras' streaming AUC
    # is not, tensorflow#48152): the exported model on the raw eval rows.
    served = served_eval_metrics(layout.model_dir)
    for task, got in result["tasks"].items():
        assert got["auc"] == pytest.approx(served[task]["auc"], abs=1e-12), task
    # The model the two workers trained together learned the planted signal:
    # half the Bayes lift over chance on fresh rows, where shuffled labels score
    # about 0 and frozen weights 0.11 / -0.02 (tests.trainer.synthetic).
    fraction = learned_fraction(layout.model_dir)
    assert fraction["click"] >= 0.5 and fraction["conversion"] >= 0.5, fraction
    # The chief wrote the model and the final checkpoint; the other worker's
    # copies went to temporary folders that are gone; the backup is removed.
    assert os.path.exists(os.path.join(layout.model_dir, "saved_model.pb"))
    assert os.path.exists(result["checkpoint"] + ".index")
    # ... and, last, the success marker.
    expected = {"checkpoint", "diagnostics.json", "metrics.json", "model", "_SUCCESS"}
    if os.path.isdir(os.path.join(layout.train_dir, "logs")):
        expected.add("logs")  # TensorBoard, when installed
    assert set(os.listdir(layout.train_dir)) == expected
    assert not os.path.exists(layout.backup_dir)


def test_a_killed_worker_resumes_from_the_backup(run_dir, tmp_path):
    epochs, kill_epoch, kill_batch = 3, 1, 2
    config_path = _config(run_dir, tmp_path, epochs=epochs)
    layout = Layout(run_dir)
    progress = str(tmp_path / "progress.json")
    faulty = [cluster.sys.executable, "-m", "tests.trainer.faulty_worker",
              "--config", config_path, "--kill_epoch", str(kill_epoch),
              "--kill_batch", str(kill_batch), "--progress", progress]

    # Worker 1 dies mid-epoch; the chief loses its peer and fails too.
    codes, logs = _run_job([cluster.train_command(config_path), faulty], tmp_path, "killed")
    assert codes[1] == -9, logs  # SIGKILL
    assert codes[0] not in (0, None), logs
    with open(progress) as f:
        died = json.load(f)
    assert died == {"completed": [0], "killed_in_epoch": kill_epoch,
                    "killed_at_batch": kill_batch}
    assert checkpoints.has_backup(layout) and not os.path.exists(layout.metrics_file)

    # The same job again: it restores the backup and runs only what is left.
    codes, logs = _run_job([cluster.train_command(config_path)] * WORKERS, tmp_path, "resumed")
    assert codes == [0, 0], logs
    with open(layout.metrics_file) as f:
        record = json.load(f)["training"]
    assert record["initial_epoch"] == kill_epoch > 0
    assert record["epochs_run"] == [1, 2]
    assert len(died["completed"]) + len(record["epochs_run"]) == epochs
    assert record["steps"] == (epochs - kill_epoch) * _steps_per_epoch()
    assert not os.path.exists(layout.backup_dir)
    assert os.path.exists(os.path.join(layout.model_dir, "saved_model.pb"))


def _one_train_shard(layout):
    """Rewrites the train split as one shard, records in the same order.

    With fewer shards than workers, tf.distribute shards by DATA: each global
    batch is cut into one piece per worker, so every step trains on the very
    global batch a single process reading the same file draws.
    """
    files = sorted(tf.io.gfile.glob(layout.transformed_pattern("train")))
    records = list(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())
    for path in files:
        os.remove(path)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(layout.transformed("train") + "-00000-of-00001" + TFRECORD_SUFFIX,
                              options) as writer:
        for record in records:
            writer.write(record)


# Both jobs train 3 epochs of 6 steps of the same 2 x 16 = 32 global batches
# from the same seed, hence the same initial weights: DWA's lambdas first move
# at epoch 2.
WEIGHTED_EPOCHS = 3
# The two runs differ only in float32 summation order (per-replica sums
# all-reduced vs one sum of 32 terms): a relative 32 * 2^-24 = 2e-6 per
# gradient at most, and the 18 Adam steps here leave the recorded losses and
# log-variances within 1e-7 of each other. A term counted once per replica
# rather than once per step (uncertainty's s_i added unscaled on each of the
# two replicas) moves the task losses by a relative 2e-3 by epoch 3.
RTOL = 1e-5


@pytest.mark.parametrize("model", [
    {"architecture": "soft_sharing", "soft_sharing_lambda": 0.1,
     "loss_weighting": "uncertainty"},
    {"architecture": "shared_bottom", "loss_weighting": "dwa"},
], ids=["soft_sharing-uncertainty", "dwa"])
def test_learned_weights_and_losses_match_one_process(run_dir, tmp_path, model):
    """Two workers learn the task weights and losses one process learns on the same batches.

    Terms that do not depend on the batch (uncertainty's s_i, soft sharing's
    penalty) must count once per global step however many replicas add them.
    """
    layout = Layout(run_dir)
    _one_train_shard(layout)
    single_dir = str(tmp_path / "single")
    shutil.copytree(run_dir, single_dir)
    base = make_config(run_dir, per_replica_batch_size=PER_REPLICA, epochs=WEIGHTED_EPOCHS,
                       learning_rate=LEARNING_RATE, steps_per_epoch=_steps_per_epoch())
    config = dataclasses.replace(base, model=dataclasses.replace(base.model, **model))
    config_path = cluster.write_config(config, str(tmp_path / "config.yaml"))
    codes, logs = _run_job([cluster.train_command(config_path)] * WORKERS, tmp_path, "weights")
    assert codes == [0, 0], logs
    with open(layout.metrics_file) as f:
        workers = json.load(f)["training"]
    assert workers["input_sharding"] == "data" and workers["global_batch_size"] == GLOBAL_BATCH

    # One process, one replica, the same global batch.
    single = train.run(dataclasses.replace(
        config, run_dir=single_dir,
        training=dataclasses.replace(config.training, per_replica_batch_size=GLOBAL_BATCH)),
        strategy_name="default")["training"]
    assert single["replicas"] == 1 and single["global_batch_size"] == GLOBAL_BATCH

    assert workers["loss_weighting"] == model["loss_weighting"]
    assert len(workers["loss_weights"]) == WEIGHTED_EPOCHS
    for name in ("click_loss", "conversion_loss"):
        np.testing.assert_allclose(workers["losses"][name], single["losses"][name], rtol=RTOL)
    # The joint loss Keras logs is the fixed-weight sum; what the optimizer
    # minimised adds the weighting's terms and soft sharing's penalty, which
    # the matching task losses above and the weights below pin down.
    np.testing.assert_allclose(workers["loss"], single["loss"], rtol=RTOL)
    for got, want in zip(workers["loss_weights"], single["loss_weights"]):
        for task in ("click", "conversion"):
            for key, value in want[task].items():
                assert got[task][key] == pytest.approx(value, rel=RTOL, abs=1e-6), (task, key)
    losses = np.array([workers["losses"]["click_loss"], workers["losses"]["conversion_loss"]])
    weights = np.array([[epoch[t]["weight"] for t in ("click", "conversion")]
                        for epoch in workers["loss_weights"]])
    if model["loss_weighting"] == "dwa":
        # Epochs 0 and 1 train at 1; epoch 2 with the ratios of epochs 1 / 0.
        np.testing.assert_array_equal(weights[:2], 1.0)
        np.testing.assert_allclose(weights[2], weighting.dwa_weights(losses[:, 1], losses[:, 0],
                                                                     2.0), rtol=1e-5)
    else:
        s = np.array([[epoch[t]["log_variance"] for t in ("click", "conversion")]
                      for epoch in workers["loss_weights"]])
        np.testing.assert_allclose(weights, np.exp(-s), rtol=1e-6)
        # Each s_i moves from 0 towards log L_i < 0 (both losses are below 1).
        assert np.all(s[-1] < -0.05), s
