"""Strategy selection and chief detection (no multi-worker runtime is started)."""

import json
import os

import pytest
import tensorflow as tf

from trainer import strategy

TWO_WORKERS = {"cluster": {"worker": ["host0:2222", "host1:2222"]},
               "task": {"type": "worker", "index": 1}}


def test_auto_without_tf_config_and_gpus_is_default():
    assert strategy.choose("auto", {}, num_gpus=0) == "default"
    assert strategy.choose(None, {}, num_gpus=1) == "default"


def test_auto_with_several_gpus_is_mirrored():
    assert strategy.choose("auto", {}, num_gpus=4) == "mirrored"


def test_auto_with_a_cluster_is_multi_worker():
    assert strategy.choose("auto", TWO_WORKERS, num_gpus=0) == "multi_worker"
    chief_and_worker = {"cluster": {"chief": ["a:1"], "worker": ["b:1"]}}
    assert strategy.choose("auto", chief_and_worker, num_gpus=8) == "multi_worker"
    # A one-process cluster gains nothing from collectives.
    assert strategy.choose("auto", {"cluster": {"worker": ["a:1"]}}, num_gpus=0) == "default"


def test_explicit_names_win_and_unknown_names_fail():
    assert strategy.choose("mirrored", TWO_WORKERS, num_gpus=0) == "mirrored"
    assert strategy.choose("multi_worker", {}, num_gpus=0) == "multi_worker"
    with pytest.raises(ValueError, match="unknown strategy"):
        strategy.choose("tpu", {}, num_gpus=0)


def test_tf_config_is_read_at_call_time(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert strategy.tf_config() == {}
    monkeypatch.setenv("TF_CONFIG", json.dumps(TWO_WORKERS))
    assert strategy.cluster_worker_count(strategy.tf_config()) == 2
    monkeypatch.setenv("TF_CONFIG", "not json")
    with pytest.raises(ValueError, match="TF_CONFIG"):
        strategy.tf_config()


def test_is_chief():
    assert strategy.is_chief({})
    assert not strategy.is_chief(TWO_WORKERS)
    assert strategy.is_chief({**TWO_WORKERS, "task": {"type": "worker", "index": 0}})
    with_chief = {"cluster": {"chief": ["a:1"], "worker": ["b:1"]}}
    assert strategy.is_chief({**with_chief, "task": {"type": "chief", "index": 0}})
    assert not strategy.is_chief({**with_chief, "task": {"type": "worker", "index": 0}})


def test_non_chief_writes_to_a_temporary_folder(tmp_path):
    final = str(tmp_path / "model")
    assert strategy.write_dir(final, chief=True) == (final, False)
    path, temporary = strategy.write_dir(final, chief=False)
    assert temporary and path != final and os.path.isdir(path)
    strategy.discard_write_dir(path, temporary)
    assert not os.path.exists(path)


def test_make_strategy(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    default = strategy.make_strategy("default")
    assert strategy.strategy_name(default) == "default"
    assert default.num_replicas_in_sync == 1
    # conftest splits the CPU in two; with no GPU, mirrored spans both halves.
    mirrored = strategy.make_strategy("mirrored")
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert strategy.strategy_name(mirrored) == "mirrored"
    assert mirrored.num_replicas_in_sync == (len(tf.config.list_logical_devices("GPU")) or 2)
