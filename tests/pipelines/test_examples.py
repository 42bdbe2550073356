"""examples.Encoder: encode's exact bytes from cached map entries."""

import random

import pytest

from pipelines import examples
from shoprec.core import generated_shop

R = generated_shop.REGISTRY
NAMES = ["user_id", "item_id", "user_age", "user_region", "item_category", "item_price",
         "item_image_embedding", "item_has_image", "click"]


def _rows(n, seed=0):
    rng = random.Random(seed)
    vectors = [[rng.uniform(-1, 1) for _ in range(32)] for _ in range(5)]
    for _ in range(n):
        yield {"user_id": f"u{rng.randrange(20)}", "item_id": f"i{rng.randrange(50)}",
               "user_age": rng.choice([18.0, 30, 41.5]), "user_region": rng.choice("abc"),
               "item_category": rng.choice(["shoes", "bags"]),
               "item_price": rng.uniform(1, 100), "item_image_embedding": rng.choice(vectors),
               "item_has_image": rng.randrange(2), "click": rng.randrange(2)}


def test_the_encoder_writes_encodes_bytes():
    encoder = examples.Encoder(NAMES, R)
    for row in _rows(300):
        assert encoder(row) == examples.encode(row, NAMES, R)
    # Metadata keys (timestamp, sampled) are written as encode writes them.
    row = dict(next(_rows(1, seed=1)), timestamp=1_790_000_000, sampled=1)
    assert encoder(row) == examples.encode(row, NAMES, R)
    assert examples.decode(encoder(row), R) == examples.decode(
        examples.encode(row, NAMES, R), R)


def test_equal_values_of_different_types_are_not_one_entry():
    encoder = examples.Encoder(["user_region", "user_id", "item_id"], R)
    base = {"user_id": "u1", "item_id": "i1"}
    # 1 == 1.0 == True as dict keys, but "1", "1.0" and "True" as strings.
    for value in (1, 1.0, True):
        row = dict(base, user_region=value)
        assert encoder(row) == examples.encode(row, ["user_region", "user_id", "item_id"], R)


def test_the_cache_is_bounded_and_a_missing_feature_is_a_key_error():
    encoder = examples.Encoder(NAMES, R, max_entries=10)
    for row in _rows(200, seed=2):
        assert encoder(row) == examples.encode(row, NAMES, R)
    # Emptied when past the bound: at most the bound plus one row's entries.
    assert len(encoder._cache) <= 10 + len(NAMES)
    with pytest.raises(KeyError, match="item_price"):
        encoder({k: v for k, v in next(_rows(1)).items() if k != "item_price"})


def test_decode_many_is_decode_of_each_record():
    from shoprec.core import registry as F

    registry = F.Registry(R.features + (
        F.Feature("hist_items", F.Source.HISTORY, F.Kind.HISTORY, history_of="item_id",
                  max_length=3, vocabulary="item_id"),))
    names = NAMES + ["hist_items"]
    rows = [dict(row, hist_items=[f"i{k}" for k in range(n % 4)])
            for n, row in enumerate(_rows(40, seed=3))]
    records = [examples.encode(row, names, registry) for row in rows]
    many = examples.decode_many(records, registry, names)
    assert many == [examples.decode(r, registry) for r in records]
    # The same types too: str ids, float prices, int flags, lists (one empty).
    assert [type(many[0][n]) for n in ("user_id", "item_price", "click", "hist_items")] == [
        str, float, int, list]
    assert many[0]["hist_items"] == [] and many[3]["hist_items"] == ["i0", "i1", "i2"]
    assert examples.decode_many([], registry, names) == []


def test_string_entries_written_without_protos_are_protobufs_bytes():
    encoder = examples.Encoder(["user_id", "user_region", "item_id"], R)
    # Empty, non-ASCII and long (a two-byte length) strings.
    for value in ("", "ü-ß-東京", "x" * 300):
        row = {"user_id": value, "user_region": value, "item_id": "i1"}
        assert encoder(row) == examples.encode(row, ["user_id", "user_region", "item_id"], R)
