"""preprocessing_fn on history lists: the shared item vocabulary, padded to N with -1."""

import numpy as np

from shoprec.core import registry as F
from tests.transforms.tft_harness import check_transformed

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
    def check(rows):
        histories = [list(r["hist_items"]) for r in rows]
        assert histories[:4] == [[-1, -1, -1], [0, -1, -1], [1, 0, -1], [0, 1, 0]]
        assert histories[4][0] in (2, 3) and histories[4][1:] == [-1, -1]
        np.testing.assert_allclose([r["hist_count"] for r in rows[:4]],
                                   np.array([-3, -1, 1, 3]) / np.sqrt(5), rtol=1e-5)

    test = TRAIN + [_row("u9", "i1", ["i9"], 4.0, 0)]
    check_transformed(REGISTRY, TRAIN, test, check, sort_key=lambda r: r["hist_count"])
