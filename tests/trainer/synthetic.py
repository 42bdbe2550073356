"""Synthetic raw examples and configs for trainer tests."""

import dataclasses

import numpy as np
import tensorflow as tf

from pipelines import examples
from shoprec.core import config as config_lib
from shoprec.core import generated_shop as shop
from shoprec.core import registry as F
from shoprec.core.model_config import ModelConfig

NUM_TRAIN = 192
NUM_EVAL = 64

# Small enough that a few training steps take seconds on 2 cores.
SMALL_MODEL = ModelConfig(bottom_units=(16,), tower_units=(8,))


def make_rows(n: int, seed: int) -> list:
    """Synthetic raw rows whose labels depend on the features, so a model can learn."""
    rng = np.random.default_rng(seed)
    width = shop.REGISTRY.embedding_feature().width
    rows = []
    for i in range(n):
        category = ["shoes", "hats", "socks"][rng.integers(3)]
        price = float(rng.uniform(1.0, 500.0))
        embedding = rng.normal(size=width).astype(np.float32).tolist()
        # Cheap shoes get clicked; clicked gold members convert.
        membership = ["gold", "none"][rng.integers(2)]
        click = int(category == "shoes" and price < 250.0 or rng.random() < 0.1)
        conversion = int(click and membership == "gold")
        rows.append({
            "user_id": f"u{rng.integers(20)}",
            "item_id": f"i{rng.integers(30)}",
            "user_age": float(rng.integers(18, 70)),
            "user_region": ["north", "south", "unknown"][rng.integers(3)],
            "user_membership": membership,
            "item_category": category,
            "item_brand": f"b{rng.integers(5)}",
            "item_colour": ["red", "blue"][rng.integers(2)],
            "item_price": price,
            "item_image_embedding": embedding,
            "item_has_image": int(rng.integers(2)),
            "click": click,
            "conversion": conversion,
            F.TIMESTAMP_KEY: 1_700_000_000 + i,
        })
    return rows


def write_raw(prefix: str, rows: list) -> None:
    """Writes rows as one gzip raw-example shard, as ingest would."""
    tf.io.gfile.makedirs(prefix.rsplit("/", 1)[0])
    names = shop.REGISTRY.example_names()
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(prefix + "-00000-of-00001.tfrecord.gz", options) as writer:
        for row in rows:
            writer.write(examples.encode(row, names, shop.REGISTRY))


def make_config(run_dir: str, **training) -> config_lib.Config:
    """A config over ``run_dir`` with the small test model and given training fields."""
    base = config_lib.Config(run_dir=run_dir)
    return dataclasses.replace(
        base,
        ingest=dataclasses.replace(base.ingest, num_shards=2),
        model=SMALL_MODEL,
        training=dataclasses.replace(base.training, **training))
