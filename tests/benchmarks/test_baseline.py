"""The featurize benchmark's baseline: what it implements, and that it equals TFT.

The hand-derived test checks the baseline's own cross, hash and bucket code;
the last test runs the real TFT featurize job and the baseline over the same
raw shards of the generated shop's registry and compares them with
``benchmarks.checks`` (vocabularies, sampled rows incl. unseen tokens, and
the full outputs).
"""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_transform.tf_metadata import schema_utils
from tfx_bsl.coders import example_coder

from benchmarks import baseline as B, checks
from pipelines import examples
from shoprec.core import generated_shop as shop
from shoprec.core import registry as F
from tests.trainer.synthetic import make_config, make_rows, write_raw

S, K = F.Source, F.Kind
IDS = (F.Feature("user_id", S.EVENT, K.ID), F.Feature("item_id", S.EVENT, K.ID))
REGISTRY = F.Registry(IDS + (
    F.Feature("postal", S.USER, K.HASHED, hash_buckets=1 << 20),
    F.Feature("region", S.USER, K.CATEGORICAL),
    F.Feature("category", S.ITEM, K.CATEGORICAL),
    F.Feature("age", S.USER, K.NUMERIC),
    F.Feature("age_group", S.DERIVED, K.BUCKETIZED, derived_from=("age",),
              boundaries=(30.0, 45.0, 60.0)),
    F.Feature("region_x_category", S.DERIVED, K.CROSS, derived_from=("region", "category"),
              hash_buckets=1 << 20),
))


def _batch(registry, rows):
    names = registry.example_names()
    decoder = example_coder.ExamplesToRecordBatchDecoder(schema_utils.schema_from_feature_spec(
        registry.raw_feature_spec()).SerializeToString())
    return decoder.DecodeBatch([examples.encode(r, names, registry) for r in rows])


def test_cross_hash_and_buckets_by_hand():
    ages = [10.0, 30.0, 44.9, 45.0, 60.0, 99.0]
    rows = [{"user_id": "u1", "item_id": "i1", "postal": postal, "region": region,
             "category": category, "age": age}
            for postal, region, category, age in zip(
                ["75001", "", "75001", "SW1A 1AA", "", "x"],
                ["north", "north", "south", "north", "west", "north"],
                ["shoes", "hats", "shoes", "shoes", "socks", "shoes"], ages)]
    stats = B.Statistics({"user_id": [b"u1"], "item_id": [b"i1"], "region": [b"north"],
                          "category": [b"shoes"]}, {"age": (np.float32(0), np.float32(1))})
    out = B.Transformer(REGISTRY, stats).columns(_batch(REGISTRY, rows))
    # tft.apply_buckets: the number of edges <= the age.
    assert out["age_group"].tolist() == [0, 1, 1, 2, 3, 3]
    joined = [f"{r['region']}\x1f{r['category']}" for r in rows]
    assert out["region_x_category"].tolist() == list(
        tf.strings.to_hash_bucket_fast(joined, 1 << 20).numpy())
    assert out["postal"].tolist() == list(tf.strings.to_hash_bucket_fast(
        [r["postal"] for r in rows], 1 << 20).numpy())


@pytest.mark.parametrize("extra", [
    F.Feature("desc", S.ITEM, K.TEXT, max_length=4, top_k=10),
    F.Feature("age_q", S.DERIVED, K.BUCKETIZED, derived_from=("age",), num_buckets=4),
    F.Feature("hist", S.HISTORY, K.HISTORY, history_of="item_id", max_length=3,
              vocabulary="item_id"),
])
def test_kinds_it_does_not_implement_are_refused(extra):
    with pytest.raises(NotImplementedError, match=extra.name):
        B.check_supported(F.Registry(REGISTRY.features + (extra,)))


def test_target_encodings_are_refused():
    extra = (F.Feature("y", S.EVENT, K.LABEL),
             F.Feature("te", S.DERIVED, K.NUMERIC, derived_from=("category",), target="y",
                       smoothing=1.0, folds=2))
    with pytest.raises(NotImplementedError, match="'te'"):
        B.check_supported(F.Registry(REGISTRY.features + extra))


def test_baseline_equals_tft_on_the_default_registry(tmp_path):
    from pipelines import featurize

    B.check_supported(shop.REGISTRY)
    config = make_config(str(tmp_path))
    write_raw(config.layout.examples("train"), make_rows(96, seed=1))
    write_raw(config.layout.examples("eval"), make_rows(32, seed=2))
    featurize.run(config)
    prefixes = {s: config.layout.examples(s) for s in ("train", "eval")}
    out_dir = str(tmp_path / "baseline")
    report = B.featurize(prefixes, out_dir, shop.REGISTRY, num_shards=1, batch_size=40)
    checks.save_statistics(report["statistics"], out_dir)

    layout = config.layout
    sizes = checks.check_vocabularies(shop.REGISTRY, layout.transform_dir, out_dir)
    assert sizes["user_region"] == 3 and sizes["item_category"] == 3
    worst = checks.check_sample(shop.REGISTRY, layout.transform_dir, out_dir, prefixes)
    assert worst["user_age_bucket"] == 0.0 and worst["user_region_x_item_category"] == 0.0
    rows = checks.check_outputs(
        layout.transform_dir, {s: layout.transformed(s) + "-*" for s in prefixes},
        {s: f"{out_dir}/{s}-*" for s in prefixes}, max_rows=1000)
    assert rows == {"train": 96, "eval": 32}
