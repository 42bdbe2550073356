"""Two-tower retrieval, trained jointly with the ranking tasks.

A query (user) tower and a candidate (item) tower map their side's encoded
features, which they share with the ranking model, to unit-norm embeddings.
The loss is TFRS's in-batch softmax (``tfrs.tasks.Retrieval``): every
positive impression (``positive_label`` = 1) is a query whose own item must
outscore the other items of its replica's batch. Impressions that are not
positive still serve as candidates, with zero weight as queries.

Optional sampling-bias correction subtracts ``log q(item)`` from each logit,
``q`` being the item's share of training impressions: popular items appear
as in-batch negatives more often than uniform sampling would have them
(Yi et al., RecSys 2019). Accidental hits (the query's own item appearing
again as a "negative") are masked out.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf
import tensorflow_recommenders as tfrs

from shoprec.core.model_config import RetrievalConfig
from trainer.architectures import mlp


class TwoTower(tf.keras.layers.Layer):
    """Query and candidate towers and the in-batch softmax task.

    Args:
        config: Retrieval settings.
        query_features: Names of the encoded features the query tower reads.
        candidate_features: Names of the encoded features the candidate tower reads.
        num_candidates: Size of the candidate id space (item vocabulary + OOV),
            for the sampling-probability table.
    """

    def __init__(self, config: RetrievalConfig, query_features: Sequence[str],
                 candidate_features: Sequence[str], num_candidates: int, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.query_features = tuple(query_features)
        self.candidate_features = tuple(candidate_features)
        self.query_tower = self._tower("query")
        self.candidate_tower = self._tower("candidate")
        self.task = tfrs.tasks.Retrieval(
            loss=tf.keras.losses.CategoricalCrossentropy(
                from_logits=True, reduction=tf.keras.losses.Reduction.NONE),
            temperature=config.temperature, remove_accidental_hits=True,
            name="retrieval_task")
        # Part of the checkpoint, so a restored or exported model keeps the
        # correction it was trained with; uniform until set_candidate_probabilities.
        self.candidate_probability = self.add_weight(
            name="candidate_probability", shape=[int(num_candidates)], trainable=False,
            initializer=tf.keras.initializers.Constant(1.0 / max(int(num_candidates), 1)))
        # Used through its methods rather than __call__, so Keras would never
        # mark it built (and would skip it when serializing); nothing is left to build.
        self.built = True

    def _tower(self, side: str) -> tf.keras.Sequential:
        return tf.keras.Sequential(
            [*mlp(self.config.tower_units, f"{side}_mlp").layers,
             tf.keras.layers.Dense(self.config.embedding_dim, name=f"{side}_embedding")],
            name=f"{side}_tower")

    def set_candidate_probabilities(self, probabilities) -> None:
        """Sets ``q(item)`` by candidate id (see :func:`candidate_probabilities`)."""
        self.candidate_probability.assign(np.asarray(probabilities, np.float32))

    @staticmethod
    def _side(parts: Mapping[str, tf.Tensor], names: Sequence[str]) -> tf.Tensor:
        missing = [n for n in names if n not in parts]
        if missing:
            raise KeyError(f"retrieval tower needs encoded feature(s) {missing}")
        return tf.concat([parts[n] for n in names], axis=1)

    def query_embedding(self, parts: Mapping[str, tf.Tensor], training: bool = False
                        ) -> tf.Tensor:
        """Unit-norm ``[batch, embedding_dim]`` query embeddings."""
        out = self.query_tower(self._side(parts, self.query_features), training=training)
        return tf.math.l2_normalize(out, axis=-1)

    def candidate_embedding(self, parts: Mapping[str, tf.Tensor], training: bool = False
                            ) -> tf.Tensor:
        """Unit-norm ``[batch, embedding_dim]`` candidate embeddings."""
        out = self.candidate_tower(self._side(parts, self.candidate_features),
                                   training=training)
        return tf.math.l2_normalize(out, axis=-1)

    def per_example_loss(self, parts: Mapping[str, tf.Tensor], positive: tf.Tensor,
                         candidate_ids: tf.Tensor, training: bool = False) -> tf.Tensor:
        """In-batch softmax loss of each example as a query, ``[batch]`` (0 if not positive).

        Args:
            parts: Encoded features of one replica's batch.
            positive: ``[batch]`` 0/1: which rows are positive (query, item) pairs.
            candidate_ids: ``[batch]`` item ids, for accidental-hit removal and
                the sampling-probability lookup.
            training: Forwarded to the towers.
        """
        queries = self.query_embedding(parts, training)
        candidates = self.candidate_embedding(parts, training)
        ids = tf.cast(candidate_ids, tf.int64)
        probability = None
        if self.config.sampling_bias_correction:
            probability = tf.gather(self.candidate_probability, ids)
        return self.task(queries, candidates, sample_weight=tf.cast(positive, tf.float32),
                         candidate_sampling_probability=probability, candidate_ids=ids,
                         compute_metrics=False, compute_batch_metrics=False)


def candidate_probabilities(ids, num_candidates: int, batch_size: int) -> np.ndarray:
    """Probability that each candidate id appears in a training batch.

    ``q = min(1, batch_size * share)``, the share of training impressions
    (``ids``) add-one smoothed so ``log q`` stays finite for ids never
    impressed. Scaling by the batch keeps ``q`` above the 1e-6 floor TFRS
    clips to, even for rare items of a large catalogue.
    """
    counts = np.bincount(np.asarray(ids, np.int64).ravel(), minlength=num_candidates)
    counts = counts[:num_candidates].astype(np.float64) + 1.0
    return np.minimum(1.0, batch_size * counts / counts.sum()).astype(np.float32)


def catalogue(item_ids, item_embeddings):
    """Distinct items and their embeddings, first occurrence kept, sorted by id.

    Returns:
        (ids ``[m]``, embeddings ``[m, d]``).
    """
    item_ids = np.asarray(item_ids).ravel()
    ids, first = np.unique(item_ids, return_index=True)
    return ids, np.asarray(item_embeddings)[first]
