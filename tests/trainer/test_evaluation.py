"""trainer.evaluation with a fixed stand-in model: every figure follows by hand."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from shoprec.core.model_config import ModelConfig, RetrievalConfig, TaskConfig
from trainer import evaluation, metrics

X = np.array([-2.0, -1.0, 1.0, 3.0, 0.0, 2.0], np.float32)
USERS = np.array([0, 0, 1, 1, 2, 2])
ITEMS = np.array([7, 8, 7, 9, 8, 9])
CLICK = np.array([0, 1, 0, 1, 1, 0], np.float32)
CONVERSION = np.array([0, 1, 0, 0, 1, 0], np.float32)


class _Model:
    """pCTR = s(x), pCVR = s(x / 2), pCTCVR = their product; embeddings from the ids."""

    def __init__(self, with_retrieval=False):
        self.retrieval = object() if with_retrieval else None

    def predictions(self, features):
        x = features["x"]
        ctr, cvr = tf.sigmoid(x), tf.sigmoid(x / 2)
        return {"click": ctr, "conversion": ctr * cvr, "cvr": cvr}

    def user_embedding(self, features):
        return tf.one_hot(features["user_id"], 3)

    def item_embedding(self, features):
        # Item 7 aligns with user 0, item 8 with user 1, item 9 with user 2.
        return tf.one_hot(features["item_id"] - 7, 3)


def _dataset(batch=4):
    features = {"x": X, "user_id": USERS, "item_id": ITEMS}
    labels = {"click": CLICK, "conversion": CONVERSION}
    return tf.data.Dataset.from_tensor_slices((features, labels)).batch(batch)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_binary_tasks_report_auc_gauc_log_loss_and_calibration():
    config = ModelConfig(tasks=(TaskConfig("click", "click"),
                                TaskConfig("conversion", "conversion")))
    result = evaluation.evaluate(_Model(), _dataset(), config, "user_id", "item_id")
    click = result["tasks"]["click"]
    p = _sigmoid(X)
    assert result["examples"] == 6 and click["examples"] == 6
    # Positives -1, 3, 0 against negatives -2, 1, 2: won 1 + 3 + 1 = 5 of 9 pairs.
    assert click["auc"] == pytest.approx(5 / 9)
    # Users: 0 -> AUC 1 (2 rows), 1 -> AUC 1 (2 rows), 2 -> AUC 0 (2 rows).
    assert click["gauc"] == pytest.approx(2 / 3)
    assert click["log_loss"] == pytest.approx(metrics.log_loss(CLICK, p), rel=1e-6)
    assert click["calibration"] == pytest.approx(p.mean() / 0.5, rel=1e-6)
    assert result["retrieval"] is None and "cvr" not in result["tasks"]


def test_a_conditioned_task_is_evaluated_where_its_condition_holds():
    config = ModelConfig(tasks=(TaskConfig("click", "click"),
                                TaskConfig("conversion", "conversion", condition="click")))
    result = evaluation.evaluate(_Model(), _dataset(), config, "user_id", "item_id")
    conversion = result["tasks"]["conversion"]
    # Clicked rows x = -1, 3, 0 with conversions 1, 0, 1: positives -1 and 0
    # both lose to 3, AUC 0 over 3 examples.
    assert conversion["examples"] == 3 and conversion["auc"] == pytest.approx(0.0)


def test_esmm_cvr_is_evaluated_on_clicked_examples_against_conversion():
    config = dataclasses.replace(ModelConfig(), architecture="esmm")
    result = evaluation.evaluate(_Model(), _dataset(), config, "user_id", "item_id")
    cvr = result["tasks"]["cvr"]
    clicked = CLICK > 0
    assert cvr["examples"] == 3 and cvr["positive_rate"] == pytest.approx(2 / 3)
    assert cvr["mean_prediction"] == pytest.approx(_sigmoid(X[clicked] / 2).mean(), rel=1e-6)
    # pCTCVR over every impression is the product.
    assert result["tasks"]["conversion"]["mean_prediction"] == pytest.approx(
        (_sigmoid(X) * _sigmoid(X / 2)).mean(), rel=1e-6)


def test_retrieval_recall_over_the_eval_catalogue():
    config = dataclasses.replace(ModelConfig(), retrieval=RetrievalConfig(
        enabled=True, positive_label="click", recall_at=(1, 2)))
    assert evaluation.label_columns(config) == ("click",)
    result = evaluation.evaluate(_Model(with_retrieval=True), _dataset(batch=5), config,
                                 "user_id", "item_id")
    # Clicked pairs: (user 0, item 8), (user 1, item 9), (user 2, item 8).
    # User u scores item 7 + u at 1 and the other two at 0, so each true item
    # (never the aligned one) has exactly one candidate strictly above it.
    assert result["retrieval"] == {"recall_at_1": 0.0, "recall_at_2": 1.0, "pairs": 3,
                                   "candidates": 3}


def test_a_threshold_adds_precision_and_recall():
    config = ModelConfig(tasks=(TaskConfig("click", "click", threshold=0.5),))
    click = evaluation.evaluate(_Model(), _dataset(), config, "user_id", "item_id")["tasks"][
        "click"]
    # s(x) >= 0.5 for x = 1, 3, 0, 2; of those, x = 3 and 0 are clicks (of the 3 clicks).
    assert (click["threshold"], click["precision"], click["recall"]) == pytest.approx(
        (0.5, 2 / 4, 2 / 3))


def test_a_masked_multiclass_task_reports_class_metrics_where_its_mask_holds():
    task = TaskConfig("interest", "interest", type="multiclass", condition="click")
    config = ModelConfig(tasks=(task,))
    # Classes by one-hot-ish probabilities: rows 1, 3, 4 are clicked (the mask).
    probs = np.array([[1, 0, 0], [0.7, 0.2, 0.1], [0, 1, 0], [0.1, 0.3, 0.6],
                      [0.2, 0.5, 0.3], [0, 0, 1]])
    labels = np.array([2, 1, 0, 2, 2, 0])
    data = {"predictions": {"interest": probs}, "labels": {"interest": labels, "click": CLICK},
            "keys": {"user": USERS, "item": ITEMS}, "embeddings": {}}
    got = evaluation.evaluate_collected(data, config)["tasks"]["interest"]
    # Kept rows: label 1 ranks 2nd of (0.7, 0.2, 0.1); label 2 ranks 1st; label 2
    # ranks 2nd of (0.2, 0.5, 0.3). Accuracy 1/3, top-3 all, NDCG@3 (1 + 2/log2 3) / 3.
    assert got["examples"] == 3
    assert got["accuracy"] == pytest.approx(1 / 3)
    assert got["top_3_accuracy"] == 1.0
    assert got["ndcg_at_3"] == pytest.approx((1 + 2 / np.log2(3)) / 3)
    # Predicted 0, 2, 1 against 1, 2, 2: class 2 TP 1, FN 1 -> 2/3; classes 0 and 1 -> 0.
    assert got["macro_f1"] == pytest.approx((2 / 3) / 3)
