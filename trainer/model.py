"""The multi-task model, built from the feature registry and ModelConfig.

Inputs are the featurize job's transformed features, encoded by
``trainer.inputs``. The configured architecture (``trainer.architectures``:
shared-bottom, MMoE, PLE, ESMM or soft sharing, whose penalty joins the loss)
gives each branch its representation; a tower and output layer per branch
(``trainer.heads``) produce the raw outputs, and every task has its own TFRS
task object and loss weight. ESMM forms
pCTCVR = pCTR x pCVR and trains only the CTR and CTCVR losses, over every
impression. A task with its own ``inputs`` (an item attribute predicted
from the other item features) is no branch of the architecture: it has a
bottom of its own over just those inputs' encodings, and shares only the
encodings (embedding tables, the photo projection) with the other tasks.
An optional two-tower retrieval task (``trainer.retrieval``)
shares the feature encodings and is trained in the same steps.

Losses are computed per example and averaged over the *global* batch, which
is what gradient summation across replicas expects; TFRS's default loss
reduction is rejected inside ``tf.distribute``. Training reports only loss
means, which aggregate correctly across replicas; AUC and friends are
computed after training by ``trainer.metrics`` (Keras AUC is wrong under
MultiWorkerMirroredStrategy, tensorflow/tensorflow#48152).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Mapping, Sequence

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf
import tensorflow_recommenders as tfrs

from shoprec.core import registry as F
from shoprec.core.model_config import ModelConfig, TaskConfig, model_config_from_dict
from trainer import architectures, heads, inputs as inputs_lib, retrieval as retrieval_lib
from trainer import weighting


# Keys that sit beside task names in training logs and in evaluation results.
RESERVED_TASK_NAMES = frozenset({"loss", "examples", "retrieval"})


def train_weight(task: TaskConfig, labels: Mapping[str, tf.Tensor]):
    """Per-example loss weight of ``task`` ([batch] float32), or None for all 1.

    0 outside the task's ``condition`` and on its ``holdout`` rows (those
    rows' labels are for evaluation only), 1 elsewhere.
    """
    weight = None
    if task.condition:
        weight = tf.cast(labels[task.condition], tf.float32)
    if task.holdout:
        kept = 1.0 - tf.cast(labels[task.holdout], tf.float32)
        weight = kept if weight is None else weight * kept
    return weight


class MultiTaskModel(tfrs.Model):
    """Multi-task ranker (+ optional retrieval); ``call`` returns ``{output: raw output}``.

    Raw outputs are logits for binary tasks (ESMM's CTCVR included: the logit
    of pCTR x pCVR), values for regression and class logits for multiclass;
    :meth:`predictions` turns them into what serving returns.

    Args:
        model_config: Layer sizes and the tasks with their loss weights.
        vocab_sizes: ``{feature name: vocabulary + OOV}`` for every ID /
            CATEGORICAL feature (see :func:`trainer.inputs.vocab_sizes`).
        global_batch_size: Examples per training step over all replicas; the
            per-example losses of each replica are divided by it.
        registry: The run's feature registry: which inputs exist and how each
            is embedded (``trainer.inputs.FeatureEncoder``).
    """

    def __init__(self, model_config: ModelConfig, vocab_sizes: Mapping[str, int],
                 global_batch_size: int, registry: F.Registry, **kwargs):
        super().__init__(**kwargs)
        self._model_config = model_config
        self._vocab_sizes = dict(vocab_sizes)
        self._tasks_config = tuple(model_config.tasks)
        self._global_batch_size = int(global_batch_size)
        self._registry = registry

        clashing = sorted(RESERVED_TASK_NAMES.intersection(self.task_names))
        if clashing:
            raise ValueError(f"task name(s) {clashing} are reserved")
        self.encoder = inputs_lib.FeatureEncoder(registry, vocab_sizes, model_config,
                                                 name="inputs")

        # ESMM: the CTCVR task has no tower of its own; the CVR sub-network
        # is a branch without a task (it has no label on the impression space).
        self._esmm = model_config.esmm if model_config.architecture == "esmm" else None
        widths = {t.name: heads.output_width(t.type, self._num_classes(t))
                  for t in self._tasks_config}
        if self._esmm is not None:
            del widths[self._esmm.ctcvr_task]
            widths[self._esmm.cvr_output] = 1
        # Tasks reading inputs of their own sit beside the architecture.
        self._own_inputs = {t.name: tuple(t.inputs) for t in self._tasks_config if t.inputs}
        self.architecture = architectures.build(
            model_config, [b for b in widths if b not in self._own_inputs])
        self.own_bottoms = {name: architectures.mlp(model_config.bottom_units, f"{name}_bottom",
                                                    model_config.dropout)
                            for name in self._own_inputs}
        self.towers = {b: heads.Tower(b, model_config.tower_units, w) for b, w in widths.items()}
        # Wide & Deep: a linear term of each branch's numeric and flag inputs.
        dense = set(self.encoder.dense_names)
        self._wide_inputs = {b: tuple(n for n in self._own_inputs.get(b) or self.encoder.dense_names
                                      if n in dense)
                             for b in widths} if model_config.wide else {}
        self.wide = {b: tf.keras.layers.Dense(widths[b], name=f"{b}_wide")
                     for b, names in self._wide_inputs.items() if names}
        self.objectives = {t.name: heads.Objective(t) for t in self._tasks_config}
        self.task_weighting = weighting.TaskWeighting(
            self._tasks_config, model_config.loss_weighting, model_config.dwa_temperature,
            name="task_weighting")
        self.loss_trackers = {"loss": tf.keras.metrics.Mean(name="loss")}
        for task in self._tasks_config:
            self.loss_trackers[task.name] = tf.keras.metrics.Mean(name=f"{task.name}_loss")

        self.retrieval = None
        self._user_side: Sequence[str] = ()
        self._item_side: Sequence[str] = ()
        if model_config.retrieval.enabled:
            self._user_side = registry.query_names()
            self._item_side = registry.candidate_names()
            self.retrieval = retrieval_lib.TwoTower(
                model_config.retrieval, self._user_side, self._item_side,
                vocab_sizes[registry.item_key], name="retrieval")
            self.loss_trackers["retrieval"] = tf.keras.metrics.Mean(name="retrieval_loss")

    def _num_classes(self, task) -> int:
        """A multiclass task's classes: configured, else its label's vocabulary + OOV."""
        if task.type != "multiclass" or task.num_classes:
            return task.num_classes
        feature = self._registry.by_name.get(task.label)
        owner = (feature.vocabulary or feature.name) if feature is not None else task.label
        if owner not in self._vocab_sizes:
            raise ValueError(f"task {task.name!r}: set num_classes; label {task.label!r} "
                             "has no vocabulary")
        return self._vocab_sizes[owner]

    def get_config(self) -> dict:
        # Plain data, so SavedModel export records the constructor arguments.
        return {"model_config": dataclasses.asdict(self._model_config),
                "vocab_sizes": dict(self._vocab_sizes),
                "global_batch_size": self._global_batch_size,
                "registry": self._registry.to_dict()}

    @classmethod
    def from_config(cls, config: dict) -> "MultiTaskModel":
        model_config = model_config_from_dict(config["model_config"])
        registry = F.Registry.from_dict(config["registry"])
        return cls(model_config, config["vocab_sizes"], config["global_batch_size"], registry)

    @property
    def task_names(self) -> Sequence[str]:
        return tuple(t.name for t in self._tasks_config)

    @property
    def prediction_names(self) -> Sequence[str]:
        """Every output: the tasks, then ESMM's CVR."""
        extra = (self._esmm.cvr_output,) if self._esmm is not None else ()
        return self.task_names + extra

    def _forward(self, features: Mapping[str, tf.Tensor], training: bool):
        parts = self.encoder.parts(features, training=training)
        hidden = dict(self.architecture(tf.concat(list(parts.values()), axis=1),
                                        training=training))
        for name, names in self._own_inputs.items():
            hidden[name] = self.own_bottoms[name](
                tf.concat([parts[n] for n in names], axis=1), training=training)
        raw = {b: tower(hidden[b], training=training) for b, tower in self.towers.items()}
        for b, linear in self.wide.items():
            term = linear(tf.concat([parts[n] for n in self._wide_inputs[b]], axis=1))
            raw[b] = raw[b] + (tf.squeeze(term, axis=1) if term.shape[-1] == 1 else term)
        if self._esmm is not None:
            raw[self._esmm.ctcvr_task] = heads.ctcvr_logit(raw[self._esmm.ctr_task],
                                                           raw[self._esmm.cvr_output])
        return raw, parts

    def call(self, features: Mapping[str, tf.Tensor], training: bool = False
             ) -> Dict[str, tf.Tensor]:
        """Maps a batch of transformed features to ``{output name: raw output}``."""
        return self._forward(features, training)[0]

    def predictions(self, features: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """``{output name: prediction}``: probabilities, values or class probabilities.

        ESMM's CTCVR is exactly ``pCTR * pCVR``.
        """
        raw = self(features, training=False)
        out = {t.name: self.objectives[t.name].predict(raw[t.name]) for t in self._tasks_config}
        if self._esmm is not None:
            out[self._esmm.cvr_output] = tf.sigmoid(raw[self._esmm.cvr_output])
            out[self._esmm.ctcvr_task] = out[self._esmm.ctr_task] * out[self._esmm.cvr_output]
        return out

    @property
    def user_features(self) -> Sequence[str]:
        """Inputs of the retrieval query tower (empty without retrieval)."""
        return tuple(self._user_side)

    @property
    def item_features(self) -> Sequence[str]:
        """Inputs of the retrieval candidate tower (empty without retrieval)."""
        return tuple(self._item_side)

    def _require_retrieval(self) -> None:
        if self.retrieval is None:
            raise ValueError("the model has no retrieval task (model.retrieval.enabled)")

    def user_embedding(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Retrieval query embeddings; needs only the user-side features."""
        self._require_retrieval()
        parts = self.encoder.parts(features, names=self._user_side)
        return self.retrieval.query_embedding(parts)

    def item_embedding(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Retrieval candidate embeddings; needs only the item-side features."""
        self._require_retrieval()
        parts = self.encoder.parts(features, names=self._item_side)
        return self.retrieval.candidate_embedding(parts)

    def compute_loss(self, inputs, training: bool = False) -> tf.Tensor:
        """Joint loss of the tasks for one replica's share of a global batch.

        Each task's per-example loss is summed and divided by the global batch
        size, so summing gradients over replicas yields the global mean; the
        task losses are combined by ``model.loss_weighting``
        (``trainer.weighting``). A conditioned task's examples outside its
        condition, and a task's held-out examples, weigh 0 (:func:`train_weight`).
        The ``loss`` tracker reports the fixed-weight sum.
        """
        features, labels = inputs
        raw, parts = self._forward(features, training)
        task_losses = {}
        weighted_per_example = 0.0
        for task in self._tasks_config:
            weight = train_weight(task, labels)
            per_example = self.objectives[task.name].per_example_loss(
                labels[task.name], raw[task.name], sample_weight=weight)
            task_losses[task.name] = tf.nn.compute_average_loss(
                per_example, global_batch_size=self._global_batch_size)
            weighted_per_example += task.weight * per_example
            self.loss_trackers[task.name].update_state(per_example, sample_weight=weight)
        total = self.task_weighting(task_losses)
        if self.retrieval is not None:
            config = self._model_config.retrieval
            positive = tf.cast(labels[config.positive_label], tf.float32)
            per_example = self.retrieval.per_example_loss(
                parts, positive, features[self._registry.item_key], training=training)
            total += config.weight * tf.nn.compute_average_loss(
                per_example, global_batch_size=self._global_batch_size)
            weighted_per_example += config.weight * per_example
            self.loss_trackers["retrieval"].update_state(per_example, sample_weight=positive)
        self.loss_trackers["loss"].update_state(weighted_per_example)
        return total

    @property
    def metrics(self):
        # Listed here so Keras resets them at every epoch.
        return list(self.loss_trackers.values())

    def _regularization_loss(self) -> tf.Tensor:
        """Embedding L2, dense L2 and soft sharing's penalty, scaled to count once per
        global batch."""
        terms = list(self.losses)
        if isinstance(self.architecture, architectures.SoftSharing):
            terms.append(self.architecture.penalty())
        if self._model_config.dense_l2:
            layers = ([self.architecture] + list(self.own_bottoms.values())
                      + list(self.towers.values()) + list(self.wide.values()))
            kernels = [v for layer in layers for v in layer.trainable_variables
                       if "kernel" in v.name]
            terms.append(self._model_config.dense_l2 * tf.add_n(
                [tf.reduce_sum(tf.square(k)) for k in kernels]))
        if not terms:
            return tf.constant(0.0)
        # Added on every replica, so scale it down to count once overall.
        return tf.nn.scale_regularization_loss(tf.add_n(terms))

    def train_step(self, inputs):
        """One optimizer step; reports the loss means, not per-replica partial sums."""
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True) + self._regularization_loss()
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, inputs):
        self.compute_loss(inputs, training=False)
        return {m.name: m.result() for m in self.metrics}


def build_model(model_config: ModelConfig, tft_output, global_batch_size: int,
                registry: F.Registry) -> MultiTaskModel:
    """Builds the model for a featurize output; call inside ``strategy.scope()``.

    The model is called once on dummy inputs so every variable is created
    here, under the caller's strategy scope, rather than at some later first
    call that may happen outside it.
    """
    model = MultiTaskModel(model_config, inputs_lib.vocab_sizes(tft_output, registry),
                           global_batch_size, registry)
    dummy = inputs_lib.dummy_features(registry)
    model(dummy)
    if model.retrieval is not None:
        # The towers are not on the ranking path, so they need their own call.
        model.user_embedding(dummy)
        model.item_embedding(dummy)
    return model
