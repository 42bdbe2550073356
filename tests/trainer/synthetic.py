"""Synthetic raw examples and configs for trainer tests."""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from pipelines import examples
from shoprec.core import config as config_lib
from shoprec.core import generated_shop as shop
from shoprec.core import registry as F
from shoprec.core.layout import Layout
from shoprec.core.model_config import ModelConfig
from shoprec.io.outputs import write_success

NUM_TRAIN = 192
NUM_EVAL = 64
# Fresh rows the learning checks score through the exported model: the 64 eval
# rows hold 13 clicks and 6 conversions, too few for an AUC to tell a model
# that learned from one that did not (null sd 0.09 and 0.12); over 2000 rows
# the sd of an AUC near 0.75 is about 0.012.
NUM_HOLDOUT = 2000
HOLDOUT_SEED = 11

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


def planted_probabilities(rows: list) -> dict:
    """The true P(click) and P(conversion) of ``make_rows`` rows: the Bayes-optimal scores.

    ``make_rows`` clicks every cheap shoe (price < 250) and anything else with
    probability 0.1; a click by a gold member converts. So P(click | x) is 1 on
    the planted cell and 0.1 off it, and P(conversion | x) is that times
    [gold]. Their AUCs are the best any model can reach (the Bayes AUC):

    - click: the cell holds 1/3 * 249/499 = 0.1663 of rows, so a positive comes
      from it with probability 0.1663 / (0.1663 + 0.8337 * 0.1) = 0.666 and then
      outranks every negative; the rest tie with every negative (all at 0.1):
      AUC = 0.666 + 0.334 / 2 = 0.833.
    - conversion: positives as above (0.666 at 1, 0.334 at 0.1); of negatives,
      0.571 are non-gold (score 0) and 0.429 gold at 0.1: AUC = 0.666 + 0.334 *
      (0.571 + 0.429 / 2) = 0.928.

    Args:
        rows: Rows from ``make_rows``.

    Returns:
        {'click': [n], 'conversion': [n]} float64 probabilities.
    """
    cell = np.array([r["item_category"] == "shoes" and r["item_price"] < 250.0 for r in rows])
    gold = np.array([r["user_membership"] == "gold" for r in rows])
    p_click = np.where(cell, 1.0, 0.1)
    return {"click": p_click, "conversion": p_click * gold}


def learned_fraction(model_dir: str) -> dict:
    """Per task, how much of the Bayes AUC's lift over chance an exported model reaches.

    Scores ``NUM_HOLDOUT`` fresh ``make_rows`` rows through the model's serving
    signature: (model AUC - 0.5) / (Bayes AUC - 0.5), the Bayes AUC taken on
    the same rows. 1 is the best possible; a model trained on shuffled labels
    scores 0 up to noise (sd about 0.045: the null AUC sd of 488 clicks or 244
    conversions among 2000 rows, 0.015 and 0.020, over the lifts 0.33 and
    0.43); one whose weights never moved scores whatever its initialisation
    happens to rank.

    Args:
        model_dir: A SavedModel written by ``trainer.export``.

    Returns:
        {'click': fraction, 'conversion': fraction}.
    """
    from trainer import export
    from trainer.metrics import auc

    rows = make_rows(NUM_HOLDOUT, seed=HOLDOUT_SEED)
    names = shop.REGISTRY.example_names(include_labels=False)
    raw = tf.constant([examples.encode(r, names, shop.REGISTRY) for r in rows])
    served = tf.saved_model.load(model_dir).signatures[export.SIGNATURE](examples=raw)
    bayes = planted_probabilities(rows)
    out = {}
    for task in ("click", "conversion"):
        labels = np.array([r[task] for r in rows])
        out[task] = ((auc(labels, served[f"p_{task}"].numpy()) - 0.5)
                     / (auc(labels, bayes[task]) - 0.5))
    return out


def served_eval_metrics(model_dir: str) -> dict:
    """Per task, ``trainer.evaluation`` metrics of an exported model on the raw eval rows.

    The rows are ``make_rows(NUM_EVAL, seed=2)``, what the ``featurized_dir``
    fixture featurized as its eval split, scored through the serving signature.

    Args:
        model_dir: A SavedModel written by ``trainer.export``.

    Returns:
        {'click': metrics, 'conversion': metrics}.
    """
    from trainer import evaluation, export

    rows = make_rows(NUM_EVAL, seed=2)
    names = shop.REGISTRY.example_names(include_labels=False)
    raw = tf.constant([examples.encode(r, names, shop.REGISTRY) for r in rows])
    served = tf.saved_model.load(model_dir).signatures[export.SIGNATURE](examples=raw)
    users = np.unique([r["user_id"] for r in rows], return_inverse=True)[1]
    return {task: evaluation.binary_metrics(np.array([r[task] for r in rows]),
                                            served[f"p_{task}"].numpy(), users)
            for task in ("click", "conversion")}


def loss_on(model, batch, strategy=None):
    """The model's total loss on one fixed batch (summed over replicas under ``strategy``)."""
    if strategy is None:
        return float(model.compute_loss(batch).numpy())
    replicas = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch))
    per_replica = strategy.run(model.compute_loss, args=(next(iter(replicas)),))
    return float(strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None).numpy())


def model_and_first_batch(featurized_dir: str, model_config: ModelConfig, batch_size: int = 16):
    """A fresh model for ``model_config`` and the first train batch of the featurized fixture.

    Returns:
        (model, features, labels); the batch is in file order (no shuffle).
    """
    import tensorflow_transform as tft

    from trainer import data, model as model_lib

    layout = Layout(featurized_dir)
    tft_output = tft.TFTransformOutput(layout.transform_dir)
    dataset = data.make_dataset(layout.transformed("train") + "-*",
                                tft_output.transformed_feature_spec(), model_config.tasks,
                                batch_size, training=False, registry=shop.REGISTRY)
    model = model_lib.build_model(model_config, tft_output, batch_size, registry=shop.REGISTRY)
    features, labels = next(iter(dataset))
    return model, features, labels


def write_raw(prefix: str, rows: list) -> None:
    """Writes rows as one gzip raw-example shard and marks ingest finished, as ingest would."""
    tf.io.gfile.makedirs(prefix.rsplit("/", 1)[0])
    names = shop.REGISTRY.example_names()
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(prefix + "-00000-of-00001.tfrecord.gz", options) as writer:
        for row in rows:
            writer.write(examples.encode(row, names, shop.REGISTRY))
    # prefix is <run>/ingest/examples/<split>: the marker, listing the files, goes in
    # <run>/ingest, last.
    write_success(os.path.dirname(os.path.dirname(prefix)), "ingest")


def make_config(run_dir: str, **training) -> config_lib.Config:
    """A config over ``run_dir`` with the small test model and given training fields."""
    base = config_lib.Config(run_dir=run_dir)
    return dataclasses.replace(
        base,
        ingest=dataclasses.replace(base.ingest, num_shards=2),
        model=SMALL_MODEL,
        training=dataclasses.replace(base.training, **training))
