"""trainer.train.run on a run with a test split: the same metrics on eval and test.

The run folder is featurized by the real job with ``ingest.test_start`` set, so
featurize writes the test split as it would after ingest; the expected test
metrics are recomputed from the exported model scoring the raw test rows.
"""

import dataclasses
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from pipelines import examples
from shoprec.core import generated_shop as shop
from shoprec.core.layout import success_marker
from shoprec.core.model_config import RetrievalConfig
from tests.trainer.synthetic import NUM_EVAL, NUM_TRAIN, make_config, make_rows, write_raw
from trainer import evaluation, export, train

NUM_TEST = 48
TEST_START = "2026-11-20T00:00:00Z"  # after the default eval_start; featurize only needs it set


def _config(run_dir):
    config = make_config(run_dir, per_replica_batch_size=16, epochs=2)
    model = dataclasses.replace(config.model, retrieval=RetrievalConfig(
        enabled=True, embedding_dim=4, tower_units=(8,), recall_at=(5,)))
    return dataclasses.replace(config, model=model, ingest=dataclasses.replace(
        config.ingest, test_start=TEST_START))


@pytest.fixture(scope="module")
def split_run(tmp_path_factory):
    """(config, result) of a run whose featurize output has train, eval and test."""
    from pipelines import featurize

    config = _config(str(tmp_path_factory.mktemp("split")))
    assert config.splits == ("train", "eval", "test")
    write_raw(config.layout.examples("train"), make_rows(NUM_TRAIN, seed=1))
    write_raw(config.layout.examples("eval"), make_rows(NUM_EVAL, seed=2))
    write_raw(config.layout.examples("test"), make_rows(NUM_TEST, seed=3))
    featurize.run(config)
    return config, train.run(config, strategy_name="default")


def test_metrics_file_has_eval_at_the_top_and_a_test_section(split_run):
    config, result = split_run
    with open(config.layout.metrics_file) as f:
        assert json.load(f) == result
    # Readers of the eval figures (demo, benchmarks) keep their keys.
    assert result["eval_examples"] == NUM_EVAL
    assert set(result["tasks"]) == {"click", "conversion"}
    test = result["test"]
    assert set(test) == {"tasks", "retrieval", "examples"}
    assert test["examples"] == NUM_TEST
    assert set(test["tasks"]) == set(result["tasks"])
    for name, metrics in test["tasks"].items():
        assert set(metrics) == set(result["tasks"][name])
    rows = make_rows(NUM_TEST, seed=3)
    for task in ("click", "conversion"):
        assert test["tasks"][task]["examples"] == NUM_TEST
        assert test["tasks"][task]["positive_rate"] == pytest.approx(
            np.mean([r[task] for r in rows]), abs=1e-12)
    assert test["retrieval"]["pairs"] == sum(r["click"] for r in rows)
    assert set(test["retrieval"]) == set(result["retrieval"])


def test_test_metrics_match_the_exported_model_on_the_raw_test_rows(split_run):
    config, result = split_run
    rows = make_rows(NUM_TEST, seed=3)  # the raw test rows the fixture featurized
    serve = tf.saved_model.load(config.layout.model_dir).signatures[export.SIGNATURE]
    raw = [examples.encode(r, shop.REGISTRY.example_names(include_labels=False), shop.REGISTRY)
           for r in rows]
    served = {k: v.numpy() for k, v in serve(examples=tf.constant(raw)).items()}
    users = np.unique([r["user_id"] for r in rows], return_inverse=True)[1]
    for task in ("click", "conversion"):
        labels = np.array([r[task] for r in rows], np.float64)
        expected = evaluation.binary_metrics(labels, served[f"p_{task}"], users)
        got = result["test"]["tasks"][task]
        # Same rows, weights and transform graph by another path (raw examples
        # through the SavedModel vs featurized shards through the model):
        # predictions agree to float32 rounding, far below any gap between two
        # test predictions, so rank metrics agree exactly and means to 1e-6.
        for name in ("auc", "gauc", "positive_rate", "examples"):
            assert got[name] == pytest.approx(expected[name], abs=1e-12), (task, name)
        for name in ("log_loss", "calibration", "mean_prediction"):
            assert got[name] == pytest.approx(expected[name], abs=1e-6), (task, name)
    # Eval and test are different rows, so a test section copied from eval would differ.
    assert result["test"]["tasks"]["click"]["auc"] != result["tasks"]["click"]["auc"]


def test_a_missing_test_split_fails_before_training(split_run, tmp_path):
    config, _ = split_run
    other = _config(str(tmp_path))
    # Featurize output with train and eval only, as a run featurized before
    # test_start was set would have.
    os.makedirs(os.path.dirname(other.layout.transformed("train")))
    os.symlink(config.layout.transform_dir, other.layout.transform_dir)
    os.symlink(success_marker(config.layout.featurize_dir),
               success_marker(other.layout.featurize_dir))
    for split in ("train", "eval"):
        for path in glob.glob(config.layout.transformed(split) + "-*"):
            os.symlink(path, os.path.join(os.path.dirname(other.layout.transformed(split)),
                                          os.path.basename(path)))
    with pytest.raises(FileNotFoundError, match="no test split"):
        train.run(other, strategy_name="default")
    assert not os.path.exists(other.layout.metrics_file)
