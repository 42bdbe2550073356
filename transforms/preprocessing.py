"""The one ``preprocessing_fn``: raw registry features in, model features out.

Pure and module-level so TFT can trace it and tests can call it on its own.
Everything it does is decided by the feature registry; the analysers run on the
train split only (see ``pipelines.featurize``), and the resulting graph is
attached to the exported model, so training and scoring cannot drift apart.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from shoprec.core import registry as F
from transforms.holdout import held_out
from transforms.target_encoding import target_encoding


def _vocabulary(feature: F.Feature, x):
    """The deferred vocabulary file of an ID / CATEGORICAL feature with its own vocabulary."""
    return tft.vocabulary(x, top_k=feature.top_k, vocab_filename=feature.vocab_filename,
                          name=f"vocab_{feature.name}")


def _indices(feature: F.Feature, x, vocabulary, oov_buckets: int):
    return tft.apply_vocabulary(x, vocabulary, num_oov_buckets=oov_buckets,
                                name=f"apply_vocab_{feature.name}")


def _pad_history(feature: F.Feature, indices: tf.SparseTensor) -> tf.Tensor:
    """Sparse [batch, <=N] indices → dense [batch, N], padded with -1.

    For history lists and text tokens alike (N is ``max_length``).

    A fixed width keeps the transformed schema FixedLen, which every
    distribution strategy and the serving signature handle alike.
    """
    n = feature.max_length
    dense = tf.sparse.to_dense(indices, default_value=-1)[:, :n]
    dense = tf.pad(dense, [[0, 0], [0, n - tf.shape(dense)[1]]], constant_values=-1)
    return tf.reshape(dense, [-1, n])


def _numeric(feature: F.Feature, x: tf.Tensor) -> tf.Tensor:
    x = tf.cast(x, tf.float32)
    if feature.log:
        # Validated non-negative at ingest; the clamp only keeps log1p finite.
        x = tf.math.log1p(tf.maximum(x, 0.0))
    return tft.scale_to_z_score(x, name=f"zscore_{feature.name}")


def _embedding(feature: F.Feature, x: tf.Tensor) -> tf.Tensor:
    # Encoder outputs (ReLU activations) differ in scale per dimension, so each
    # is standardised on its own; a dimension constant on train maps to 0.
    return tft.scale_to_z_score(tf.cast(x, tf.float32), elementwise=True,
                                name=f"zscore_{feature.name}")


def _hashed(feature: F.Feature, x: tf.Tensor) -> tf.Tensor:
    # Fingerprint64 of the string: stable across runs and processes, no analyser.
    return tf.strings.to_hash_bucket_fast(x, feature.hash_buckets, name=f"hash_{feature.name}")


def _text(feature: F.Feature, x: tf.Tensor) -> tf.Tensor:
    """Text → [batch, max_length] token indices (top_k vocabulary, then OOV), -1 padded.

    Lower-cased (UTF-8) and split on runs of anything but letters and digits,
    so punctuation never forms a token and blank text has none.
    """
    lowered = tf.strings.lower(x, encoding="utf-8")
    words = tf.strings.regex_replace(lowered, r"[^\pL\pN]+", " ")
    tokens = tf.strings.split(words).to_sparse()
    indices = tft.compute_and_apply_vocabulary(
        tokens, top_k=feature.top_k, num_oov_buckets=feature.oov_buckets,
        vocab_filename=feature.vocab_filename, name=f"text_{feature.name}")
    return _pad_history(feature, indices)


def _derived(feature: F.Feature, inputs) -> tf.Tensor:
    """A cross's or a bucketized numeric's int64 index, or a hold-out's float 0/1 mask,
    from its inputs' raw values."""
    if feature.kind == F.Kind.HOLDOUT:
        return held_out(inputs[feature.derived_from[0]], feature.fraction)
    if feature.kind == F.Kind.CROSS:
        joined = tf.strings.join([inputs[n] for n in feature.derived_from],
                                 separator=F.CROSS_SEPARATOR)
        return _hashed(feature, joined)
    # Raw units (no log1p), so explicit boundaries read as the data set's values.
    x = tf.cast(inputs[feature.derived_from[0]], tf.float32)
    if feature.boundaries:
        return tft.apply_buckets(x, [list(feature.boundaries)], name=f"buckets_{feature.name}")
    return tft.bucketize(x, feature.num_buckets, name=f"quantiles_{feature.name}")


def preprocessing_fn(inputs, registry: F.Registry):
    """Featurizes a batch of raw examples.

    TFT calls it with the inputs only: bind the registry first, e.g.
    ``functools.partial(preprocessing_fn, registry=config.registry)``.

    Args:
        inputs: Dict of tensors keyed by registry feature name, as parsed with
            ``registry.raw_feature_spec()``: dense [batch], sparse for
            history lists. Labels may be absent (serving); their outputs are
            then pruned by TFT.
        registry: The run's feature registry.

    Returns:
        Dict keyed by registry name: int64 vocabulary indices for ids and
        categoricals, int64 [batch, N] indices padded with -1 for history
        lists (in the vocabulary they share) and text tokens, int64 bucket
        indices for hashed, crossed and bucketized features, float32 z-scores
        for numerics and target encodings, float32 [batch, width] per-dimension z-scores for the
        item embedding,
        float32 0/1 for flags, labels and hold-out masks.
    """
    vocabularies = {}
    for feature in registry.of_kind(F.Kind.ID, F.Kind.CATEGORICAL, F.Kind.HISTORY):
        if feature.vocabulary is None and feature.name in inputs:
            vocabularies[feature.name] = _vocabulary(feature, inputs[feature.name])
    outputs = {}
    for feature in registry.features:
        if feature.source == F.Source.DERIVED:
            needed = feature.derived_from + ((feature.target, registry.user_key)
                                             if feature.target else ())
            if all(n in inputs for n in needed):
                outputs[feature.name] = (
                    tft.scale_to_z_score(target_encoding(feature, inputs, registry),
                                         name=f"zscore_{feature.name}")
                    if feature.target else _derived(feature, inputs))
            continue
        if feature.name not in inputs:
            continue
        x = inputs[feature.name]
        if feature.kind in (F.Kind.ID, F.Kind.CATEGORICAL, F.Kind.HISTORY):
            owner = registry.by_name[feature.vocabulary or feature.name]
            indices = _indices(feature, x, vocabularies[owner.name], owner.oov_buckets)
            outputs[feature.name] = (_pad_history(feature, indices)
                                     if feature.kind == F.Kind.HISTORY else indices)
        elif feature.kind == F.Kind.HASHED:
            outputs[feature.name] = _hashed(feature, x)
        elif feature.kind == F.Kind.TEXT:
            outputs[feature.name] = _text(feature, x)
        elif feature.kind == F.Kind.NUMERIC:
            outputs[feature.name] = _numeric(feature, x)
        elif feature.kind == F.Kind.EMBEDDING:
            outputs[feature.name] = _embedding(feature, x)
        else:
            outputs[feature.name] = tf.cast(x, tf.float32)
    return outputs
