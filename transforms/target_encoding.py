"""Target encoding: a categorical value's smoothed train rate of a label, out of fold.

For a DERIVED NUMERIC feature with ``target`` (a LABEL) and one
``derived_from`` value (an item id, category, brand, ...), the encoding of a
row is ``(s + a * p) / (n + a)``: ``s`` the label's positives and ``n`` the
rows with that value in the train split, leaving out the rows of the row's
own fold, ``a`` the feature's ``smoothing`` and ``p`` the label's train rate.
Folds are by user (a stable hash of the user id into ``folds``), so a train
row never sees its own label nor its user's other labels of that value.

The sums are TFT analyzers (label-weighted and unweighted vocabularies of
``total`` and ``fold`` keys), so the table is part of the transform graph:
eval, test and scoring rows are encoded by the same graph, each leaving out
its user's fold, exactly as the train rows the model learnt from.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft
# The per-key lookup TFT's own per-key scalers use: a table from a deferred
# "frequency key" vocabulary file, registered as an asset of the graph.
from tensorflow_transform import tf_utils

from shoprec.core import registry as F

# Values are fingerprinted to digits: a vocabulary file line is "frequency key",
# split on spaces, so a raw key holding a space would not read back.
_FINGERPRINT_BUCKETS = 2 ** 62


def _keys(feature: F.Feature, value: tf.Tensor, user: tf.Tensor):
    token = tf.strings.as_string(tf.strings.to_hash_bucket_fast(value, _FINGERPRINT_BUCKETS))
    fold = tf.strings.as_string(tf.strings.to_hash_bucket_fast(user, feature.folds))
    return tf.strings.join(["all", token], "_"), tf.strings.join([fold, token], "_")


def _sum_per_key(filename, keys: tf.Tensor) -> tf.Tensor:
    # An unseen key reads "0,0" (the lookup's default): its first number is 0.
    return tf_utils.apply_per_key_vocabulary(filename, keys)[:, 0]


def target_encoding(feature: F.Feature, inputs, registry: F.Registry) -> tf.Tensor:
    """The float32 [batch] out-of-fold encoding of ``feature`` (see module docstring).

    Args:
        feature: A registry target encoding (``registry.target_encodings()``).
        inputs: Raw tensors: the encoded value, the label and the user id.
        registry: The run's registry (for the user key).
    """
    value = inputs[feature.derived_from[0]]
    label = tf.cast(inputs[feature.target], tf.float32)
    total_key, fold_key = _keys(feature, value, inputs[registry.user_key])
    keys = tf.concat([total_key, fold_key], axis=0)
    labels = tf.concat([label, label], axis=0)
    positives = tft.vocabulary(keys, weights=labels, store_frequency=True,
                               vocab_filename=f"te_positives_{feature.name}",
                               name=f"te_positives_{feature.name}")
    rows = tft.vocabulary(keys, weights=tf.ones_like(labels), store_frequency=True,
                          vocab_filename=f"te_rows_{feature.name}",
                          name=f"te_rows_{feature.name}")
    rate = tf.cast(tft.mean(label, name=f"te_rate_{feature.name}"), tf.float32)
    s = _sum_per_key(positives, total_key) - _sum_per_key(positives, fold_key)
    n = _sum_per_key(rows, total_key) - _sum_per_key(rows, fold_key)
    a = float(feature.smoothing)
    return (s + a * rate) / (n + a)
