"""Which keys (items, users) a task holds out: a fixed hash of the raw key.

One function for every place that needs the split, so they cannot disagree:
``preprocessing_fn`` (the transformed HOLDOUT column the trainer masks the
task's loss with and restricts its evaluation to), the embed stage (the image
encoder must not learn held-out items' attributes) and the baselines read
from raw examples (``trainer.baselines``).

A key is held out when its Fingerprint64 bucket among ``BUCKETS`` is below
``fraction * BUCKETS``: stable across runs, processes and machines, needs no
analyser, and the held-out set of a smaller fraction lies inside that of a
larger one (the same key space split twice is nested, never crossed).
"""

from __future__ import annotations

import tensorflow as tf

BUCKETS = 10_000


def held_out(keys, fraction: float) -> tf.Tensor:
    """1.0 where a raw string key is held out, else 0.0 (float32, ``keys``' shape).

    Args:
        keys: string tensor (or anything ``tf.convert_to_tensor`` takes) of raw keys.
        fraction: Share of the key space held out, in (0, 1).
    """
    buckets = tf.strings.to_hash_bucket_fast(tf.convert_to_tensor(keys, tf.string), BUCKETS)
    return tf.cast(buckets < int(round(fraction * BUCKETS)), tf.float32)
