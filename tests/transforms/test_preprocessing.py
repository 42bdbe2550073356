"""preprocessing_fn on a tiny batch, expected values worked out by hand."""

import math

import numpy as np
import tensorflow as tf

from shoprec.core import generated_shop as shop
from tests.transforms.tft_harness import check_transformed

R = shop.REGISTRY

WIDTH = R.embedding_feature().width


def _embedding(v):
    """Dimension 0 is v, dimension 1 is constant, the rest are 2v."""
    return [float(v), 5.0] + [2.0 * v] * (WIDTH - 2)


def _row(user, item, age, price, v, click, conversion, category="shoes"):
    return {
        "user_id": user, "item_id": item, "user_age": age, "user_region": "north",
        "user_membership": "gold", "item_category": category, "item_brand": "acme",
        "item_colour": "red", "item_price": price, "item_image_embedding": _embedding(v),
        "item_has_image": 1, "click": click, "conversion": conversion,
    }


# log1p(price) is 0, 1, 2, 3: mean 1.5, population std sqrt(1.25).
TRAIN = [
    _row("u1", "i1", 20.0, 0.0, 0, 1, 1),
    _row("u1", "i2", 30.0, math.e - 1, 1, 0, 0),
    _row("u1", "i2", 40.0, math.e ** 2 - 1, 3, 1, 0, category="hats"),
    _row("u2", "i2", 50.0, math.e ** 3 - 1, 2, 0, 0),
]
UNSEEN = [_row("u9", "i9", 35.0, math.e - 1, 0, 0, 0, category="socks")]


def _check_transformed(train, test, check):
    # Rows sorted by transformed age, which keeps the input order here.
    check_transformed(R, train, test, check, sort_key=lambda r: r["user_age"])


def _vocabularies(rows):
    # u1 appears 3 times, u2 once: indices 0 and 1. i2 (3) before i1 (1).
    assert [r["user_id"] for r in rows] == [0, 0, 0, 1]
    assert [r["item_id"] for r in rows] == [1, 0, 0, 0]
    assert [r["item_category"] for r in rows] == [0, 0, 1, 0]


def _numerics(rows):
    std_age = math.sqrt(125.0)  # ages 20..50: mean 35, deviations 15, 5, 5, 15
    np.testing.assert_allclose([r["user_age"] for r in rows],
                               [-15 / std_age, -5 / std_age, 5 / std_age, 15 / std_age], rtol=1e-5)
    std_log = math.sqrt(1.25)
    np.testing.assert_allclose([r["item_price"] for r in rows],
                               [-1.5 / std_log, -0.5 / std_log, 0.5 / std_log, 1.5 / std_log],
                               rtol=1e-5)


def _embedding_and_labels(rows):
    # Per dimension: v = 0, 1, 3, 2 has mean 1.5 and population std sqrt(1.25);
    # 2v has the same z-scores; the constant dimension maps to 0.
    std = math.sqrt(1.25)
    for row, v in zip(rows, (0, 1, 3, 2)):
        z = (v - 1.5) / std
        np.testing.assert_allclose(np.asarray(row["item_image_embedding"]),
                                   [z, 0.0] + [z] * (WIDTH - 2), rtol=1e-5, atol=1e-6)


def _derived(rows):
    # Ages 20, 30, 40, 50 against the edges 30, 45, 60: how many edges are <= the age.
    assert [r["user_age_bucket"] for r in rows] == [0, 1, 1, 2]
    cross = R["user_region_x_item_category"]
    expected = tf.strings.to_hash_bucket_fast(
        ["north\x1fshoes", "north\x1fshoes", "north\x1fhats", "north\x1fshoes"],
        cross.hash_buckets).numpy()
    assert [r["user_region_x_item_category"] for r in rows] == list(expected)
    assert [r["click"] for r in rows] == [1.0, 0.0, 1.0, 0.0]
    assert [r["conversion"] for r in rows] == [1.0, 0.0, 0.0, 0.0]
    assert [r["item_has_image"] for r in rows] == [1.0] * 4


def _oov(rows):
    (row,) = rows
    user, item, category = (R.by_name[n] for n in ("user_id", "item_id", "item_category"))
    # Vocabularies hold 2 users, 2 items, 2 categories; OOV ids follow them.
    assert 2 <= row["user_id"] < 2 + user.oov_buckets
    assert 2 <= row["item_id"] < 2 + item.oov_buckets
    assert 2 <= row["item_category"] < 2 + category.oov_buckets


def test_train_batch_transforms_to_hand_derived_values():
    def check(rows):
        _vocabularies(rows)
        _numerics(rows)
        _derived(rows)
        _embedding_and_labels(rows)

    _check_transformed(TRAIN, TRAIN, check)


def test_unseen_values_land_in_oov_buckets():
    _check_transformed(TRAIN, UNSEEN, _oov)


def test_serving_spec_is_every_raw_input_and_no_label():
    derived = {"user_age_bucket", "user_region_x_item_category"}
    assert set(R.raw_feature_spec(include_labels=False)) == {f.name for f in R.inputs()} - derived
    assert set(R.raw_feature_spec()) == {f.name for f in R.features} - derived
