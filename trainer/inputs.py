"""Transformed features → one input vector, as the registry says.

Vocabulary indices are embedded (a feature that shares another's vocabulary
also shares its embedding table: history item ids look up ``item_id``'s rows),
hashed, crossed and bucketized indices are embedded in tables the registry
sizes, history lists and text tokens are mean-pooled over their non-padding
entries, numerics and flags are concatenated as they are, and the item photo
embedding (the image encoder's output, joined per item by ingest) goes through
a regularised linear projection. Every architecture then starts from this one
vector.
"""

from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional, Tuple

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf

from shoprec.core import registry as F
from shoprec.core.model_config import ModelConfig

_EMBEDDED = (F.Kind.ID, F.Kind.CATEGORICAL, F.Kind.HISTORY, F.Kind.TEXT)
# Embedded too, in tables of ``Feature.index_size`` rows: no vocabulary to size them.
_INDEXED = (F.Kind.HASHED, F.Kind.CROSS, F.Kind.BUCKETIZED)
# Padded [batch, max_length] indices, mean-pooled over entries >= 0.
_POOLED = (F.Kind.HISTORY, F.Kind.TEXT)


def vocabulary_owners(registry: F.Registry) -> Tuple[F.Feature, ...]:
    """The embedded features with a vocabulary (and embedding table) of their own."""
    return tuple(f for f in registry.of_kind(*_EMBEDDED) if f.vocabulary is None)


def vocab_sizes(tft_output, registry: F.Registry) -> Dict[str, int]:
    """Embedding table sizes: vocabulary + OOV buckets, per feature owning a vocabulary.

    Args:
        tft_output: A ``tft.TFTransformOutput`` over the featurize output.
        registry: The run's feature registry.
    """
    return {f.name: tft_output.vocabulary_size_by_name(f.vocab_filename) + f.oov_buckets
            for f in vocabulary_owners(registry)}


def dummy_features(registry: F.Registry, batch_size: int = 1) -> Dict[str, tf.Tensor]:
    """All-zero transformed features (empty histories), shaped as featurize writes them."""
    out = {}
    for f in registry.inputs():
        if f.kind in (F.Kind.ID, F.Kind.CATEGORICAL) + _INDEXED:
            out[f.name] = tf.zeros([batch_size], tf.int64)
        elif f.kind in _POOLED:
            out[f.name] = -tf.ones([batch_size, f.max_length], tf.int64)
        elif f.kind == F.Kind.EMBEDDING:
            out[f.name] = tf.zeros([batch_size, f.width], tf.float32)
        else:
            out[f.name] = tf.zeros([batch_size], tf.float32)
    return out


def _masked_mean(embedded: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    """Mean of [batch, N, d] rows where indices >= 0; zeros for an empty history or text."""
    mask = tf.cast(indices >= 0, embedded.dtype)[..., None]
    total = tf.reduce_sum(embedded * mask, axis=1)
    return total / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)


class FeatureEncoder(tf.keras.layers.Layer):
    """Maps a batch of transformed features to ``[batch, d]``.

    Args:
        registry: The run's feature registry (inputs only are read).
        vocab_sizes: ``{feature: vocabulary + OOV}`` per feature owning a
            vocabulary (see :func:`vocab_sizes`); hashed, crossed and
            bucketized tables are sized by the registry.
        model_config: Embedding regularisation.
    """

    def __init__(self, registry: F.Registry, vocab_sizes: Mapping[str, int],
                 model_config: ModelConfig, **kwargs):
        super().__init__(**kwargs)
        # A NEXT target is categorical too, but is predicted, never read.
        self._embedded = tuple(f for f in registry.of_kind(*_EMBEDDED, *_INDEXED)
                               if not f.is_target)
        self._dense = tuple(f.name for f in registry.of_kind(F.Kind.NUMERIC, F.Kind.FLAG))
        owners = [f for f in self._embedded if f.vocabulary is None]
        sizes = dict(vocab_sizes, **{f.name: f.index_size for f in registry.of_kind(*_INDEXED)})
        missing = [f.name for f in owners if f.name not in sizes]
        if missing:
            raise ValueError(f"no vocabulary size for {missing}")
        regularizer = (tf.keras.regularizers.L2(model_config.embedding_l2)
                       if model_config.embedding_l2 else None)
        # Training replaces an ID feature's index by one of its OOV buckets
        # (rows vocabulary .. vocabulary + oov_buckets - 1) at this rate.
        self._id_dropout = {
            f.name: (sizes[f.name] - f.oov_buckets, f.oov_buckets) for f in owners
            if f.kind == F.Kind.ID and f.oov_buckets > 0 and model_config.id_dropout > 0}
        self._id_dropout_rate = model_config.id_dropout
        self.embeddings = {
            f.name: tf.keras.layers.Embedding(
                sizes[f.name], f.embedding_dim, name=f"{f.name}_embedding",
                embeddings_regularizer=regularizer)
            for f in owners
        }
        # A photo embedding tells items apart as well as their id does: projected
        # under the same L2 as the id embeddings, or it undoes their regularisation
        # (measured: without, eval AUC fell below the photo-blind model's).
        self.projections = {
            f.name: tf.keras.layers.Dense(f.embedding_dim, name=f"{f.name}_projection",
                                          kernel_regularizer=regularizer)
            for f in registry.of_kind(F.Kind.EMBEDDING)
        }
        # The model reads it through parts(), not __call__, so Keras would never
        # mark it built (and would skip it when serializing); nothing is left to build.
        self.built = True

    @property
    def dense_names(self) -> Tuple[str, ...]:
        """The numeric and flag inputs, passed through as they are (what a wide term reads)."""
        return self._dense

    def parts(self, features: Mapping[str, tf.Tensor], training: bool = False,
              names: Optional[Iterable[str]] = None) -> Dict[str, tf.Tensor]:
        """Each input's encoding, ``{feature name: [batch, d_f]}``, in registry order.

        Args:
            features: Transformed features; only those encoded need be present.
            training: In training, ``model.id_dropout`` of the examples read
                each ID feature as one of its OOV buckets.
            names: Encode only these features (e.g. one retrieval tower's
                side); None encodes every input.
        """
        wanted = None if names is None else set(names)
        out: Dict[str, tf.Tensor] = {}
        for f in self._embedded:
            if wanted is not None and f.name not in wanted:
                continue
            table = self.embeddings[f.vocabulary or f.name]
            x = features[f.name]
            if f.kind in _POOLED:
                # Padding (-1) looks up row 0, then the mask drops it.
                out[f.name] = _masked_mean(table(tf.maximum(x, 0)), x)
            else:
                if training and f.name in self._id_dropout:
                    x = self._drop_ids(x, *self._id_dropout[f.name])
                out[f.name] = table(x)
        for n in self._dense:
            if wanted is None or n in wanted:
                out[n] = tf.cast(features[n], tf.float32)[:, None]
        for n, projection in self.projections.items():
            if wanted is None or n in wanted:
                out[n] = projection(features[n])
        return out

    def _drop_ids(self, indices: tf.Tensor, vocabulary: int, oov_buckets: int) -> tf.Tensor:
        """``indices`` with a random ``id_dropout`` share moved to a random OOV bucket."""
        indices = tf.cast(indices, tf.int64)
        shape = tf.shape(indices)
        drop = tf.random.uniform(shape) < self._id_dropout_rate
        oov = vocabulary + tf.random.uniform(shape, 0, oov_buckets, dtype=tf.int64)
        return tf.where(drop, oov, indices)

    def call(self, features: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return tf.concat(list(self.parts(features, training).values()), axis=1)
