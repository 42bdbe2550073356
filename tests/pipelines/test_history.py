"""Point-in-time history: hand-derived states, independent of the bucket width."""

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import history as H
from pipelines import keyed
from pipelines.options import pipeline_options
from shoprec.core import registry as F

S, K = F.Source, F.Kind
REGISTRY = F.Registry(features=(
    F.Feature("user_id", S.EVENT, K.ID),
    F.Feature("item_id", S.EVENT, K.ID),
    F.Feature("item_category", S.ITEM, K.CATEGORICAL),
    F.Feature("hist_items", S.HISTORY, K.HISTORY, history_of="item_id", max_length=2,
              vocabulary="item_id"),
    F.Feature("hist_cats", S.HISTORY, K.HISTORY, history_of="item_category", max_length=3,
              vocabulary="item_category"),
    F.Feature("hist_clicks", S.HISTORY, K.NUMERIC, event_type="click"),
    F.Feature("hist_impressions", S.HISTORY, K.NUMERIC, event_type="impression"),
    F.Feature("hist_item_matches", S.HISTORY, K.NUMERIC, history_of="item_id"),
    F.Feature("click", S.EVENT, K.LABEL, event_type="click"),
))
ITEMS = [("i1", {"item_id": "i1", "item_category": "c1"}),
         ("i2", {"item_id": "i2", "item_category": "c2"}),
         ("i3", {"item_id": "i3", "item_category": "c1"})]


def _event(ts, user, item, kind):
    return {"timestamp": ts, "user_id": user, "item_id": item, "event_type": kind}


EVENTS = [
    _event(10, "u1", "i1", "impression"), _event(20, "u1", "i1", "click"),
    _event(150, "u1", "i2", "purchase"), _event(150, "u1", "i2", "click"),
    _event(230, "u1", "i3", "click"), _event(420, "u1", "i1", "click"),
    _event(50, "u2", "i3", "click"),
]


def _history(items, cats, clicks, impressions):
    return {"hist_items": items, "hist_cats": cats, "hist_clicks": float(clicks),
            "hist_impressions": float(impressions)}


# Interactions are clicks and purchases; lists are most recent first; at t=150 the
# click comes before the purchase (funnel order). Nothing at or after t counts.
AFTER_230 = _history(["i3", "i2"], ["c1", "c2", "c2"], 3, 1)
EXPECTED = [
    ("u1", 20, _history([], [], 0, 1)),
    ("u1", 150, _history(["i1"], ["c1"], 1, 1)),
    ("u1", 231, AFTER_230),
    ("u1", 300, AFTER_230),  # a bucket with no events of its own
    ("u1", 420, AFTER_230),  # the click at 420 itself is not history
    ("u2", 50, _history([], [], 0, 0)),
    ("u2", 51, _history(["i3"], ["c1"], 1, 0)),
]
FINAL = [("u1", _history(["i1", "i3"], ["c1", "c1", "c2"], 4, 1)),
         ("u2", _history(["i3"], ["c1"], 1, 0))]


@pytest.mark.parametrize("bucket_s", [1, 100, 10 ** 9])
def test_history_is_strictly_before_and_the_same_for_any_bucket(bucket_s):
    examples = [{"user_id": u, "item_id": "i1", "timestamp": t} for u, t, _ in EXPECTED]
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        out = p | "Examples" >> beam.Create(examples) | H.AddHistory(
            REGISTRY, ("click", "purchase"), bucket_s, p | "Events" >> beam.Create(EVENTS),
            p | "Items" >> beam.Create(ITEMS))
        assert_that(out.main, equal_to([
            ({"user_id": u, "item_id": "i1", "timestamp": t}, h) for u, t, h in EXPECTED]),
            label="Examples")
        assert_that(out.users, equal_to(FINAL), label="Final")


def test_state_keeps_the_last_n_and_all_counts():
    entries = [(t, 1, "click", (f"i{t}",)) for t in range(5)]
    state = H.advance(H.State(), entries, ("click",), cap=2)
    assert state == H.State(last=(("i3",), ("i4",)), counts=(("click", 5),))
    merged = H.merge(state, H.State(last=(("i9",),), counts=(("click", 1), ("other", 2))), 2)
    assert merged == H.State(last=(("i4",), ("i9",)), counts=(("click", 6), ("other", 2)))


def test_matches_count_the_example_value_in_its_history_list():
    row = {"item_id": "i1", "hist_items": ["i1", "i2", "i1"], "hist_cats": []}
    assert H.add_matches(row, REGISTRY)["hist_item_matches"] == 2.0
    assert H.empty_history(REGISTRY) == _history([], [], 0, 0)


def _definition(example, events, cap):
    """The history of an example from the user's whole log: what AddHistory must give."""
    cats = dict(ITEMS)
    entries = sorted((e["timestamp"], H._ORDER[e["event_type"]], e["event_type"],
                      (e["item_id"], cats[e["item_id"]]["item_category"]))
                     for e in events if e["user_id"] == example["user_id"]
                     and e["timestamp"] < example["timestamp"])
    return H.history_features(H.advance(H.State(), entries, ("click", "purchase"), cap),
                              REGISTRY)


def test_a_bot_with_a_day_of_events_is_never_one_group():
    """A bot with 1,200 events and examples inside 40 seconds of one day bucket: the
    streamed history equals the definition, and no grouping step lists more of it than
    its 40 seconds (a group of the bot's day of events and examples would hold 2,400)."""
    kinds = ("impression", "click", "purchase")
    events = EVENTS + [_event(5000 + k % 40, "bot", f"i{1 + k % 3}", kinds[k % 3])
                       for k in range(1200)]
    examples = [{"user_id": e["user_id"], "item_id": "i1", "timestamp": e["timestamp"]}
                for e in events]
    pipeline = beam.Pipeline(options=pipeline_options([]))
    out = pipeline | "Examples" >> beam.Create(examples) | H.AddHistory(
        REGISTRY, ("click", "purchase"), 86400, pipeline | "Events" >> beam.Create(events),
        pipeline | "Items" >> beam.Create(ITEMS))
    assert_that(out.main, equal_to([(e, _definition(e, events, H.cap_of(REGISTRY)))
                                    for e in examples]))
    held = keyed.largest_held(pipeline.run())
    assert held["history/seconds_of_bucket"] <= 2 * 40
    assert held["history/buckets_of_user"] <= 2
