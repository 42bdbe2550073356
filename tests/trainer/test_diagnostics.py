"""trainer.diagnostics: curve points, reliability bins, slices and baselines, by hand."""

import numpy as np
import pytest

from shoprec.core.model_config import ModelConfig, TaskConfig
from trainer import diagnostics, metrics

# Highest score first: positive, negative, positive, negative.
LABELS = np.array([1, 0, 1, 0], np.float32)
SCORES = np.array([0.9, 0.8, 0.4, 0.1])


def test_roc_points_step_through_every_threshold():
    roc = diagnostics.roc_points(LABELS, SCORES)
    assert roc == {"fpr": [0.0, 0.0, 0.5, 0.5, 1.0], "tpr": [0.0, 0.5, 0.5, 1.0, 1.0]}
    # The area under these points is the rank-sum AUC.
    assert np.trapezoid(roc["tpr"], roc["fpr"]) == pytest.approx(metrics.auc(LABELS, SCORES))


def test_tied_scores_are_one_threshold():
    assert diagnostics.roc_points([1, 0], [0.5, 0.5]) == {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0]}
    assert diagnostics.roc_points([1, 1], [0.5, 0.2]) == {"fpr": [], "tpr": []}


def test_precision_recall_points():
    pr = diagnostics.pr_points(LABELS, SCORES)
    assert pr["recall"] == [0.5, 0.5, 1.0, 1.0]
    assert pr["precision"] == pytest.approx([1.0, 0.5, 2 / 3, 0.5], abs=1e-5)


def test_thinning_keeps_the_ends():
    labels = np.arange(1000) % 2
    roc = diagnostics.roc_points(labels, np.linspace(0, 1, 1000), points=50)
    assert len(roc["fpr"]) <= 50
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0, 0, 1, 1)


def test_reliability_bins_mean_prediction_rate_and_count():
    table = diagnostics.reliability([0, 1, 1, 1, 0], [0.1, 0.2, 0.7, 1.0, 0.3], bins=2)
    assert table["edges"] == [0.0, 0.5, 1.0]
    assert table["count"] == [3, 2]  # a probability of 1 is in the last bin
    assert table["mean_prediction"] == pytest.approx([0.2, 0.85])
    assert table["positive_rate"] == pytest.approx([1 / 3, 1.0])
    empty = diagnostics.reliability([1], [0.9], bins=2)
    assert empty["mean_prediction"][0] is None and empty["count"] == [0, 1]


def test_histograms_count_each_class_over_zero_to_the_highest_score():
    table = diagnostics.histograms([0, 1, 1, 1], [0.1, 0.2, 0.7, 0.9], bins=2)
    assert table["edges"] == [0.0, 0.45, 0.9]
    assert table["positive"] == [1, 2] and table["negative"] == [1, 0]


def test_activity_buckets_by_train_examples_per_user():
    # Train examples: user 1 three, user 2 one, user 3 two: the median is 2.
    buckets, median = diagnostics.activity(np.array([1, 2, 3, 4]), np.array([1, 1, 1, 2, 3, 3]))
    assert median == 2.0
    assert buckets.tolist() == ["heavy", "light", "light", "new"]


def test_popularity_is_the_item_train_positives():
    score = diagnostics.item_positives(np.array([10, 11, 12, 13]), np.array([10, 10, 11, 12]),
                                       np.array([1, 1, 0, 1]))
    assert score.tolist() == [2.0, 0.0, 1.0, 0.0]


def test_slice_rows_and_bootstrap_intervals():
    rng = np.random.default_rng(0)
    labels = np.array([1, 0, 1, 0, 1, 1])
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.5, 0.6])
    groups = np.array(["a", "a", "a", "a", "b", "b"])
    rows = diagnostics.slice_aucs(labels, scores, groups, rng, order=("a", "b", "c"))
    a, b, c = rows
    # Slice a separates perfectly: every resample with both classes has AUC 1.
    assert (a["examples"], a["positives"], a["auc"]) == (4, 2, 1.0)
    assert (a["auc_low"], a["auc_high"]) == (1.0, 1.0)
    # Slice b has positives only: no AUC, no interval; c has no examples at all.
    assert (b["examples"], b["auc"], b["auc_low"]) == (2, None, None)
    assert (c["examples"], c["auc"]) == (0, None)


def test_a_bootstrap_interval_brackets_the_auc():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 400)
    scores = labels * 0.3 + rng.random(400)
    low, high = diagnostics.bootstrap_auc(labels, scores, np.random.default_rng(2))
    assert low < metrics.auc(labels, scores) < high
    assert high - low < 0.15


def test_diagnose_judges_each_task_on_its_own_examples():
    config = ModelConfig(tasks=(TaskConfig("click", "click"),
                                TaskConfig("conversion", "conversion", condition="click")))
    data = {
        "predictions": {"click": SCORES, "conversion": np.array([0.7, 0.1, 0.2, 0.3])},
        "labels": {"click": LABELS, "conversion": np.array([1, 0, 0, 0], np.float32)},
        "keys": {"user": np.array([1, 1, 2, 5]), "item": np.array([10, 11, 10, 12]),
                 "item_category": np.array([0, 1, 0, 3])},
    }
    train = {"user": np.array([1, 1, 2]), "item": np.array([10, 10, 11]),
             "click": np.array([1, 0, 1]), "conversion": np.array([1, 0, 0])}
    out = diagnostics.diagnose(data, config, train, "item_category", ["shoes", "hats"])
    click = out["click"]
    assert click["roc"] == diagnostics.roc_points(LABELS, SCORES)
    assert [r["value"] for r in click["slices"]["category"]] == ["(oov)", "hats", "shoes"]
    assert [r["examples"] for r in click["slices"]["activity"]] == [1, 1, 2]  # new, light, heavy
    assert [r["examples"] for r in click["slices"]["item"]] == [3, 1]  # known, cold
    # User 5 alone has no train example: one cold-user example, three known.
    assert [(r["value"], r["examples"]) for r in click["slices"]["user"]] == [
        ("known", 3), ("cold", 1)]
    # Popularity scores items 10, 11, 10, 12 by their train clicks: 1, 1, 1, 0.
    assert click["baselines"]["popularity"]["auc"] == metrics.auc(LABELS, [1, 1, 1, 0])
    # Conversion is judged where click is 1: examples 0 and 2.
    assert sum(click["reliability"]["count"]) == 4
    assert sum(out["conversion"]["reliability"]["count"]) == 2
    assert out["_slices"] == {"activity_light_max_train_examples": 1.5,
                              "category": "item_category"}
