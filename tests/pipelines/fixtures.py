"""Files the ingest tests need from earlier stages, written as those stages write them."""

import csv
import dataclasses
import os

import tensorflow as tf
import yaml

from pipelines import examples
from shoprec.core import config as config_lib
from shoprec.core import generated_shop
from shoprec.core import registry as F
from shoprec.io.outputs import write_success

def history_registry(*extra: F.Feature) -> F.Registry:
    """The generated shop's registry plus short history lists, a click count and an item match."""
    S, K = F.Source, F.Kind
    return F.Registry(generated_shop.REGISTRY.features + (
        F.Feature("hist_items", S.HISTORY, K.HISTORY, history_of="item_id", max_length=3,
                  vocabulary="item_id"),
        F.Feature("hist_categories", S.HISTORY, K.HISTORY, history_of="item_category",
                  max_length=2, vocabulary="item_category"),
        F.Feature("hist_clicks", S.HISTORY, K.NUMERIC, event_type="click"),
        F.Feature("hist_item_matches", S.HISTORY, K.NUMERIC, history_of="item_id"),
    ) + extra)


# A shop small enough to generate and ingest in seconds.
TINY_SHOP = {"generate": {"num_users": 20, "num_items": 8, "days": 3, "sessions_per_user": 2.0},
             "ingest": {"eval_start": "2026-11-03T00:00:00Z"}}


def write_embeddings(prefix, rows):
    """An embed-stage table: one gzip shard of (item_id, embedding, has_image) rows.

    ``prefix`` is ``<run>/embed/items/embeddings``; the embed stage's success
    marker is written in ``<run>/embed``, as a finished embed stage leaves it.
    """
    tf.io.gfile.makedirs(os.path.dirname(prefix))
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(prefix + "-00000-of-00001.tfrecord.gz", options) as writer:
        for item_id, vector, has_image in rows:
            writer.write(examples.encode_embedding(
                {"item_id": item_id, "embedding": vector, "has_image": has_image}))
    # Last, listing the shard: what the stage runner checks before ingest reads it.
    write_success(os.path.dirname(os.path.dirname(prefix)), "embed")


def ingested_shop(root):
    """A tiny generated shop under ``root``, ingested; returns its config.

    The embed stage's table is written as a finished ``shoprec embed`` leaves
    it (every item, no photo), then the real ingest job runs on the local runner.
    """
    from pipelines import generate, ingest

    path = os.path.join(str(root), "config.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(TINY_SHOP, f)
    config = config_lib.load(path, run_dir=os.path.join(str(root), "run"))
    generate.run(config)
    with open(config.input_path(config.inputs.items)) as f:
        ids = [row["item_id"] for row in csv.DictReader(f)]
    write_embeddings(config.layout.item_embeddings, [(i, [0.0] * 32, 0) for i in ids])
    ingest.run(config)
    return config


def broken_shop(root):
    """A tiny generated shop with 3% broken and 3% duplicated event rows; returns its config.

    Half its items have a photo embedding, the rest as a failed photo leaves them; the
    quality gate is opened, far more rows being broken than a real log may have.
    """
    from pipelines import generate

    shop = dict(TINY_SHOP, generate=dict(TINY_SHOP["generate"], num_users=40,
                                         corrupt_fraction=0.03, duplicate_fraction=0.03))
    path = os.path.join(str(root), "config.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(shop, f)
    config = config_lib.load(path, run_dir=os.path.join(str(root), "run"))
    config = dataclasses.replace(config, dataset=dataclasses.replace(
        config.data, quality=dataclasses.replace(config.data.quality, max_bad_fraction=0.5)))
    generate.run(config)
    with open(config.input_path(config.inputs.items)) as f:
        ids = [row["item_id"] for row in csv.DictReader(f)]
    write_embeddings(config.layout.item_embeddings,
                     [(i, [0.25 * (n % 4)] * 32, n % 2) for n, i in enumerate(ids)])
    return config
