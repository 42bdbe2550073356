"""trainer.heads: per-type losses and predictions worked out by hand."""

import math

import numpy as np
import pytest
import tensorflow as tf

from shoprec.core.model_config import TaskConfig
from trainer import heads


def _objective(task_type):
    return heads.Objective(TaskConfig("t", "t", type=task_type))


def test_binary_loss_and_prediction():
    objective = _objective("binary")
    logits = tf.constant([0.0, 2.0])
    loss = objective.per_example_loss(tf.constant([1.0, 0.0]), logits)
    # -ln s(0) = ln 2; -ln(1 - s(2)) = ln(1 + e^2).
    np.testing.assert_allclose(loss.numpy(), [math.log(2), math.log(1 + math.e ** 2)], rtol=1e-5)
    np.testing.assert_allclose(objective.predict(logits).numpy(), [0.5, 1 / (1 + math.e ** -2)],
                               rtol=1e-6)


def test_sample_weight_masks_examples():
    loss = _objective("binary").per_example_loss(tf.constant([1.0, 1.0]), tf.constant([0.0, 0.0]),
                                                 sample_weight=tf.constant([0.0, 1.0]))
    np.testing.assert_allclose(loss.numpy(), [0.0, math.log(2)], rtol=1e-5)


def test_regression_is_squared_error():
    objective = _objective("regression")
    loss = objective.per_example_loss(tf.constant([3.0, -1.0]), tf.constant([1.0, -1.5]))
    np.testing.assert_allclose(loss.numpy(), [4.0, 0.25], rtol=1e-6)
    np.testing.assert_array_equal(objective.predict(tf.constant([1.5])).numpy(), [1.5])


def test_multiclass_is_softmax_cross_entropy():
    objective = _objective("multiclass")
    logits = tf.constant([[0.0, 0.0], [0.0, math.log(3.0)]])
    loss = objective.per_example_loss(tf.constant([1, 1], tf.int64), logits)
    # Softmax of (0, 0) gives 1/2; of (0, ln 3) gives 3/4 to class 1.
    np.testing.assert_allclose(loss.numpy(), [math.log(2), -math.log(0.75)], rtol=1e-5)
    np.testing.assert_allclose(objective.predict(logits).numpy(), [[0.5, 0.5], [0.25, 0.75]],
                               rtol=1e-6)


def test_tower_output_shapes():
    h = tf.ones([4, 3])
    assert heads.Tower("a", (5,), 1)(h).shape == [4]
    assert heads.Tower("b", (), 6)(h).shape == [4, 6]
    assert heads.output_width("multiclass", 6) == 6 and heads.output_width("regression") == 1
    with pytest.raises(ValueError, match="2 classes"):
        heads.output_width("multiclass", 1)


def test_ctcvr_logit_is_the_logit_of_the_product():
    a = tf.constant([-30.0, -3.0, 0.0, 2.0, 25.0])
    b = tf.constant([-20.0, 1.0, 0.0, -4.0, 25.0])
    product = tf.sigmoid(a) * tf.sigmoid(b)
    np.testing.assert_allclose(tf.sigmoid(heads.ctcvr_logit(a, b)).numpy(), product.numpy(),
                               rtol=1e-5)
    # Tiny probabilities keep a finite, exact log: log p = log s(a) + log s(b).
    np.testing.assert_allclose(tf.math.log_sigmoid(heads.ctcvr_logit(a, b)).numpy(),
                               (tf.math.log_sigmoid(a) + tf.math.log_sigmoid(b)).numpy(),
                               rtol=1e-5)
