"""trainer.metrics against values worked out by hand."""

import math

import numpy as np
import pytest

from trainer import metrics


def test_auc_perfect_and_reversed_ranking():
    assert metrics.auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0


def test_auc_counts_pairs():
    # Positives 0.35 and 0.8 against negatives 0.1 and 0.4: pairs won are
    # (0.35>0.1), (0.8>0.1), (0.8>0.4); lost (0.35<0.4): AUC 3/4.
    assert metrics.auc([0, 1, 0, 1], [0.1, 0.35, 0.4, 0.8]) == pytest.approx(0.75)


def test_auc_ties_count_one_half():
    # All scores tied: every pair is a tie, AUC 1/2.
    assert metrics.auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)
    # Positive 0.5 ties negative 0.5 (1/2) and beats 0.2 (1); positive 0.9 beats
    # both (2): (1/2 + 1 + 2) / 4 pairs.
    assert metrics.auc([0, 0, 1, 1], [0.2, 0.5, 0.5, 0.9]) == pytest.approx(3.5 / 4)


def test_auc_matches_pairwise_count():
    rng = np.random.default_rng(0)
    labels = rng.random(300) < 0.3
    scores = rng.integers(0, 20, 300).astype(float)  # many ties
    pos, neg = scores[labels], scores[~labels]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert metrics.auc(labels, scores) == pytest.approx(pairs)


def test_auc_is_nan_with_one_class():
    assert math.isnan(metrics.auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(metrics.auc([0, 0], [0.1, 0.2]))


def test_log_loss_by_hand():
    # -(ln 0.8 + ln(1 - 0.4)) / 2
    expected = -(math.log(0.8) + math.log(0.6)) / 2
    assert metrics.log_loss([1, 0], [0.8, 0.4]) == pytest.approx(expected)
    assert metrics.log_loss([1, 0], [0.5, 0.5]) == pytest.approx(math.log(2))


def test_log_loss_clips_certain_mistakes():
    assert math.isfinite(metrics.log_loss([1, 0], [0.0, 1.0]))
    assert metrics.log_loss([1, 0], [0.0, 1.0]) == pytest.approx(-math.log(1e-7), rel=1e-6)


def test_gauc_weights_users_by_impressions():
    # User a: its one positive outranks its one negative, AUC 1 over 2 impressions.
    # User b: positive 0.2 beats 0.1 but loses to 0.5, AUC 1/2 over 3 impressions.
    # User c has no positive and is left out: (2 * 1 + 3 * 0.5) / 5.
    labels = [1, 0, 1, 0, 0, 0, 0]
    scores = [0.9, 0.1, 0.2, 0.5, 0.1, 0.3, 0.4]
    users = ["a", "a", "b", "b", "b", "c", "c"]
    assert metrics.gauc(labels, scores, users) == pytest.approx(0.7)
    assert math.isnan(metrics.gauc([0, 0], [0.1, 0.2], [1, 2]))


def test_weighted_auc_hard_labels_match_auc():
    labels = np.array([0, 1, 0, 1, 1, 0])
    scores = np.array([0.1, 0.35, 0.4, 0.8, 0.4, 0.2])
    assert metrics.weighted_auc(labels, 1 - labels, scores) == pytest.approx(
        metrics.auc(labels, scores))


def test_weighted_auc_soft_labels_by_hand():
    # q = (0.2, 0.6), scores (1, 2). Pairs i != j: example 0 as positive vs 1 as
    # negative weighs 0.2 * 0.4 and loses; 1 vs 0 weighs 0.6 * 0.8 and wins.
    assert metrics.weighted_auc([0.2, 0.6], [0.8, 0.4], [1.0, 2.0]) == pytest.approx(
        0.48 / (0.48 + 0.08))


def test_calibration_accuracy_rmse_multiclass_log_loss():
    assert metrics.calibration([1, 0, 0, 0], [0.5, 0.5, 0.0, 0.0]) == pytest.approx(1.0)
    assert metrics.calibration([1, 0], [0.1, 0.1]) == pytest.approx(0.2)
    assert math.isnan(metrics.calibration([0, 0], [0.1, 0.1]))
    probabilities = [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]
    assert metrics.accuracy([0, 1], probabilities) == pytest.approx(0.5)
    assert metrics.multiclass_log_loss([0, 1], probabilities) == pytest.approx(
        -(math.log(0.7) + math.log(0.3)) / 2)
    assert metrics.rmse([1.0, 3.0], [2.0, 1.0]) == pytest.approx(math.sqrt((1 + 4) / 2))


def test_recall_at_k_counts_strictly_better_candidates():
    candidates = np.eye(3)  # candidate c scores query[c]
    queries = np.array([[0.9, 0.5, 0.1],    # true 0: best -> rank 0
                        [0.9, 0.5, 0.1],    # true 1: one above -> rank 1
                        [0.9, 0.5, 0.1]])   # true 2: two above -> rank 2
    out = metrics.recall_at_k(queries, candidates, [0, 1, 2], ks=(1, 2, 3))
    assert out == pytest.approx({"recall_at_1": 1 / 3, "recall_at_2": 2 / 3, "recall_at_3": 1.0})


def test_ranking_metrics_by_hand():
    recommended = {"a": ["x", "y", "z"], "b": ["y", "x", "w"], "c": ["w"]}
    relevant = {"a": {"y", "q"}, "b": {"w"}, "d": {"x"}, "e": set()}
    got = metrics.ranking_metrics(recommended, relevant, k=2, catalogue_size=5)
    # Users a, b, d (e has nothing relevant; c is not judged). Top 2:
    # a: x, y -> y hit at rank 2; b: y, x -> no hit (w is third); d: no list.
    assert got["users"] == 3
    assert got["recall"] == pytest.approx((1 / 2 + 0 + 0) / 3)
    assert got["hit_rate"] == pytest.approx(1 / 3)
    # a: DCG 1/log2(3), ideal for 2 relevant 1 + 1/log2(3).
    assert got["ndcg"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)) / 3)
    # a: precision@2 = 1/2, over min(2 relevant, K=2) = 2.
    assert got["map"] == pytest.approx((1 / 2) / 2 / 3)
    # Shown in anyone's top 2: x, y (a, b) and w (c): 3 of 5.
    assert got["coverage"] == pytest.approx(3 / 5)


def test_ranking_metrics_perfect_list_and_no_users():
    perfect = metrics.ranking_metrics({"a": ["x", "y"]}, {"a": {"y", "x"}}, k=2, catalogue_size=2)
    assert perfect == {"users": 1, "recall": 1.0, "hit_rate": 1.0, "ndcg": 1.0, "map": 1.0,
                       "coverage": 1.0}
    assert math.isnan(metrics.ranking_metrics({}, {}, k=3, catalogue_size=1)["ndcg"])


# Three examples over four classes; labels 2, 0, 3.
CLASS_PROBS = np.array([[0.1, 0.2, 0.6, 0.1],    # label 2 ranks 1st
                        [0.3, 0.4, 0.2, 0.1],    # label 0 ranks 2nd
                        [0.4, 0.3, 0.2, 0.1]])   # label 3 ranks 4th
CLASS_LABELS = np.array([2, 0, 3])


def test_top_k_accuracy_counts_labels_within_the_k_best_classes():
    assert metrics.top_k_accuracy(CLASS_LABELS, CLASS_PROBS, 1) == pytest.approx(1 / 3)
    assert metrics.top_k_accuracy(CLASS_LABELS, CLASS_PROBS, 3) == pytest.approx(2 / 3)
    assert metrics.top_k_accuracy(CLASS_LABELS, CLASS_PROBS, 4) == 1.0
    assert math.isnan(metrics.top_k_accuracy([], np.zeros((0, 4)), 3))


def test_class_ndcg_at_3_discounts_the_label_rank():
    # Ranks 1, 2, 4: gains 1, 1/log2(3), 0 (beyond 3).
    expected = (1.0 + 1.0 / math.log2(3.0) + 0.0) / 3
    assert metrics.class_ndcg_at_k(CLASS_LABELS, CLASS_PROBS, 3) == pytest.approx(expected)
    # A tie with the label does not push it down: rank 1 of two tied classes.
    assert metrics.class_ndcg_at_k([1], [[0.5, 0.5]], 3) == 1.0


def test_macro_f1_averages_the_classes_that_occur():
    # Predictions (argmax) 2, 1, 0 against labels 2, 0, 3. Class 2: TP 1 -> F1 1.
    # Class 0: FP 1, FN 1 -> 0. Class 1: FP 1 -> 0. Class 3: FN 1 -> 0.
    assert metrics.macro_f1(CLASS_LABELS, CLASS_PROBS) == pytest.approx(1 / 4)
    # Two classes: predicted 0, 0, 1, 1 against 0, 1, 1, 1. Class 0: TP 1, FP 1
    # -> 2/3; class 1: TP 2, FN 1 -> 4/5; mean 11/15.
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]])
    assert metrics.macro_f1([0, 1, 1, 1], probs) == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_precision_recall_at_a_threshold():
    # Called positive at >= 0.5: 0.5, 0.7, 0.9 of which 0.7 and 0.9 are
    # positives; positives are 0.2, 0.7 and 0.9.
    got = metrics.precision_recall([0, 1, 0, 1, 1], [0.1, 0.2, 0.5, 0.7, 0.9], 0.5)
    assert got == pytest.approx({"precision": 2 / 3, "recall": 2 / 3})
    nothing = metrics.precision_recall([0, 1], [0.1, 0.2], 0.5)
    assert math.isnan(nothing["precision"]) and nothing["recall"] == 0.0
