"""trainer.metrics against values worked out by hand."""

import math

import numpy as np
import pytest
import tensorflow as tf

from shoprec.config import TaskConfig
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


def test_evaluate_predicts_every_batch():
    """A fixed 'model' whose click logit is the input: metrics follow by hand."""
    x = np.array([-2.0, -1.0, 1.0, 3.0, 0.0], np.float32)
    click = np.array([0, 1, 0, 1, 1], np.float32)
    dataset = tf.data.Dataset.from_tensor_slices(({"x": x}, {"click": click})).batch(2)

    def model(features, training=False):
        return {"click": features["x"]}

    result = metrics.evaluate(model, dataset, [TaskConfig("click", "click")])
    probs = 1 / (1 + np.exp(-x))
    assert result["examples"] == 5
    # Positives -1, 3, 0 vs negatives -2, 1: won 1+2+1 = 4 of 6 pairs.
    assert result["click"]["auc"] == pytest.approx(4 / 6)
    assert result["click"]["positive_rate"] == pytest.approx(0.6)
    assert result["click"]["mean_prediction"] == pytest.approx(probs.mean(), rel=1e-6)
    assert result["click"]["log_loss"] == pytest.approx(metrics.log_loss(click, probs), rel=1e-6)
