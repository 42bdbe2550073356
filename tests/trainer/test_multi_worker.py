"""MultiWorkerMirroredStrategy with 2 worker processes on 127.0.0.1, and a worker
killed mid-epoch whose job resumes from the per-epoch backup.

Each job's workers are fresh processes started with their own TF_CONFIG on
free loopback ports; every process is killed and reaped when a test ends,
and every wait is bounded.
"""

import json
import os
import shutil

import pytest

from shoprec.core.layout import Layout
from tests.trainer import cluster
from tests.trainer.synthetic import (NUM_TRAIN, learned_fraction, make_config,
                                     served_eval_metrics)
from trainer import checkpoints

PER_REPLICA = 16
WORKERS = 2
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
