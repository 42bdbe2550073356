"""trainer.train.run with ESMM, a multiclass task, joint retrieval and early
stopping on 2 replicas; the SavedModel's serving and embedding signatures."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from pipelines import examples
from shoprec.core import generated_shop as shop
from shoprec.core import registry as F
from shoprec.core.model_config import (EarlyStoppingConfig, ExpertsConfig, RetrievalConfig,
                                       TaskConfig)
from tests.trainer.synthetic import NUM_EVAL, make_config, make_rows
from trainer import data, export, metrics, train

RECALL_AT = (3, 10)


@pytest.fixture(scope="module")
def joint(featurized_dir, tmp_path_factory):
    """(config, result) of an ESMM + retrieval run in a private copy of the run folder."""
    run_dir = str(tmp_path_factory.mktemp("joint"))
    os.symlink(os.path.join(featurized_dir, "featurize"), os.path.join(run_dir, "featurize"))
    config = make_config(run_dir, per_replica_batch_size=16, epochs=3,
                         early_stopping=EarlyStoppingConfig(task="click", metric="gauc",
                                                            patience=1))
    tasks = config.model.tasks + (
        TaskConfig("category", "item_category", type="multiclass", weight=0.2),)
    model = dataclasses.replace(
        config.model, architecture="esmm", tasks=tasks,
        experts=ExpertsConfig(units=(8,)),
        retrieval=RetrievalConfig(enabled=True, embedding_dim=8, tower_units=(8,),
                                  recall_at=RECALL_AT))
    config = dataclasses.replace(config, model=model)
    return config, train.run(config, strategy_name="mirrored")


def test_metrics_cover_every_output_and_retrieval(joint):
    config, result = joint
    with open(config.layout.metrics_file) as f:
        assert json.load(f) == result
    tasks = result["tasks"]
    assert set(tasks) == {"click", "conversion", "cvr", "category"}
    for name in ("click", "conversion", "cvr"):
        assert {"auc", "gauc", "log_loss", "calibration"} <= set(tasks[name])
    assert tasks["click"]["examples"] == NUM_EVAL
    # ESMM's CVR is judged on clicked impressions only.
    clicks = sum(r["click"] for r in make_rows(NUM_EVAL, seed=2))
    assert tasks["cvr"]["examples"] == clicks == result["retrieval"]["pairs"]
    assert 0.0 <= tasks["category"]["accuracy"] <= 1.0
    assert set(result["retrieval"]) == {"recall_at_3", "recall_at_10", "pairs", "candidates"}


def test_training_record_early_stopping_backup_and_checkpoint(joint):
    config, result = joint
    record = result["training"]
    assert record["architecture"] == "esmm" and record["initial_epoch"] == 0
    stopping = record["early_stopping"]
    assert stopping["task"] == "click" and stopping["metric"] == "gauc"
    assert len(stopping["history"]) == len(record["epochs_run"]) <= 3
    assert not os.path.exists(config.layout.backup_dir)
    assert os.path.exists(result["checkpoint"] + ".index")


def test_serving_signature_returns_every_output(joint):
    config, _ = joint
    serve = tf.saved_model.load(config.layout.model_dir).signatures[export.SIGNATURE]
    rows = make_rows(6, seed=4)
    raw = [examples.encode(r, shop.REGISTRY.example_names(include_labels=False), shop.REGISTRY)
           for r in rows]
    out = {k: v.numpy() for k, v in serve(examples=tf.constant(raw)).items()}
    assert set(out) == {"p_click", "p_conversion", "p_cvr", "p_category"}
    np.testing.assert_allclose(out["p_conversion"], out["p_click"] * out["p_cvr"], rtol=1e-6)
    assert out["p_category"].shape[0] == 6 and out["p_category"].shape[1] >= 3
    np.testing.assert_allclose(out["p_category"].sum(axis=1), 1.0, rtol=1e-5)


def _eval_rows_in_evaluation_order(config):
    """The raw eval rows, ordered as evaluation reads the transformed ones, with item indices.

    Featurize may reorder rows; prices are distinct and their transform is
    monotone, so ranking both sides by price aligns them.
    """
    tft_output = tft.TFTransformOutput(config.layout.transform_dir)
    dataset = data.make_dataset(config.layout.transformed("eval") + "-*",
                                tft_output.transformed_feature_spec(), config.model.tasks, 32,
                                training=False, registry=config.registry)
    prices, item_index = [], []
    for features, _ in dataset:
        prices.append(features["item_price"].numpy())
        item_index.append(features["item_id"].numpy())
    prices, item_index = np.concatenate(prices), np.concatenate(item_index)
    rows = make_rows(NUM_EVAL, seed=2)  # the raw eval rows the fixture featurized
    by_price = sorted(rows, key=lambda r: r["item_price"])
    rank = np.argsort(np.argsort(prices))
    return [by_price[k] for k in rank], item_index


def test_embedding_signatures_reproduce_recall(joint):
    config, _ = joint
    loaded = tf.saved_model.load(config.layout.model_dir)
    rows, item_index = _eval_rows_in_evaluation_order(config)
    registry = shop.REGISTRY
    # The catalogue as evaluation builds it: each item's first row, by item index.
    ids, first = np.unique(item_index, return_index=True)
    # Each signature needs only its side's raw features.
    items = [examples.encode(rows[i], registry.source_names(F.Source.ITEM), registry)
             for i in first]
    clicked = [i for i, r in enumerate(rows) if r["click"]]
    users = [examples.encode(rows[i], registry.source_names(F.Source.USER), registry)
             for i in clicked]
    queries = loaded.signatures[export.USER_EMBEDDING](examples=tf.constant(users))
    candidates = loaded.signatures[export.ITEM_EMBEDDING](examples=tf.constant(items))
    recall = metrics.recall_at_k(queries[export.EMBEDDING_OUTPUT].numpy(),
                                 candidates[export.EMBEDDING_OUTPUT].numpy(),
                                 np.searchsorted(ids, item_index[clicked]), RECALL_AT)
    with open(config.layout.metrics_file) as f:
        reported = json.load(f)["retrieval"]
    assert reported["candidates"] == len(ids) and reported["pairs"] == len(clicked)
    # A figure strictly between 0 and 1, so agreement is not that of two
    # degenerate rankings.
    assert any(0.0 < reported[f"recall_at_{k}"] < 1.0 for k in RECALL_AT)
    # Recall@K counts pairs (1/16 each here): the same embeddings rank every
    # pair the same way, so the figures are equal; 1e-9 is float slack only.
    for key, value in recall.items():
        assert value == pytest.approx(reported[key], abs=1e-9)
