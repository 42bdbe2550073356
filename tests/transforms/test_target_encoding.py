"""Target encoding: hand-derived out-of-fold rates, through real TFT and preprocessing_fn."""

import tempfile

import apache_beam as beam
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from shoprec.core import registry as F
from tests.transforms.tft_harness import check_transformed
from transforms.target_encoding import target_encoding

S, K = F.Source, F.Kind
REGISTRY = F.Registry((
    F.Feature("user_id", S.EVENT, K.ID),
    F.Feature("item_id", S.EVENT, K.ID),
    F.Feature("item_category", S.ITEM, K.CATEGORICAL),
    F.Feature("buy", S.EVENT, K.LABEL, event_type="purchase"),
    F.Feature("te_category_buy", S.DERIVED, K.NUMERIC, derived_from=("item_category",),
              target="buy", smoothing=2.0, folds=2),
))
TE = REGISTRY["te_category_buy"]


def _row(user, category, buy):
    return {"user_id": user, "item_id": "i", "item_category": category, "buy": buy}


# uA is in fold 0 and u1 in fold 1 (asserted below). Train: p = 3 / 5, a = 2.
TRAIN = [_row("uA", "c1", 1), _row("uA", "c1", 0), _row("u1", "c1", 1), _row("u1", "c2", 0),
         _row("u1", "c1", 1)]
# c1: 3 positives of 4 rows, uA's fold 1 of 2, u1's 2 of 2; c2: 0 of 1, all u1's.
EXPECTED = [
    (_row("uA", "c1", 0), (3 - 1 + 2 * 0.6) / (4 - 2 + 2)),  # 0.8: u1's rows only
    (_row("u1", "c1", 0), (3 - 2 + 2 * 0.6) / (4 - 2 + 2)),  # 0.55: uA's rows only
    (_row("u1", "c2", 0), (0 - 0 + 2 * 0.6) / (1 - 1 + 2)),  # 0.6: no other row: the prior
    (_row("uA", "c2", 1), (0 - 0 + 2 * 0.6) / (1 - 0 + 2)),  # 0.4: u1's negative
    (_row("uA", "c3", 1), (0 + 2 * 0.6) / (0 + 2)),  # unseen value: the prior
]


def test_folds_of_the_hand_users():
    assert list(tf.strings.to_hash_bucket_fast(["uA", "u1"], 2).numpy()) == [0, 1]


def _encode(inputs):
    return {"te": target_encoding(TE, inputs, REGISTRY), "user_id": inputs["user_id"],
            "item_category": inputs["item_category"]}


def test_out_of_fold_smoothed_rates_by_hand():
    spec = {n: REGISTRY.raw_feature_spec()[n] for n in ("user_id", "item_category", "buy")}
    metadata = tft.DatasetMetadata.from_feature_spec(spec)
    test = [{k: r[k] for k in spec} for r, _ in EXPECTED]
    want = {(r["user_id"], r["item_category"]): v for r, v in EXPECTED}

    def check(rows):
        got = {(r["user_id"].decode(), r["item_category"].decode()): r["te"] for r in rows}
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=1e-6), key

    train = [{k: r[k] for k in spec} for r in TRAIN]
    with tempfile.TemporaryDirectory() as tmp:
        with TestPipeline(runner="FnApiRunner") as p, tft_beam.Context(temp_dir=tmp):
            transform_fn = ((p | "Train" >> beam.Create(train), metadata)
                            | tft_beam.AnalyzeDataset(_encode))
            out, _ = ((p | "Test" >> beam.Create(test), metadata), transform_fn
                      ) | tft_beam.TransformDataset()
            assert_that(out, check)


def test_preprocessing_fn_z_scores_the_encoding_of_train():
    # The train rows' own encodings: uA's c1 rows 0.8, u1's c1 rows 0.55, u1's c2 0.6.
    encoded = [0.8, 0.8, 0.55, 0.6, 0.55]
    mean = sum(encoded) / 5
    std = (sum((e - mean) ** 2 for e in encoded) / 5) ** 0.5
    rows = [dict(r, item_id="i") for r in TRAIN]

    def check(out):
        got = sorted(float(r["te_category_buy"]) for r in out)
        assert got == pytest.approx(sorted((e - mean) / std for e in encoded), abs=1e-5)

    check_transformed(REGISTRY, rows, rows, check)


