"""The scoreboard's heuristics and bootstrap, on hand-made rows."""

import numpy as np
import pytest

from benchmarks import real_data as R


def _cols(users, items, cats, y):
    return {"user_id": np.asarray(users), "item_id": np.asarray(items),
            "item_category": np.asarray(cats), "buy": np.asarray(y)}


def test_heuristics_by_hand():
    train = _cols(["a", "a", "b"], ["i1", "i2", "i1"], ["c1", "c2", "c1"], [1, 0, 0])
    test = _cols(["a", "b"], ["i1", "i3"], ["c1", "c2"], [0, 0])
    got = R.heuristics(train, test, "buy", "user_id", "item_id", "item_category")
    prior, a = 1 / 3, R.SMOOTHING
    assert got["user rate"] == pytest.approx([(1 + a * prior) / (2 + a), a * prior / (1 + a)])
    assert got["category rate"] == pytest.approx([(1 + a * prior) / (2 + a),
                                                  a * prior / (1 + a)])
    assert got["item popularity"].tolist() == [2, 0]
    assert got["user x category count"].tolist() == [1, 0]
    assert got["user x item count"].tolist() == [1, 0]


def test_bootstrap_over_users():
    labels = np.asarray([1.0, 0.0, 1.0, 0.0])
    users = np.asarray(["a", "a", "b", "b"])
    good, bad = np.asarray([0.9, 0.1, 0.8, 0.2]), np.asarray([0.1, 0.9, 0.2, 0.8])
    # Every user has both classes, so every resample has an AUC: 1 and 0 throughout.
    out = R.bootstrap(labels, {"good": [good, bad], "bad": [bad]}, users)
    assert (out["good"]["auc"], out["good"]["auc_min"], out["good"]["auc_max"]) == (0.5, 0, 1)
    assert out["good"]["lo"] == out["good"]["hi"] == 0.5
    assert out["bad"]["auc"] == out["bad"]["gauc"] == 0.0


def test_the_lists_table_is_mean_and_sample_sd_over_seeds():
    def seed(map_, recall):
        row = {"map": map_, "recall": recall, "ndcg": 0.1, "hit_rate": 0.2, "coverage": 0.3}
        return {"model": row, "own_history": dict(row, map=0.005),
                "candidate_recall": {"union": {"recall": recall}},
                "related": {"k": 10, "related": {"recall": 0.1, "ndcg": 0.2, "hit_rate": 0.3}}}

    table = R.lists_table([seed(0.006, 0.02), seed(0.008, 0.04)])
    assert table["model"]["map"] == {"mean": pytest.approx(0.007),
                                     "sd": pytest.approx(0.002 / 2 ** 0.5)}
    assert table["own_history"]["map"] == {"mean": pytest.approx(0.005), "sd": 0.0}
    assert table["candidate_recall/union"]["recall"]["mean"] == pytest.approx(0.03)
    assert table["related/related"]["hit_rate"]["sd"] == 0.0


def test_a_signal_alone_scores_in_the_direction_train_gives_it():
    train = {"buy": np.asarray([1, 0, 1, 0]), "days": np.asarray([1.0, 9.0, 2.0, 8.0]),
             "count": np.asarray([3.0, 0.0, 2.0, 1.0])}
    test = {"days": np.asarray([5.0, 1.0]), "count": np.asarray([1.0, 4.0])}
    out = R.signal_heuristics(train, test, "buy", ["days", "count"])
    # Fewer days since means a buy on train: the days score negated.
    assert out["days alone"].tolist() == [-5.0, -1.0]
    assert out["count alone"].tolist() == [1.0, 4.0]
