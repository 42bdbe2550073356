"""The recommend stage's evaluation on hand-made events: baselines, candidate recall and
related items, every list worked out by hand."""

import numpy as np
import pytest

from shoprec.app import recommend

DAY = 86400
CUT = 10 * DAY


def _events(rows):
    return {"user": np.array([r[0] for r in rows], object),
            "item": np.array([r[1] for r in rows], object),
            "ts": np.array([r[2] for r in rows], np.int64)}


# Purchases before the cut-off: u1 bought a then b (day 8) and c (day 9, with d in
# the same day's basket of u2); u2 bought c and d on day 9, e on day 2.
TRAIN = _events([("u1", "a", 1 * DAY), ("u1", "b", 8 * DAY), ("u1", "c", 9 * DAY),
                 ("u2", "c", 9 * DAY), ("u2", "d", 9 * DAY + 60), ("u2", "e", 2 * DAY)])
# u3 only viewed f (day 9) and g (day 5).
VIEWS = _events([("u3", "f", 9 * DAY), ("u3", "g", 5 * DAY), ("u1", "h", 9 * DAY + 1)])
CATALOGUE = set("abcdefgh")


def test_baselines_by_hand():
    interactions = {k: np.concatenate([TRAIN[k], VIEWS[k]]) for k in TRAIN}
    out = recommend.baselines(TRAIN, interactions, ["u1", "u2", "u3"], CATALOGUE, 3, CUT,
                              popularity_days=7, excluded={"u2": {"c"}})
    # Popular in days 3-10: c 2, b 1, d 1 (ties by id).
    assert out["popularity"] == {"u1": ["c", "b", "d"], "u2": ["b", "d"],
                                 "u3": ["c", "b", "d"]}
    # Own items, latest first, then popularity (u2 may not get c: excluded).
    assert out["own_history"] == {"u1": ["c", "b", "a"], "u2": ["d", "e", "b"],
                                  "u3": ["c", "b", "d"]}
    # Every non-impression event: u1's view of h (day 9 + 1 s) comes first.
    assert out["own_interactions"]["u1"] == ["h", "c", "b"]
    assert out["own_interactions"]["u3"] == ["f", "g", "c"]
    # Own items, then what was bought with them (c and d share a basket), then popularity.
    assert out["own_co_occurrence"]["u1"] == ["c", "b", "a"]
    assert recommend.baselines(TRAIN, interactions, ["u1"], CATALOGUE, 4, CUT, 7, {})[
        "own_co_occurrence"]["u1"] == ["c", "b", "a", "d"]


def test_the_baselines_co_occurrence_counts_one_day_baskets():
    table = recommend.co_occurrence(TRAIN["user"], TRAIN["item"], TRAIN["ts"])
    # Baskets: {a}, {b}, {c} of u1; {c, d} and {e} of u2: n_c 2, n_d 1, n_cd 1.
    assert table == {"c": [("d", pytest.approx(1 / 2 ** 0.5))],
                     "d": [("c", pytest.approx(1 / 2 ** 0.5))]}


def test_candidate_recall_per_source_and_union():
    candidates = [{"user_id": "u1", "item_id": "a", "sources": "rep"},
                  {"user_id": "u1", "item_id": "b", "sources": "rep,pop"},
                  {"user_id": "u2", "item_id": "x", "sources": "pop"},
                  {"user_id": "u9", "item_id": "a", "sources": "rep"}]
    relevant = {"u1": {"b", "z"}, "u2": {"y"}}
    out = recommend.candidate_recall(candidates, relevant, ["rep", "pop", "co"])
    # u1 finds b of {b, z} (1/2), u2 nothing: recall 0.25 for rep, pop and the union.
    assert out["rep"] == {"recall": 0.25, "found": 1, "relevant": 3, "candidates": 1.0}
    assert out["pop"]["recall"] == 0.25 and out["pop"]["candidates"] == 1.0
    assert out["union"] == {"recall": 0.25, "found": 1, "relevant": 3, "candidates": 1.5}
    assert out["co"] == {"recall": 0.0, "found": 0, "relevant": 3, "candidates": 0.0}


def test_related_lists_start_from_each_users_last_item():
    related = {"c": ["d", "x"], "d": ["c"], "e": ["y"]}
    # u1's last purchase is c (day 9); u2's are c and d on day 9, d the later.
    assert recommend.related_lists(TRAIN, ["u1", "u2", "u3"], related) == {
        "u1": ["d", "x"], "u2": ["c"]}


def test_the_oracle_is_the_generators_top_k_less_the_excluded():
    from pipelines import generate
    from shoprec.core import config as config_lib

    config = config_lib.load()
    catalogue = [f"i{i:05d}" for i in range(config.generate.num_items)]
    users = ["u000000", "u000007"]
    scores = generate.expected_clicks(config)(np.full(len(catalogue), 7),
                                              np.arange(len(catalogue)))
    ranked = [catalogue[j] for j in np.argsort(-scores, kind="stable")]
    excluded = {"u000007": {ranked[0], ranked[3], ranked[40]}}
    got = recommend._oracle(config, users, catalogue, 4, excluded)
    assert got["u000007"] == [ranked[1], ranked[2], ranked[4], ranked[5]]
    assert len(got["u000000"]) == 4 and got["u000000"] != got["u000007"]
