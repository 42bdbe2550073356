"""The multi-task ranking model, built from the feature registry and ModelConfig.

Inputs are the featurize job's transformed features: vocabulary indices are
embedded, numerics and flags are concatenated as they are, and the flat image
pixels go through a small CNN. A shared bottom MLP feeds one tower and logit
per task, and each task has its own TFRS ``Ranking`` loss.

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

from shoprec.config import ModelConfig, TaskConfig
from transforms import features as F


# Keys that sit beside task names in training logs and in evaluation results.
RESERVED_TASK_NAMES = frozenset({"loss", "examples"})


def vocab_sizes(tft_output) -> Dict[str, int]:
    """Embedding table sizes for ID / CATEGORICAL features: vocabulary + OOV buckets.

    Args:
        tft_output: A ``tft.TFTransformOutput`` over the featurize output.
    """
    return {
        f.name: tft_output.vocabulary_size_by_name(f.vocab_filename) + f.oov_buckets
        for f in F.of_kind(F.Kind.ID, F.Kind.CATEGORICAL)
    }


def _mlp(units: Sequence[int], name: str, dropout: float = 0.0) -> tf.keras.Sequential:
    layers = []
    for u in units:
        layers.append(tf.keras.layers.Dense(u, activation="relu"))
        if dropout:
            layers.append(tf.keras.layers.Dropout(dropout))
    return tf.keras.Sequential(layers, name=name)


class MultiTaskModel(tfrs.Model):
    """Shared-bottom multi-task ranker; ``call`` returns ``{task name: logit}``.

    Args:
        model_config: Layer sizes and the tasks with their loss weights.
        vocab_sizes: ``{feature name: vocabulary + OOV}`` for every ID /
            CATEGORICAL feature (see :func:`vocab_sizes`).
        global_batch_size: Examples per training step over all replicas; the
            per-example losses of each replica are divided by it.
    """

    def __init__(self, model_config: ModelConfig, vocab_sizes: Mapping[str, int],
                 global_batch_size: int, **kwargs):
        super().__init__(**kwargs)
        self._model_config = model_config
        self._vocab_sizes = dict(vocab_sizes)
        self._tasks_config = tuple(model_config.tasks)
        self._global_batch_size = int(global_batch_size)

        self._sparse = tuple(F.of_kind(F.Kind.ID, F.Kind.CATEGORICAL))
        self._dense = tuple(f.name for f in F.of_kind(F.Kind.NUMERIC, F.Kind.FLAG))
        self._image = F.image_feature()
        clashing = sorted(RESERVED_TASK_NAMES.intersection(self.task_names))
        if clashing:
            raise ValueError(f"task name(s) {clashing} are reserved")
        missing = [f.name for f in self._sparse if f.name not in vocab_sizes]
        if missing:
            raise ValueError(f"no vocabulary size for {missing}")
        self.embeddings = {
            f.name: tf.keras.layers.Embedding(
                vocab_sizes[f.name], f.embedding_dim, name=f"{f.name}_embedding",
                embeddings_regularizer=(tf.keras.regularizers.L2(model_config.embedding_l2)
                                        if model_config.embedding_l2 else None))
            for f in self._sparse
        }

        convs = []
        for filters in model_config.image_filters:
            convs += [tf.keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
                      tf.keras.layers.MaxPool2D(2)]
        self.image_tower = tf.keras.Sequential(
            [tf.keras.layers.Reshape(self._image.image_shape), *convs,
             tf.keras.layers.GlobalAveragePooling2D(),
             tf.keras.layers.Dense(model_config.image_embedding_dim, activation="relu")],
            name="image_tower")

        self.bottom = _mlp(model_config.bottom_units, "bottom", model_config.dropout)
        self.towers = {}
        self.ranking_tasks = {}
        self.loss_trackers = {"loss": tf.keras.metrics.Mean(name="loss")}
        for task in self._tasks_config:
            self.towers[task.name] = tf.keras.Sequential(
                [*_mlp(model_config.tower_units, f"{task.name}_mlp").layers,
                 tf.keras.layers.Dense(1, name=f"{task.name}_logit")],
                name=f"{task.name}_tower")
            self.ranking_tasks[task.name] = tfrs.tasks.Ranking(
                loss=tf.keras.losses.BinaryCrossentropy(
                    from_logits=True, reduction=tf.keras.losses.Reduction.NONE),
                name=f"{task.name}_task")
            self.loss_trackers[task.name] = tf.keras.metrics.Mean(name=f"{task.name}_loss")

    def get_config(self) -> dict:
        # Plain data, so SavedModel export records the constructor arguments.
        return {"model_config": dataclasses.asdict(self._model_config),
                "vocab_sizes": dict(self._vocab_sizes),
                "global_batch_size": self._global_batch_size}

    @classmethod
    def from_config(cls, config: dict) -> "MultiTaskModel":
        model_config = dict(config["model_config"])
        model_config["tasks"] = tuple(TaskConfig(**t) for t in model_config["tasks"])
        model_config = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v
                                      for k, v in model_config.items()})
        return cls(model_config, config["vocab_sizes"], config["global_batch_size"])

    @property
    def task_names(self) -> Sequence[str]:
        return tuple(t.name for t in self._tasks_config)

    def call(self, features: Mapping[str, tf.Tensor], training: bool = False
             ) -> Dict[str, tf.Tensor]:
        """Maps a batch of transformed features to ``{task name: logit [batch]}``."""
        parts = [self.embeddings[f.name](features[f.name]) for f in self._sparse]
        parts.append(tf.stack([tf.cast(features[n], tf.float32) for n in self._dense], axis=1))
        parts.append(self.image_tower(features[self._image.name], training=training))
        shared = self.bottom(tf.concat(parts, axis=1), training=training)
        return {name: tf.squeeze(self.towers[name](shared, training=training), axis=1)
                for name in self.task_names}

    def compute_loss(self, inputs, training: bool = False) -> tf.Tensor:
        """Weighted sum of task losses for one replica's share of a global batch.

        Each task's per-example loss is summed and divided by the global batch
        size, so summing gradients over replicas yields the global mean.
        """
        features, labels = inputs
        logits = self(features, training=training)
        total = 0.0
        weighted_per_example = 0.0
        for task in self._tasks_config:
            # Keras losses reduce over the last axis, so give each example a
            # length-1 axis to get one loss per example back.
            per_example = self.ranking_tasks[task.name](
                labels=tf.expand_dims(tf.cast(labels[task.name], tf.float32), -1),
                predictions=tf.expand_dims(logits[task.name], -1),
                compute_metrics=False)
            total += task.weight * tf.nn.compute_average_loss(
                per_example, global_batch_size=self._global_batch_size)
            weighted_per_example += task.weight * per_example
            self.loss_trackers[task.name].update_state(per_example)
        self.loss_trackers["loss"].update_state(weighted_per_example)
        return total

    @property
    def metrics(self):
        # Listed here so Keras resets them at every epoch.
        return list(self.loss_trackers.values())

    def _regularization_loss(self) -> tf.Tensor:
        if not self.losses:
            return tf.constant(0.0)
        # Added on every replica, so scale it down to count once overall.
        return tf.nn.scale_regularization_loss(tf.add_n(self.losses))

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


def dummy_features(batch_size: int = 1) -> Dict[str, tf.Tensor]:
    """All-zero transformed features, shaped as the featurize job writes them."""
    out = {}
    for f in F.inputs():
        if f.kind in (F.Kind.ID, F.Kind.CATEGORICAL):
            out[f.name] = tf.zeros([batch_size], tf.int64)
        elif f.kind == F.Kind.IMAGE:
            out[f.name] = tf.zeros([batch_size, f.image_bytes], tf.float32)
        else:
            out[f.name] = tf.zeros([batch_size], tf.float32)
    return out


def build_model(model_config: ModelConfig, tft_output, global_batch_size: int) -> MultiTaskModel:
    """Builds the model for a featurize output; call inside ``strategy.scope()``.

    The model is called once on dummy inputs so every variable is created
    here, under the caller's strategy scope, rather than at some later first
    call that may happen outside it.
    """
    model = MultiTaskModel(model_config, vocab_sizes(tft_output), global_batch_size)
    model(dummy_features())
    return model
