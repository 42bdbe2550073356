"""The one ``preprocessing_fn``: raw registry features in, model features out.

Pure and module-level so TFT can trace it and tests can call it on its own.
Everything it does is decided by the feature registry; the analysers run on the
train split only (see ``transforms.featurize``), and the resulting graph is
attached to the exported model, so training and scoring cannot drift apart.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from transforms import features as F


def _vocabulary(feature: F.Feature, x: tf.Tensor) -> tf.Tensor:
    return tft.compute_and_apply_vocabulary(
        x,
        top_k=feature.top_k,
        num_oov_buckets=feature.oov_buckets,
        vocab_filename=feature.vocab_filename,
        name=f"vocab_{feature.name}",
    )


def _numeric(feature: F.Feature, x: tf.Tensor) -> tf.Tensor:
    x = tf.cast(x, tf.float32)
    if feature.log:
        # Validated non-negative at ingest; the clamp only keeps log1p finite.
        x = tf.math.log1p(tf.maximum(x, 0.0))
    return tft.scale_to_z_score(x, name=f"zscore_{feature.name}")


def _image(feature: F.Feature, x: tf.Tensor) -> tf.Tensor:
    # Ingest stores fixed-size uint8 pixels, so decode_raw yields one row per
    # example; the model reshapes the flat vector to (H, W, C).
    pixels = tf.io.decode_raw(x, tf.uint8)
    pixels = tf.reshape(pixels, [-1, feature.image_bytes])
    return tf.cast(pixels, tf.float32) / 255.0


def preprocessing_fn(inputs):
    """Featurizes a batch of raw examples.

    Args:
        inputs: Dict of dense [batch] tensors keyed by registry feature name, as
            parsed with ``features.raw_feature_spec()``. Labels may be absent
            (serving); their outputs are then pruned by TFT.

    Returns:
        Dict keyed by registry name: int64 vocabulary indices for ids and
        categoricals, float32 z-scores for numerics, float32 [batch, H*W*C]
        pixels in [0, 1] for the image, float32 0/1 for flags and labels.
    """
    outputs = {}
    for feature in F.FEATURES:
        if feature.name not in inputs:
            continue
        x = inputs[feature.name]
        if feature.kind in (F.Kind.ID, F.Kind.CATEGORICAL):
            outputs[feature.name] = _vocabulary(feature, x)
        elif feature.kind == F.Kind.NUMERIC:
            outputs[feature.name] = _numeric(feature, x)
        elif feature.kind == F.Kind.IMAGE:
            outputs[feature.name] = _image(feature, x)
        else:
            outputs[feature.name] = tf.cast(x, tf.float32)
    return outputs
