"""Labels without impressions: funnel pairs over the entire space, sampled positives."""

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.labels import (FunnelExamples, NextEventLabels, SampledPositives,
                              funnel_examples, next_event_labels, split_index)
from pipelines.options import pipeline_options
from shoprec.core import registry as F

S, K = F.Source, F.Kind
CART = F.Feature("cart", S.EVENT, K.LABEL, event_type="add_to_cart")
BUY = F.Feature("buy", S.EVENT, K.LABEL, event_type="purchase")
ONLINE = F.Feature("online", S.EVENT, K.LABEL, event_type="purchase", column="channel",
                   positive_values=("2",))
IDS = (F.Feature("user_id", S.EVENT, K.ID), F.Feature("item_id", S.EVENT, K.ID))
EVAL, TEST = 1000, 2000


def _event(ts, kind, user="u1", item="i1", **extra):
    return dict({"timestamp": ts, "user_id": user, "item_id": item, "event_type": kind}, **extra)


def _labels(events):
    return [(e["timestamp"], e["cart"], e["buy"])
            for e in funnel_examples(events, (CART, BUY), "click", (EVAL, TEST))]


def test_split_index():
    assert [split_index(t, (EVAL, TEST)) for t in (0, 999, 1000, 1999, 2000)] == [0, 0, 1, 1, 2]
    assert split_index(5000, (EVAL, None)) == 1


def test_buy_counts_over_every_view_not_only_carted_ones():
    assert _labels([_event(10, "click"), _event(20, "purchase")]) == [(10, 0, 1)]
    assert _labels([_event(10, "click"), _event(20, "add_to_cart"), _event(30, "purchase")]) == [
        (10, 1, 1)]


def test_one_example_per_split_at_the_first_view():
    events = [_event(10, "click"), _event(50, "click"), _event(60, "add_to_cart"),
              _event(1500, "click"), _event(2500, "click"), _event(2600, "purchase")]
    assert _labels(events) == [(10, 1, 0), (1500, 0, 0), (2500, 0, 1)]


def test_labels_never_read_a_later_split_or_an_earlier_event():
    # The cart precedes the view (it is history, not a label); the buy is in eval.
    assert _labels([_event(5, "add_to_cart"), _event(10, "click"), _event(1200, "purchase")]) == [
        (10, 0, 0)]
    # Same instant: the view comes first in the funnel, so a cart at its time counts.
    assert _labels([_event(10, "add_to_cart"), _event(10, "click")]) == [(10, 1, 0)]
    assert _labels([_event(10, "purchase")]) == []  # never viewed: no example


def test_funnel_examples_pipeline():
    registry = F.Registry(IDS + (CART, BUY))
    events = [_event(10, "click"), _event(20, "add_to_cart"), _event(15, "click", item="i2"),
              _event(3000, "click", user="u2")]
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        out = p | beam.Create(events) | FunnelExamples(registry, "click", (EVAL, TEST))
        assert_that(out, equal_to([
            {"user_id": "u1", "item_id": "i1", "timestamp": 10, "cart": 1, "buy": 0, "sampled": 0},
            {"user_id": "u1", "item_id": "i2", "timestamp": 15, "cart": 0, "buy": 0, "sampled": 0},
            {"user_id": "u2", "item_id": "i1", "timestamp": 3000, "cart": 0, "buy": 0,
             "sampled": 0}]))


def test_sampled_positives_check_the_label_column():
    registry = F.Registry(IDS + (BUY, ONLINE))
    events = [_event(10, "purchase", channel="1"), _event(20, "purchase", channel="2"),
              _event(30, "other", channel="2")]
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        out = p | beam.Create(events) | SampledPositives(registry)
        assert_that(out | beam.Map(lambda r: (r["timestamp"], r["buy"], r["online"], r["sampled"])),
                    equal_to([(10, 1, 0, 0), (20, 1, 1, 0)]))


CATEGORY = F.Feature("item_category", S.ITEM, K.CATEGORICAL, column="category")
NEXT_CATEGORY = F.Feature("next_click_category", S.NEXT, K.CATEGORICAL, history_of="item_category",
                          vocabulary="item_category", event_type="click", required=False,
                          default="")
HAS_NEXT = F.Feature("has_next_click", S.NEXT, K.LABEL, event_type="click")
ITEMS = {"i1": {"item_category": "shoes"}, "i2": {"item_category": "bags"},
         "i3": {"item_category": "hats"}}


def _example(ts, item, user="u1"):
    return {"timestamp": ts, "user_id": user, "item_id": item}


def test_next_click_is_the_first_later_click_on_another_item():
    clicks = [(15, "click", "i1"), (30, "click", "i2"), (30, "impression", "i3"),
              (50, "click", "i3")]
    rows = next_event_labels([_example(40, "i3"), _example(10, "i1"), _example(30, "i1"),
                              _example(50, "i2")], clicks, (NEXT_CATEGORY, HAS_NEXT), ITEMS)
    # At 10 on i1: its own click at 15 is skipped, i2's at 30 is next (bags).
    # At 30: the click at 30 is not strictly later; i3's at 50 is. At 40 on i3:
    # the only later click is on i3 itself. At 50: nothing later.
    assert [(r["timestamp"], r["next_click_category"], r["has_next_click"]) for r in rows] == [
        (10, "bags", 1), (30, "hats", 1), (40, "", 0), (50, "", 0)]


def test_next_event_labels_pipeline_groups_per_user():
    registry = F.Registry(IDS + (CATEGORY, NEXT_CATEGORY, HAS_NEXT))
    events = [_event(20, "click", item="i2"), _event(5, "click", user="u2", item="i1")]
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        out = (p | "Examples" >> beam.Create([_example(10, "i1"), _example(1, "i3", user="u2")])
               | NextEventLabels(registry, p | "Events" >> beam.Create(events),
                                 p | "Items" >> beam.Create(sorted(ITEMS.items()))))
        assert_that(out | beam.Map(lambda r: (r["user_id"], r["next_click_category"],
                                              r["has_next_click"])),
                    equal_to([("u1", "bags", 1), ("u2", "shoes", 1)]))


def test_next_features_are_targets_never_inputs():
    registry = F.Registry(IDS + (CATEGORY, NEXT_CATEGORY, HAS_NEXT))
    assert [f.name for f in registry.inputs()] == ["user_id", "item_id", "item_category"]
    assert "next_click_category" not in registry.example_names(include_labels=False)
    assert "next_click_category" in registry.example_names()
    assert registry.event_labels() == ()
