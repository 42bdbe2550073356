"""Cold start in recommend's evaluation on hand-made users, items and lists, every
number worked out by hand."""

import math

import numpy as np
import pytest

from shoprec.app import cold_start, recommend
from trainer import metrics

DAY = 86400

# Before the cut-off u1 bought a and u2 was shown b: u3 has no event (cold), and c,
# d and e have none (new).
INTERACTIONS = {"user": np.array(["u1", "u2"], object), "item": np.array(["a", "b"], object),
                "ts": np.array([1 * DAY, 5 * DAY], np.int64)}
CATALOGUE = ["a", "b", "c", "d", "e"]
RELEVANT = {"u1": {"c"}, "u2": {"a", "d"}, "u3": {"e"}}
LISTS = {"model": {"u1": ["c", "a"], "u2": ["b", "d"], "u3": ["a", "e"]},
         "pop": {"u1": ["a", "b"], "u2": ["a", "b"], "u3": ["a", "b"]}}


def test_cold_users_and_new_items_have_no_event_before_the_cut_off():
    assert cold_start.cold_users(RELEVANT, INTERACTIONS) == {"u3"}
    assert cold_start.new_items(CATALOGUE, INTERACTIONS) == {"c", "d", "e"}


def test_the_cold_warm_split_and_the_new_item_shares_by_hand():
    out = cold_start.judge(LISTS, RELEVANT, {"u3"}, {"c", "d", "e"}, 2, len(CATALOGUE))
    assert out["users"] == {"cold": 1, "warm": 2}
    # Relevant pairs: c (u1), a and d (u2), e (u3): c, d and e are new, 3 of 4.
    assert (out["relevant_pairs"], out["new_relevant_pairs"]) == (4, 3)
    assert out["new_relevant_share"] == 0.75
    model = out["lists"]["model"]
    # Cold u3: e at rank 2 of 1 relevant: (1/log2 3) / 1 = 0.6309.
    assert model["cold"]["ndcg"] == pytest.approx(1 / math.log2(3))
    assert (model["cold"]["users"], model["cold"]["recall"], model["cold"]["hit_rate"]) == (
        1, 1.0, 1.0)
    # Warm u1: c at rank 1, NDCG 1; u2: d at rank 2 of {a, d}: (1/log2 3) / (1 + 1/log2 3)
    # = 0.3869; mean 0.6934. Recall (1 + 1/2) / 2 = 0.75, both hit.
    assert model["warm"]["ndcg"] == pytest.approx((1 + (1 / math.log2(3)) /
                                                    (1 + 1 / math.log2(3))) / 2)
    assert (model["warm"]["users"], model["warm"]["recall"], model["warm"]["hit_rate"]) == (
        2, 0.75, 1.0)
    # Slots: c, a | b, d | a, e: 3 new of 6. Hits: c, d, e, all new.
    assert (model["slots"], model["new_slots"], model["new_slot_share"]) == (6, 3, 0.5)
    assert (model["hits"], model["new_hits"], model["new_hit_share"]) == (3, 3, 1.0)
    pop = out["lists"]["pop"]
    # a, b for everyone: no new slot; one hit (a for u2), not new; cold u3 finds nothing.
    assert (pop["new_slot_share"], pop["hits"], pop["new_hit_share"]) == (0.0, 1, 0.0)
    assert pop["cold"]["ndcg"] == 0.0 and pop["cold"]["hit_rate"] == 0.0


def test_popular_new_ranks_new_items_by_their_categorys_recent_sales():
    # Purchases on days 8 and 9 (in the 7 days before the cut-off at day 10):
    # b twice, c once, d once; a on day 1 is too old to count.
    train = {"user": np.array(["u1", "u1", "u2", "u2", "u2"], object),
             "item": np.array(["a", "b", "b", "c", "d"], object),
             "ts": np.array([1, 8, 8, 9, 9], np.int64) * DAY}
    catalogue = {"a", "b", "c", "d", "w", "x", "y", "z"}
    categories = {"a": "top", "b": "top", "c": "shoe", "d": "shoe", "x": "top", "y": "shoe",
                  "w": "shoe", "z": "hat"}
    new = cold_start.new_items(catalogue, train)
    assert new == {"w", "x", "y", "z"}
    # Categories: shoe c 1 + d 1 = 2, top b 2 (a is old) = 2, hat 0. New items w, x, y, z:
    # shoe and top tie at 2 and share the lead; by id: w (shoe), x (top), y (shoe), then
    # z (hat, 0). Filled with popularity: b 2, then c and d 1 each (by id).
    out = recommend.baselines(train, train, ["u1", "u2"], catalogue, 6, 10 * DAY, 7,
                              {"u2": {"x", "b"}}, new, categories)["popular_new"]
    assert out["u1"] == ["w", "x", "y", "z", "b", "c"]
    # u2 may not get x or b (excluded): the fill moves up.
    assert out["u2"] == ["w", "y", "z", "c", "d"]
    # One more sale of a shoe breaks the tie: shoes (w, y) before the top (x).
    more = {k: np.concatenate([v, extra]) for (k, v), extra in zip(
        train.items(), [np.array(["u3"], object), np.array(["d"], object),
                        np.array([9 * DAY], np.int64)])}
    assert recommend.baselines(more, more, ["u1"], catalogue, 3, 10 * DAY, 7, {}, new,
                               categories)["popular_new"]["u1"] == ["w", "y", "x"]
    # No categories: every new item in one category, by id.
    assert recommend.baselines(train, train, ["u1"], catalogue, 4, 10 * DAY, 7, {}, new)[
        "popular_new"]["u1"] == ["w", "x", "y", "z"]


def test_render_prints_n_a_where_a_group_is_empty():
    # No cold user and no new item (the demo today): every list is judged on warm users.
    relevant = {"u1": {"a"}, "u2": {"b"}}
    lists = {"model": {"u1": ["a", "c"], "u2": ["c", "a"]}}
    result = {"k": 2, "relevance_label": "purchase", "catalogue": 3,
              "model": metrics.ranking_metrics(lists["model"], relevant, 2, 3),
              "cold_start": cold_start.judge(lists, relevant, set(), set(), 2, 3)}
    result["cold_start"]["candidate_recall"] = recommend.candidate_recall(
        [{"user_id": "u1", "item_id": "a", "sources": "pop"}], {"u1": set(), "u2": set()},
        ["pop"])
    text = recommend.render(result)
    # No relevant pair is a new item: the candidates' share of them is n/a too.
    assert "new items' relevant pairs among the candidates (union): n/a" in text
    assert ("cold start @2: 0 cold / 2 warm judged users; 0 new items; n/a of the relevant "
            "pairs (0/2) are new items") in text
    row = [line for line in text.splitlines() if line.startswith("model ")][-1].split()
    # Warm NDCG: u1 hits at rank 1 (1), u2 misses: 0.5. Cold users and new items: none.
    assert row == ["model", "n/a", "0.5000", "0/2", "n/a", "n/a"]
