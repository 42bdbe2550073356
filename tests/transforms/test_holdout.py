"""Hold-out masks: a fixed hash of the raw key, in preprocessing_fn over real TFT + Beam.

The expected masks come from calling ``tf.strings.to_hash_bucket_fast`` on the
literal keys (a key is held out when its bucket among 10,000 is below
fraction x 10,000), so the tests check the wiring, not the hash.
"""

import numpy as np
import pytest
import tensorflow as tf

from shoprec.core import registry as F
from tests.transforms.tft_harness import check_transformed
from transforms import holdout

S, K = F.Source, F.Kind
REGISTRY = F.Registry((
    F.Feature("user_id", S.EVENT, K.ID),
    F.Feature("item_id", S.EVENT, K.ID),
    F.Feature("seq", S.EVENT, K.NUMERIC),  # row order: z-scores keep it
    F.Feature("buy", S.EVENT, K.LABEL, event_type="purchase"),
    F.Feature("item_held_out", S.DERIVED, K.HOLDOUT, derived_from=("item_id",), fraction=0.5),
    F.Feature("user_held_out", S.DERIVED, K.HOLDOUT, derived_from=("user_id",), fraction=0.2),
))
USERS = [f"u{i}" for i in range(8)]
ITEMS = [f"i{i}" for i in range(8)]


def _expected(keys, fraction):
    buckets = tf.strings.to_hash_bucket_fast(keys, 10_000).numpy()
    return [1.0 if b < fraction * 10_000 else 0.0 for b in buckets]


def test_the_mask_is_the_keys_hash_bucket_below_the_fraction():
    got = holdout.held_out(ITEMS, 0.5).numpy()
    assert got.tolist() == _expected(ITEMS, 0.5)
    # Both outcomes occur among these keys, so the test can tell a constant apart.
    assert 0 < got.sum() < len(ITEMS)


def test_held_out_sets_of_one_key_are_nested_and_near_the_fraction():
    keys = [f"user-{i}" for i in range(5000)]
    small, large = holdout.held_out(keys, 0.1).numpy(), holdout.held_out(keys, 0.3).numpy()
    assert np.all(large >= small)  # every key held out at 0.1 is held out at 0.3
    # Binomial(5000, p): sd 0.004 at 0.1 and 0.0065 at 0.3; 5 sd either side.
    assert abs(small.mean() - 0.1) < 0.02 and abs(large.mean() - 0.3) < 0.033


def test_preprocessing_fn_computes_the_mask_from_the_raw_key():
    train = [{"user_id": u, "item_id": i, "seq": float(n), "buy": 0}
             for n, (u, i) in enumerate(zip(USERS, ITEMS))]
    unseen = [{"user_id": "new-user", "item_id": "new-item", "seq": 99.0, "buy": 1}]
    rows = train + unseen
    items = _expected([r["item_id"] for r in rows], 0.5)
    users = _expected([r["user_id"] for r in rows], 0.2)

    def check(out):
        # A key outside the train vocabulary still gets its own mask (no analyser).
        assert [r["item_held_out"] for r in out] == items
        assert [r["user_held_out"] for r in out] == users

    check_transformed(REGISTRY, train, rows, check, sort_key=lambda r: r["seq"])


def test_a_holdout_is_never_an_input_nor_a_raw_value():
    names = {"item_held_out", "user_held_out"}
    assert not names & {f.name for f in REGISTRY.inputs()}
    assert not names & set(REGISTRY.raw_feature_spec())
    assert [f.name for f in REGISTRY.holdouts()] == ["item_held_out", "user_held_out"]


@pytest.mark.parametrize("changes, message", [
    ({"fraction": 0.0}, "only they, set fraction"),
    ({"fraction": 1.0}, "fraction in \\(0, 1\\)"),
    ({"fraction": "0.2"}, "fraction in \\(0, 1\\)"),
    ({"derived_from": ("seq",)}, "one ID"),
    ({"derived_from": ("user_id", "item_id")}, "one ID"),
    ({"source": S.EVENT, "derived_from": ()}, "from source 'derived'"),
])
def test_the_registry_refuses_a_malformed_holdout(changes, message):
    spec = dict(name="h", source=S.DERIVED, kind=K.HOLDOUT, derived_from=("user_id",),
                fraction=0.2)
    spec.update(changes)
    with pytest.raises(ValueError, match=message):
        F.Registry(REGISTRY.features[:4] + (F.Feature(**spec),))
