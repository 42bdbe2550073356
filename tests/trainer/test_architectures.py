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
