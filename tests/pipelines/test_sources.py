"""The candidate sources' pure part on hand-worked states: every value derived by hand."""

import math

import pytest

from pipelines import sources
from shoprec.core import registry as F
from shoprec.core.recommend_config import SourceConfig

DAY = 86400
CUT = 100 * DAY


def _source(name, kind=None, quota=2, events=(("purchase", 1.0),), **kw):
    return SourceConfig(name=name, kind=kind or name, quota=quota, events=events, **kw)


def _plan(*srcs, signals=(), exclude=None, popularity=("purchase", 7)):
    return sources.Plan(tuple(srcs), tuple(signals), exclude, 200, popularity)


def _fold(add, events, p):
    state = {}
    for ts, kind in events:
        state = add(state, CUT, ts, kind, p)
    return state


def test_a_pair_state_counts_and_decays_the_users_events():
    p = _plan(_source("rep", "repurchase", events=(("purchase", 1.0), ("click", 0.5)),
                      half_life_days=2))
    state = _fold(sources.add_pair, [(CUT - 2 * DAY, "purchase"), (CUT - 4 * DAY, "click")], p)
    # 1 * 0.5 ** (2 / 2) + 0.5 * 0.5 ** (4 / 2) = 0.5 + 0.125.
    assert state == {("n", "purchase"): 1, ("last", "purchase"): CUT - 2 * DAY,
                     ("n", "click"): 1, ("last", "click"): CUT - 4 * DAY,
                     ("s", "rep"): pytest.approx(0.625)}
    # Partial states merge into the state of all the events.
    halves = [_fold(sources.add_pair, [e], p)
              for e in [(CUT - 2 * DAY, "purchase"), (CUT - 4 * DAY, "click")]]
    assert sources.merge(halves) == state


def test_a_segmented_popular_source_counts_the_pairs_last_days_only():
    p = _plan(_source("pop_age", "popular", events=(("purchase", 2.0),), days=3,
                      segment="user_age", segment_edges=(30.0,)))
    state = _fold(sources.add_pair, [(CUT - DAY, "purchase"), (CUT - 5 * DAY, "purchase")], p)
    assert state[("s", "pop_age")] == 2.0  # only the purchase of the last 3 days, weight 2


def test_an_item_state_keeps_windows_first_event_and_popular_counts():
    signals = (F.Feature("w7", F.Source.CANDIDATE, F.Kind.NUMERIC, signal="item.count",
                         event_type="purchase", window_days=7),
               F.Feature("trend", F.Source.CANDIDATE, F.Kind.NUMERIC, signal="item.trend",
                         event_type="purchase", window_days=3),
               F.Feature("age", F.Source.CANDIDATE, F.Kind.NUMERIC,
                         signal="item.days_since_first", event_type="purchase", default=99))
    p = _plan(_source("pop", "popular", events=(("purchase", 2.0),), days=3),
              _source("fresh", "new", days=2, attribute="item_type"), signals=signals)
    state = _fold(sources.add_item, [(CUT - d * DAY, "purchase") for d in (1, 2, 4, 10)], p)
    assert state[("w", "purchase", 7)] == 3  # days 1, 2, 4
    assert (state[("w", "purchase", 3)], state[("w", "purchase", 6)]) == (2, 3)
    assert state[("first", "purchase")] == CUT - 10 * DAY
    assert state[("s", "pop")] == 4.0  # two purchases in 3 days, weight 2
    assert state[("s", "fresh")] == 2.0  # its category's sales: days 1 and 2, weight 1
    assert sources.popularity(state, p) == 3  # the plan's (purchase, 7 days)
    values = sources.signals(p, CUT, {}, None, state, {}, "a")
    # trend: (2 + 1) / ((3 - 2) + 1); age: 10 days; an item without events: the default.
    assert values == {"w7": 3.0, "trend": 1.5, "age": 10.0}
    assert sources.signals(p, CUT, {}, None, None, {}, "z") == {"w7": 0.0, "trend": 1.0,
                                                                "age": 99.0}


def test_neighbours_normalise_co_counts_for_both_items_popularity():
    # Baskets {a, b}, {a, b, c}, {a, c}: n_a 3, n_b 2, n_c 2; n_ab 2, n_ac 2, n_bc 1.
    counts = {"a": 3, "b": 2, "c": 2}
    assert sources.neighbours("a", {"b": 2, "c": 2}, counts.__getitem__, 5) == [
        ("b", pytest.approx(2 / math.sqrt(6))), ("c", pytest.approx(2 / math.sqrt(6)))]
    assert sources.neighbours("b", {"a": 2, "c": 1}, counts.__getitem__, 1) == [
        ("a", pytest.approx(2 / math.sqrt(6)))]
    assert sources.basket([("c", 5), ("a", 9), ("b", 5), ("a", 3)], 2) == ["a", "b"]


@pytest.mark.parametrize("user, segment", [
    ({"user_age": 40.0}, "1"), ({"user_age": 29.9}, "0"), ({"user_age": 50.0}, "2"),
    ({"user_age": None}, ""), (None, "")])
def test_a_numeric_segment_is_its_bucket(user, segment):
    s = _source("pop_age", "popular", segment="user_age", segment_edges=(30.0, 50.0))
    assert sources.segment(s, user) == segment
    assert sources.segment(_source("pop", "popular"), user) is None


def _tables():
    return sources.Tables(
        neighbours={("co", CUT, "a"): [("c", 0.5), ("d", 0.25)],
                    ("co", CUT, "b"): [("c", 0.2), ("e", 0.1)]},
        popular={("pop", CUT, None): [("d", 5.0), ("a", 4.0), ("f", 1.0)],
                 ("pop_age", CUT, "1"): [("g", 3.0)],
                 ("fresh", CUT, None): [("n1", 6.0), ("n2", 6.0), ("n3", 0.0)]},
        members={("var", CUT, "P1"): [("a2", 5), ("a", 4), ("a3", 0)]},
        values={("var", "a"): "P1", ("var", "b"): "P2"},
        items={})


PLAN = _plan(_source("rep", "repurchase"), _source("co", "co_occurrence", recent_items=2),
             _source("pop", "popular"),
             _source("pop_age", "popular", segment="user_age", segment_edges=(30.0, 50.0)),
             _source("var", "attribute", attribute="item_var"),
             _source("fresh", "new", attribute="item_type"),
             _source("towers", "two_tower"))
PAIRS = {"a": {("s", "rep"): 2.0, ("s", "co"): 1.0, ("s", "var"): 1.0},
         "b": {("s", "rep"): 0.5, ("s", "co"): 3.0}}


def test_propose_builds_every_sources_list():
    lists, scores = sources.propose(PAIRS, {"user_age": 40.0}, CUT, PLAN, _tables(),
                                    towers=[("t1", -0.5), ("e", -0.7), ("x", -0.9)])
    assert lists == {
        "rep": [("a", 2.0), ("b", 0.5)],
        # c: 3.0 * 0.2 + 1.0 * 0.5; e: 3.0 * 0.1; d: 1.0 * 0.25.
        "co": [("c", pytest.approx(1.1)), ("e", pytest.approx(0.3))],
        "pop": [("d", 5.0), ("a", 4.0)],
        "pop_age": [("g", 3.0)],
        # The user's weight on P1 (1.0) for each of its items, in their popularity order.
        "var": [("a2", 1.0), ("a", 1.0)],
        # The same new items for everyone, cut to the quota.
        "fresh": [("n1", 6.0), ("n2", 6.0)],
        # The towers' list is cut, never re-sorted: their scores may be below 0.
        "towers": [("t1", -0.5), ("e", -0.7)]}
    assert scores["co"]["d"] == pytest.approx(0.25) and scores["var"]["a3"] == 1.0


def test_propose_leaves_skipped_items_out_and_cuts_after():
    lists, _ = sources.propose(PAIRS, {"user_age": 40.0}, CUT, PLAN, _tables(),
                               skip={"a2", "c", "a"})
    assert lists["rep"] == [("b", 0.5)]
    assert [i for i, _ in lists["co"]] == ["e", "d"]
    assert lists["var"] == [("a3", 1.0)]
    assert lists["pop"] == [("d", 5.0)]  # a popular list is shorter by its skipped items
    assert "towers" not in lists  # no towers given: no list


def test_union_keeps_each_sources_rank_and_orders_by_the_best_rank():
    union = sources.union({"rep": [("a", 2.0), ("b", 0.5)], "pop": [("d", 5.0), ("a", 4.0)],
                           "co": [("c", 1.1)]})
    assert union == {"a": {"rep": (1, 2.0), "pop": (2, 4.0)}, "c": {"co": (1, 1.1)},
                     "d": {"pop": (1, 5.0)}, "b": {"rep": (2, 0.5)}}
    assert list(union) == ["a", "c", "d", "b"]


def test_signals_read_ranks_scores_and_the_users_events():
    signals = (
        F.Feature("rep_rank", F.Source.CANDIDATE, F.Kind.NUMERIC, signal="rep.rank"),
        F.Feature("co_score", F.Source.CANDIDATE, F.Kind.NUMERIC, signal="co.score"),
        F.Feature("buys", F.Source.CANDIDATE, F.Kind.NUMERIC, signal="pair.count",
                  event_type="purchase"),
        F.Feature("since", F.Source.CANDIDATE, F.Kind.NUMERIC, signal="pair.days_since",
                  event_type="purchase", default=365))
    p = _plan(_source("rep", "repurchase"), signals=signals)
    pair = {("n", "purchase"): 2, ("last", "purchase"): CUT - 3 * DAY}
    # b is proposed second by rep; its co-occurrence score counts whether or not
    # the co-occurrence source proposed it.
    assert sources.signals(p, CUT, {"rep": (2, 0.5)}, pair, None, {"co": {"b": 0.3}}, "b") == {
        "rep_rank": 0.5, "co_score": 0.3, "buys": 2.0, "since": 3.0}
    assert sources.signals(p, CUT, {}, None, None, {}, "z") == {
        "rep_rank": 0.0, "co_score": 0.0, "buys": 0.0, "since": 365.0}


def test_the_exclusion_rule_reads_the_last_event_of_its_type():
    p = _plan(_source("rep", "repurchase"), exclude=("purchase", 3 * DAY))
    pairs = {"a": {("last", "purchase"): CUT - 2 * DAY},
             "b": {("last", "purchase"): CUT - 5 * DAY},
             "c": {("last", "click"): CUT - DAY}}
    assert sources.excluded(pairs, CUT, p) == {"a"}
    assert sources.excluded(pairs, CUT, _plan(_source("rep", "repurchase"))) == set()


def test_the_latest_items_bound_a_users_state():
    pairs = [("a", {("last", "click"): 5}), ("b", {("last", "purchase"): 9}),
             ("c", {("last", "click"): 9}), ("d", {("last", "click"): 1})]
    assert [i for i, _ in sources.latest(pairs, 3)] == ["b", "c", "a"]
