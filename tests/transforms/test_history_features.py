"""preprocessing_fn on history lists: the shared item vocabulary, padded to N with -1."""

import functools
import tempfile

import apache_beam as beam
import numpy as np
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from transforms import features as F
from transforms.preprocessing import preprocessing_fn

S, K = F.Source, F.Kind
REGISTRY = F.Registry((
    F.Feature("user_id", S.EVENT, K.ID),
    F.Feature("item_id", S.EVENT, K.ID, oov_buckets=2),
    F.Feature("hist_items", S.HISTORY, K.HISTORY, history_of="item_id", max_length=3,
              vocabulary="item_id"),
    F.Feature("hist_count", S.HISTORY, K.NUMERIC, event_type="click"),
    F.Feature("buy", S.EVENT, K.LABEL, event_type="purchase"),
))


def _row(user, item, history, count, buy):
    return {"user_id": user, "item_id": item, "hist_items": history, "hist_count": count,
            "buy": buy}


# item_id vocabulary (train): i1 x3, i2 x1 → i1=0, i2=1; unseen ids hash to 2 or 3.
TRAIN = [_row("u1", "i1", [], 0.0, 0), _row("u1", "i1", ["i1"], 1.0, 1),
         _row("u2", "i1", ["i2", "i1"], 2.0, 0), _row("u2", "i2", ["i1", "i2", "i1"], 3.0, 1)]


def test_history_indices_share_the_item_vocabulary_and_pad_to_n():
    metadata = tft.DatasetMetadata.from_feature_spec(REGISTRY.raw_feature_spec())

    def check(rows):
        rows = sorted(rows, key=lambda r: r["hist_count"])
        histories = [list(r["hist_items"]) for r in rows]
        assert histories[:4] == [[-1, -1, -1], [0, -1, -1], [1, 0, -1], [0, 1, 0]]
        assert histories[4][0] in (2, 3) and histories[4][1:] == [-1, -1]
        np.testing.assert_allclose([r["hist_count"] for r in rows[:4]],
                                   np.array([-3, -1, 1, 3]) / np.sqrt(5), rtol=1e-5)

    test = TRAIN + [_row("u9", "i1", ["i9"], 4.0, 0)]
    with tempfile.TemporaryDirectory() as tmp:
        with TestPipeline(runner="FnApiRunner") as p, tft_beam.Context(temp_dir=tmp):
            fn = tft_beam.AnalyzeDataset(functools.partial(preprocessing_fn, registry=REGISTRY))
            transform_fn = (p | "Train" >> beam.Create(TRAIN), metadata) | fn
            (out, _) = ((p | "Test" >> beam.Create(test), metadata), transform_fn
                        ) | tft_beam.TransformDataset()
            assert_that(out, check)
