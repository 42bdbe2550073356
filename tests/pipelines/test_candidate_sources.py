"""CandidateSources and SegmentPopular on a hand-worked log, and their bounded state."""

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import sources
from pipelines.candidate_sources import CandidateSources, SegmentPopular
from pipelines.options import pipeline_options
from shoprec.core.recommend_config import SourceConfig

DAY = 86400
C1, C2 = 10 * DAY, 20 * DAY


def _event(user, item, day, kind="purchase", second=0):
    return {"user_id": user, "item_id": item, "timestamp": day * DAY + second,
            "event_type": kind}


# u1 buys a and b on day 1, clicks c on day 12, buys a again on day 15; u2 buys a
# and c on day 2 and b on day 18; u3 buys b on day 25, after both cut-offs.
LOG = [_event("u1", "a", 1), _event("u1", "b", 1), _event("u1", "c", 12, "click"),
       _event("u1", "a", 15), _event("u2", "a", 2), _event("u2", "c", 2),
       _event("u2", "b", 18), _event("u3", "b", 25)]
PLAN = sources.Plan(
    (SourceConfig("rep", 5, "repurchase", (("purchase", 1.0), ("click", 0.5))),
     SourceConfig("co", 5, "co_occurrence", (("purchase", 1.0),), basket_s=DAY),
     SourceConfig("pop", 2, "popular", (("purchase", 1.0),), days=30),
     SourceConfig("pop_region", 2, "popular", (("purchase", 1.0),), days=30,
                  segment="user_region")),
    (), None, 200, ("purchase", 7))


def _state(p, log, plan=PLAN):
    cuts = p | "Cuts" >> beam.Create([C1, C2])
    items = p | "Items" >> beam.Create([])
    return p | "Log" >> beam.Create(log) | CandidateSources(plan, cuts, items)


def _round(ranked):
    return [(i, round(s, 4)) for i, s in ranked]


def test_pair_states_are_each_users_events_before_each_cut_off():
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        state = _state(p, LOG)
        pairs = state.pairs | beam.MapTuple(lambda key, pairs: (key, {
            item: (s.get(("n", "purchase"), 0), s.get(("n", "click"), 0), s[("s", "rep")])
            for item, s in pairs}))
        assert_that(pairs, equal_to([
            (("u1", C1), {"a": (1, 0, 1.0), "b": (1, 0, 1.0)}),
            (("u2", C1), {"a": (1, 0, 1.0), "c": (1, 0, 1.0)}),
            # The day-12 click weighs 0.5; u3's day-25 purchase is after both cut-offs.
            (("u1", C2), {"a": (2, 0, 2.0), "b": (1, 0, 1.0), "c": (0, 1, 0.5)}),
            (("u2", C2), {"a": (1, 0, 1.0), "b": (1, 0, 1.0), "c": (1, 0, 1.0)})]))


def test_neighbours_and_popular_lists_at_each_cut_off():
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        state = _state(p, LOG)
        # C1: baskets {a, b} and {a, c}: n_a 2, n_b = n_c = 1, each pair once.
        # C2: also {a} (u1, day 15) and {b} (u2, day 18): n_a 3, n_b 2, n_c 1.
        r = 1 / 2 ** 0.5
        assert_that(state.neighbours | "RoundN" >> beam.MapTuple(lambda k, v: (k, _round(v))),
                    equal_to([
                        (("co", C1, "a"), [("b", round(r, 4)), ("c", round(r, 4))]),
                        (("co", C1, "b"), [("a", round(r, 4))]),
                        (("co", C1, "c"), [("a", round(r, 4))]),
                        (("co", C2, "a"), [("c", round(3 ** -0.5, 4)),
                                           ("b", round(6 ** -0.5, 4))]),
                        (("co", C2, "b"), [("a", round(6 ** -0.5, 4))]),
                        (("co", C2, "c"), [("a", round(3 ** -0.5, 4))])]),
                    label="Neighbours")
        # Purchases in the 30 days before: a 2, b 1, c 1 at C1 (ties by id); a 3, b 2 at C2.
        assert_that(state.popular, equal_to([
            (("pop", C1, None), [("a", 2.0), ("b", 1.0)]),
            (("pop", C2, None), [("a", 3.0), ("b", 2.0)])]), label="Popular")


def test_segmented_popular_lists_count_each_segments_users():
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        state = _state(p, LOG)
        rows = p | "Users" >> beam.Create([("u1", {"user_region": "north"}),
                                           ("u2", {"user_region": "south"})])
        bundles = ({"row": rows, "pairs": state.pairs | beam.MapTuple(
                        lambda key, pairs: (key[0], (key[1], pairs)))}
                   | beam.CoGroupByKey()
                   | beam.MapTuple(lambda u, g: (g["row"][0], dict(g["pairs"]))))
        assert_that(bundles | SegmentPopular(PLAN), equal_to([
            (("pop_region", C1, "north"), [("a", 1.0), ("b", 1.0)]),
            (("pop_region", C1, "south"), [("a", 1.0), ("c", 1.0)]),
            (("pop_region", C2, "north"), [("a", 2.0), ("b", 1.0)]),
            (("pop_region", C2, "south"), [("a", 1.0), ("b", 1.0)])]))


def test_a_bots_state_and_basket_stay_bounded():
    # One user buys 40 items in one day: they keep their 3 latest items, and the
    # day's basket counts its first 4 items only.
    plan = sources.Plan(
        (SourceConfig("rep", 5, "repurchase", (("purchase", 1.0),)),
         SourceConfig("co", 5, "co_occurrence", (("purchase", 1.0),), basket_s=DAY,
                      max_basket=4)),
        (), None, 3, ("purchase", 7))
    bot = [_event("bot", f"x{i:02d}", 3, second=i) for i in range(40)]
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        state = _state(p, bot, plan)
        assert_that(state.pairs | beam.MapTuple(lambda key, pairs: (key, [i for i, _ in pairs])),
                    equal_to([(("bot", C1), ["x39", "x38", "x37"]),
                              (("bot", C2), ["x39", "x38", "x37"])]), label="Latest")
        assert_that(state.neighbours | beam.Filter(lambda kv: kv[0][1] == C1)
                    | beam.MapTuple(lambda k, v: (k[2], sorted(i for i, _ in v))),
                    equal_to([("x00", ["x01", "x02", "x03"]), ("x01", ["x00", "x02", "x03"]),
                              ("x02", ["x00", "x01", "x03"]), ("x03", ["x00", "x01", "x02"])]),
                    label="Basket")


def test_an_attribute_source_can_propose_an_item_with_no_event_yet():
    # Cold start: n has no event before either cut-off, but shares code X with a, so
    # the attribute source lists it among X's items (popularity 0, after a), as it does
    # H&M's new colours of a garment a customer bought.
    plan = sources.Plan((SourceConfig("var", 5, "attribute", (("purchase", 1.0),),
                                      attribute="code"),), (), None, 200, ("purchase", 30))
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        cuts = p | "Cuts" >> beam.Create([C1, C2])
        items = p | "Items" >> beam.Create([("a", {"code": "X"}), ("b", {"code": "Y"}),
                                            ("c", {"code": "Y"}), ("n", {"code": "X"})])
        state = p | "Log" >> beam.Create(LOG) | CandidateSources(plan, cuts, items)
        # Purchases in the 30 days before C1: a 2, b 1, c 1 (u1's click on c is
        # not a purchase); before C2: a 3, b 2, c 1.
        assert_that(state.members, equal_to([
            (("var", C1, "X"), [("a", 2), ("n", 0)]), (("var", C1, "Y"), [("b", 1), ("c", 1)]),
            (("var", C2, "X"), [("a", 3), ("n", 0)]), (("var", C2, "Y"), [("b", 2), ("c", 1)])]))


def test_a_new_source_lists_the_unsold_catalogue_by_its_categorys_recent_sales():
    # LOG, plus u2 buying b on day 5 and u3 buying m on days 15 and 16: m sells
    # between the cut-offs. Catalogue: a, m, o tops; b, c, n dresses; z a shoe.
    log = LOG + [_event("u2", "b", 5), _event("u3", "m", 15), _event("u3", "m", 16)]
    plan = sources.Plan((SourceConfig("fresh", 3, "new", (("purchase", 1.0),), days=30,
                                      attribute="type"),), (), None, 200, ("purchase", 7))
    catalogue = [("a", {"type": "top"}), ("b", {"type": "dress"}), ("c", {"type": "dress"}),
                 ("m", {"type": "top"}), ("n", {"type": "dress"}), ("o", {"type": "top"}),
                 ("z", {"type": "shoe"})]
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        cuts = p | "Cuts" >> beam.Create([C1, C2])
        items = p | "Items" >> beam.Create(catalogue)
        state = p | "Log" >> beam.Create(log) | CandidateSources(plan, cuts, items)
        # Before C1 (day 10): a bought twice (tops 2), b twice and c once (dresses 3);
        # unsold: m, n, o, z (m's purchases come after C1). Dresses first, then tops
        # by id; the shoe, of no sales, is fourth, past the quota.
        # Before C2 (day 20): tops a 3 + m 2 = 5, dresses b 3 + c 1 = 4; m has sold,
        # so is no longer new, and a, b, c never are.
        assert_that(state.popular, equal_to([
            (("fresh", C1, None), [("n", 3.0), ("m", 2.0), ("o", 2.0)]),
            (("fresh", C2, None), [("o", 5.0), ("n", 4.0), ("z", 0.0)])]))
    # The job's order is category_ranked's, popular_new's.
    assert sources.category_ranked(["z", "o", "n", "m"], {i: r["type"] for i, r in catalogue},
                                   {"a": 2, "b": 2, "c": 1}) == ["n", "m", "o", "z"]
