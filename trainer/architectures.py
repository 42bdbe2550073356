"""Multi-task architectures: how the shared input representation reaches each task.

Every architecture maps the concatenated input features ``x [batch, d]`` to one
representation per *branch*, ``{branch: [batch, d_branch]}``; a tower and an
output layer then sit on each branch (``trainer.heads``). Branches are the
task names, plus ESMM's CVR sub-network.

- ``shared_bottom``: one MLP whose output every branch shares.
- ``mmoe``: ``num_experts`` expert MLPs; each branch mixes them with its own
  softmax gate over ``x`` (Ma et al., KDD 2018).
- ``ple``: ``levels`` of customized gate control: per level, ``task_experts``
  experts of each branch's own plus ``shared_experts`` shared ones; a branch's
  gate mixes its own and the shared experts, and a shared gate over all
  experts feeds the shared experts of the next level (Tang et al., RecSys 2020).
- ``esmm``: a separate MLP per branch over the shared embeddings (Ma et al.,
  SIGIR 2018); the pCTR x pCVR product is formed by the model, not here.
- ``soft_sharing``: a separate MLP per branch (the shared bottom's layer
  sizes) whose corresponding layers are pulled together by the penalty
  ``lambda * sum_{i<j} sum_layers ||theta_i - theta_j||^2`` over kernels and
  biases (soft parameter sharing, Duong et al., ACL 2015); lambda = 0 gives
  independent task networks, a large lambda approaches hard sharing. The model
  adds :meth:`SoftSharing.penalty` to its loss.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf

from shoprec.core.model_config import ARCHITECTURES, ModelConfig


def mlp(units: Sequence[int], name: str, dropout: float = 0.0) -> tf.keras.Sequential:
    """ReLU MLP, with dropout after each layer when ``dropout`` > 0."""
    layers = []
    for u in units:
        layers.append(tf.keras.layers.Dense(u, activation="relu"))
        if dropout:
            layers.append(tf.keras.layers.Dropout(dropout))
    return tf.keras.Sequential(layers, name=name)


def _gate(num_experts: int, name: str) -> tf.keras.layers.Dense:
    # A linear map to softmax weights: the gates of both papers.
    return tf.keras.layers.Dense(num_experts, activation="softmax", name=name)


def _mix(weights: tf.Tensor, experts: List[tf.Tensor]) -> tf.Tensor:
    """``sum_k weights[:, k] * experts[k]``: [batch, n] x n x [batch, d] -> [batch, d]."""
    return tf.einsum("bn,bnd->bd", weights, tf.stack(experts, axis=1))


class SharedBottom(tf.keras.layers.Layer):
    """One MLP; every branch receives its output."""

    def __init__(self, branches: Sequence[str], units: Sequence[int], dropout: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.branches = tuple(branches)
        self.bottom = mlp(units, "bottom", dropout)

    def call(self, x: tf.Tensor, training: bool = False) -> Dict[str, tf.Tensor]:
        shared = self.bottom(x, training=training)
        return {b: shared for b in self.branches}


class SeparateBottoms(tf.keras.layers.Layer):
    """One MLP per branch (ESMM's sub-networks); only the inputs are shared."""

    def __init__(self, branches: Sequence[str], units: Sequence[int], dropout: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.branches = tuple(branches)
        self.bottoms = {b: mlp(units, f"{b}_bottom", dropout) for b in self.branches}

    def call(self, x: tf.Tensor, training: bool = False) -> Dict[str, tf.Tensor]:
        return {b: self.bottoms[b](x, training=training) for b in self.branches}


class SoftSharing(SeparateBottoms):
    """One MLP per branch, plus an L2 penalty between corresponding layers.

    Args:
        branches: Branch names; each gets its own bottom.
        units: Layer sizes of every bottom.
        penalty_weight: lambda of :meth:`penalty`.
        dropout: Dropout after each layer.
    """

    def __init__(self, branches: Sequence[str], units: Sequence[int], penalty_weight: float,
                 dropout: float = 0.0, **kwargs):
        super().__init__(branches, units, dropout, **kwargs)
        self.penalty_weight = float(penalty_weight)

    def _parameters(self, branch: str) -> List[tf.Variable]:
        """A branch's kernels and biases, layer by layer (dropout layers hold none)."""
        return [v for layer in self.bottoms[branch].layers
                if isinstance(layer, tf.keras.layers.Dense)
                for v in (layer.kernel, layer.bias)]

    def penalty(self) -> tf.Tensor:
        """``lambda * sum_{i<j} sum_layers ||theta_i - theta_j||^2`` (squared Frobenius norms).

        The value is the same on every replica; the caller scales it to count
        once per global batch.
        """
        total = tf.constant(0.0)
        for i, first in enumerate(self.branches):
            for second in self.branches[i + 1:]:
                for a, b in zip(self._parameters(first), self._parameters(second)):
                    total += tf.reduce_sum(tf.square(a - b))
        return self.penalty_weight * total


class MultiGateMixtureOfExperts(tf.keras.layers.Layer):
    """MMoE: shared experts, one softmax gate per branch."""

    def __init__(self, branches: Sequence[str], num_experts: int, expert_units: Sequence[int],
                 dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if num_experts < 1:
            raise ValueError(f"mmoe needs at least one expert, got {num_experts}")
        self.branches = tuple(branches)
        self.experts = [mlp(expert_units, f"expert_{k}", dropout) for k in range(num_experts)]
        self.gates = {b: _gate(num_experts, f"{b}_gate") for b in self.branches}

    def gate_weights(self, x: tf.Tensor) -> Dict[str, tf.Tensor]:
        """``{branch: [batch, num_experts]}`` softmax weights (rows sum to 1)."""
        return {b: self.gates[b](x) for b in self.branches}

    def call(self, x: tf.Tensor, training: bool = False) -> Dict[str, tf.Tensor]:
        experts = [e(x, training=training) for e in self.experts]
        return {b: _mix(w, experts) for b, w in self.gate_weights(x).items()}


class ProgressiveLayeredExtraction(tf.keras.layers.Layer):
    """PLE: stacked CGC levels with branch-specific and shared experts."""

    def __init__(self, branches: Sequence[str], levels: int, shared_experts: int,
                 task_experts: int, expert_units: Sequence[int], dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if levels < 1 or task_experts < 1 or shared_experts < 0:
            raise ValueError("ple needs levels >= 1, task_experts >= 1, shared_experts >= 0")
        self.branches = tuple(branches)
        self.levels = int(levels)
        self.task_experts = [
            {b: [mlp(expert_units, f"l{level}_{b}_expert_{k}", dropout)
                 for k in range(task_experts)] for b in self.branches}
            for level in range(levels)]
        self.shared_experts = [
            [mlp(expert_units, f"l{level}_shared_expert_{k}", dropout)
             for k in range(shared_experts)] for level in range(levels)]
        self.task_gates = [{b: _gate(task_experts + shared_experts, f"l{level}_{b}_gate")
                            for b in self.branches} for level in range(levels)]
        # The last level has no shared output, so no shared gate.
        self.shared_gates = [
            _gate(len(self.branches) * task_experts + shared_experts, f"l{level}_shared_gate")
            for level in range(levels - 1)]

    def _forward(self, x: tf.Tensor, training: bool
                 ) -> Tuple[Dict[str, tf.Tensor], List[Dict[str, tf.Tensor]]]:
        inputs = {b: x for b in self.branches}
        shared_input = x
        gates: List[Dict[str, tf.Tensor]] = []
        for level in range(self.levels):
            own = {b: [e(inputs[b], training=training) for e in self.task_experts[level][b]]
                   for b in self.branches}
            shared = [e(shared_input, training=training) for e in self.shared_experts[level]]
            level_gates = {b: self.task_gates[level][b](inputs[b]) for b in self.branches}
            outputs = {b: _mix(level_gates[b], own[b] + shared) for b in self.branches}
            if level < self.levels - 1:
                level_gates["shared"] = self.shared_gates[level](shared_input)
                every = [e for b in self.branches for e in own[b]] + shared
                shared_input = _mix(level_gates["shared"], every)
            gates.append(level_gates)
            inputs = outputs
        return inputs, gates

    def gate_weights(self, x: tf.Tensor) -> List[Dict[str, tf.Tensor]]:
        """Per level, ``{branch or 'shared': [batch, experts gated]}`` softmax weights."""
        return self._forward(x, training=False)[1]

    def call(self, x: tf.Tensor, training: bool = False) -> Dict[str, tf.Tensor]:
        return self._forward(x, training)[0]


def build(model_config: ModelConfig, branches: Sequence[str]) -> tf.keras.layers.Layer:
    """The architecture ``model_config.architecture`` over ``branches``.

    Raises:
        ValueError: unknown architecture name.
    """
    name = model_config.architecture
    experts = model_config.experts
    dropout = model_config.dropout
    if name == "shared_bottom":
        return SharedBottom(branches, model_config.bottom_units, dropout, name="shared_bottom")
    if name == "esmm":
        return SeparateBottoms(branches, model_config.bottom_units, dropout, name="esmm_bottoms")
    if name == "soft_sharing":
        return SoftSharing(branches, model_config.bottom_units,
                           model_config.soft_sharing_lambda, dropout, name="soft_sharing")
    if name == "mmoe":
        return MultiGateMixtureOfExperts(branches, experts.num_experts, experts.units, dropout,
                                         name="mmoe")
    if name == "ple":
        return ProgressiveLayeredExtraction(branches, experts.levels, experts.shared_experts,
                                            experts.task_experts, experts.units, dropout,
                                            name="ple")
    raise ValueError(f"unknown architecture {name!r}; expected one of {ARCHITECTURES}")

