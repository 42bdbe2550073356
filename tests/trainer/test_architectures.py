"""trainer.architectures: gate weights, mixtures and output shapes."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from shoprec.core.model_config import ModelConfig
from trainer import architectures

BRANCHES = ("click", "conversion")
X = tf.constant(np.random.default_rng(0).normal(size=(5, 7)), tf.float32)


def _config(name, **experts):
    base = ModelConfig(bottom_units=(6, 3))
    return dataclasses.replace(base, architecture=name,
                               experts=dataclasses.replace(base.experts, **experts))


def test_shared_bottom_gives_every_branch_the_same_tensor():
    layer = architectures.build(_config("shared_bottom"), BRANCHES)
    out = layer(X)
    assert set(out) == set(BRANCHES) and out["click"].shape == [5, 3]
    np.testing.assert_array_equal(out["click"].numpy(), out["conversion"].numpy())


def test_esmm_bottoms_are_separate_networks():
    layer = architectures.build(_config("esmm"), ("click", "cvr"))
    out = layer(X)
    assert out["click"].shape == out["cvr"].shape == [5, 3]
    # Two MLPs with their own (randomly initialised) weights.
    assert not np.allclose(out["click"].numpy(), out["cvr"].numpy())
    assert len(layer.trainable_variables) == 2 * 4


def test_mmoe_gates_are_distributions_over_experts():
    layer = architectures.build(_config("mmoe", num_experts=3, units=(4,)), BRANCHES)
    out = layer(X)
    assert all(v.shape == [5, 4] for v in out.values())
    for weights in layer.gate_weights(X).values():
        assert weights.shape == [5, 3]
        np.testing.assert_allclose(weights.numpy().sum(axis=1), 1.0, rtol=1e-6)
        assert np.all(weights.numpy() > 0)


def test_mmoe_with_uniform_gates_averages_the_experts():
    layer = architectures.build(_config("mmoe", num_experts=3, units=(4,)), BRANCHES)
    layer(X)
    for gate in layer.gates.values():
        # Zero kernel and bias: softmax of equal logits is 1/3 for each expert.
        gate.set_weights([np.zeros_like(w) for w in gate.get_weights()])
    expected = np.mean([e(X).numpy() for e in layer.experts], axis=0)
    for value in layer(X).values():
        np.testing.assert_allclose(value.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_ple_levels_shapes_and_gates():
    layer = architectures.build(
        _config("ple", levels=3, shared_experts=2, task_experts=1, units=(5,)), BRANCHES)
    out = layer(X)
    assert set(out) == set(BRANCHES) and all(v.shape == [5, 5] for v in out.values())
    gates = layer.gate_weights(X)
    assert len(gates) == 3
    for level, level_gates in enumerate(gates):
        # A task gate mixes its own expert and the 2 shared ones; the shared
        # gate (all but the last level) mixes 2 x 1 task experts and 2 shared.
        expected = {"click": 3, "conversion": 3}
        if level < 2:
            expected["shared"] = 4
        assert {k: int(v.shape[1]) for k, v in level_gates.items()} == expected
        for weights in level_gates.values():
            np.testing.assert_allclose(weights.numpy().sum(axis=1), 1.0, rtol=1e-6)
    # 3 levels x (2 task + 2 shared experts) MLPs of one layer, 3 x 2 task gates, 2 shared gates.
    assert len(layer.trainable_variables) == 2 * (3 * 4 + 3 * 2 + 2)


def test_single_level_ple_is_cgc():
    layer = architectures.build(_config("ple", levels=1, shared_experts=0, task_experts=2,
                                        units=(4,)), BRANCHES)
    assert layer(X)["click"].shape == [5, 4]
    assert [set(g) for g in layer.gate_weights(X)] == [set(BRANCHES)]


def test_unknown_architecture_fails():
    with pytest.raises(ValueError, match="unknown architecture"):
        architectures.build(_config("wide_and_deep"), BRANCHES)


def _soft_sharing(penalty_weight, branches=BRANCHES, units=(6, 3)):
    config = dataclasses.replace(ModelConfig(bottom_units=units), architecture="soft_sharing",
                                 soft_sharing_lambda=penalty_weight)
    layer = architectures.build(config, branches)
    layer(X)
    return layer


def _bottom_weights(layer, branch):
    """[kernel_1, bias_1, kernel_2, bias_2, ...] of one branch's bottom, as NumPy."""
    return [w.numpy() for w in layer.bottoms[branch].weights]


def test_soft_sharing_bottoms_are_separate_networks_of_the_bottom_sizes():
    layer = _soft_sharing(0.5)
    out = layer(X)
    assert out["click"].shape == out["conversion"].shape == [5, 3]
    assert not np.allclose(out["click"].numpy(), out["conversion"].numpy())
    assert [w.shape for w in _bottom_weights(layer, "click")] == [(7, 6), (6,), (6, 3), (3,)]
    assert len(layer.trainable_variables) == 2 * 4


def test_soft_sharing_penalty_is_lambda_times_the_summed_squared_distances():
    branches = ("a", "b", "c")
    layer = _soft_sharing(0.25, branches)
    # Biases start at zero; give them distinct values so they count too.
    for k, branch in enumerate(branches):
        for dense in layer.bottoms[branch].layers:
            dense.bias.assign(np.full(dense.bias.shape, 0.1 * (k + 1), np.float32))
    weights = {b: _bottom_weights(layer, b) for b in branches}
    # Pairs (a, b), (a, c), (b, c); each a sum over 2 kernels and 2 biases.
    expected = 0.25 * sum(np.sum((p - q) ** 2)
                          for first, second in (("a", "b"), ("a", "c"), ("b", "c"))
                          for p, q in zip(weights[first], weights[second]))
    np.testing.assert_allclose(layer.penalty().numpy(), expected, rtol=1e-5)
    # The biases alone: (0.1)^2 * 9 units for (a, b) and (b, c), (0.2)^2 * 9 for (a, c).
    for branch in branches:
        for dense in layer.bottoms[branch].layers:
            dense.kernel.assign(np.ones(dense.kernel.shape, np.float32))
    np.testing.assert_allclose(layer.penalty().numpy(),
                               0.25 * 9 * (0.01 + 0.04 + 0.01), rtol=1e-5)


def _task_loss_gradients(layer, branch):
    """Gradients of ``mean(out[branch]^2) + penalty`` on every branch's bottom."""
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(layer(X)[branch])) + layer.penalty()
    grads = tape.gradient(loss, {b: layer.bottoms[b].trainable_variables for b in BRANCHES},
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return {b: [g.numpy() for g in gs] for b, gs in grads.items()}


def test_soft_sharing_with_lambda_zero_keeps_the_bottoms_independent():
    tf.keras.utils.set_random_seed(3)
    grads = _task_loss_gradients(_soft_sharing(0.0), "click")
    assert all(np.all(g == 0.0) for g in grads["conversion"])
    assert any(np.any(g != 0.0) for g in grads["click"])
    # With lambda > 0, the click loss (through the penalty) reaches the other bottom.
    grads = _task_loss_gradients(_soft_sharing(0.1), "click")
    assert any(np.any(g != 0.0) for g in grads["conversion"])


def _distance_after_training(penalty_weight, steps=30):
    """Squared distance between the two bottoms after fitting a toy problem.

    The branches fit different targets (a ReLU of the inputs' sum and of its
    negation), so without the penalty their weights drift apart.
    """
    tf.keras.utils.set_random_seed(4)
    layer = _soft_sharing(penalty_weight, units=(4,))
    targets = {"click": tf.nn.relu(tf.reduce_sum(X, axis=1, keepdims=True)),
               "conversion": tf.nn.relu(-tf.reduce_sum(X, axis=1, keepdims=True))}
    optimizer = tf.keras.optimizers.SGD(0.05)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            out = layer(X)
            loss = sum(tf.reduce_mean(tf.square(tf.reduce_sum(out[b], axis=1, keepdims=True)
                                                 - targets[b])) for b in BRANCHES)
            loss += layer.penalty()
        optimizer.apply_gradients(zip(tape.gradient(loss, layer.trainable_variables),
                                      layer.trainable_variables))
    return sum(np.sum((p - q) ** 2) for p, q in zip(_bottom_weights(layer, "click"),
                                                     _bottom_weights(layer, "conversion")))


def test_a_large_soft_sharing_lambda_pulls_the_bottoms_together():
    # Same seed, so both start from the same weights. Gradient descent on
    # lambda * ||a - b||^2 alone shrinks the distance by (1 - 4 * lr * lambda)^2
    # a step (lambda = 2, lr 0.05: 0.36); the task gradients, which differ
    # between the branches, hold it at a small equilibrium instead of 0
    # (seen: 2.2% of the initial distance; lambda = 0 keeps ~all of it).
    tf.keras.utils.set_random_seed(4)
    start = _soft_sharing(0.0, units=(4,))
    initial = sum(np.sum((p - q) ** 2) for p, q in zip(_bottom_weights(start, "click"),
                                                        _bottom_weights(start, "conversion")))
    free, pulled = _distance_after_training(0.0), _distance_after_training(2.0)
    assert free > 0.5 * initial
    assert pulled < 0.05 * initial
    assert pulled < 0.05 * free
