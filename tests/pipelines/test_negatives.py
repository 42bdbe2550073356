"""Sampled negatives: candidates from earlier days only, weighted, seeded, never the user's own."""

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import negatives as N
from pipelines.options import pipeline_options
from shoprec.core import registry as F

S, K = F.Source, F.Kind
REGISTRY = F.Registry(features=(
    F.Feature("user_id", S.EVENT, K.ID), F.Feature("item_id", S.EVENT, K.ID),
    F.Feature("purchase", S.EVENT, K.LABEL, event_type="purchase"),
    F.Feature("online", S.EVENT, K.LABEL, event_type="purchase", column="channel",
              positive_values=("2",)),
))
DAY = N.DAY_S


def _positive(day, user, item):
    return {"user_id": user, "item_id": item, "timestamp": day * DAY, "sampled": 0,
            "purchase": 1, "online": 1}


def _negative(day, user, item):
    return {"user_id": user, "item_id": item, "timestamp": day * DAY, "sampled": 1,
            "purchase": 0, "online": 0}


def test_draw_is_seeded_distinct_and_skips_excluded_items():
    items, weights = ["a", "b", "c", "d"], [1, 1, 1, 100]
    first = N.draw(items, weights, 2, {"a"}, seed=7)
    assert first == N.draw(items, weights, 2, {"a"}, seed=7)
    assert len(set(first)) == 2 and "a" not in first
    assert sorted(N.draw(items, weights, 5, {"a"}, seed=1)) == ["b", "c", "d"]
    assert N.draw(["a"], [1], 2, {"a"}, seed=1) == []
    # Popularity weighting: the heavy item is drawn first almost always.
    assert sum(N.draw(items, weights, 1, set(), seed=s) == ["d"] for s in range(200)) > 180
    assert N.stable_seed("u1", 3) == N.stable_seed("u1", 3) != N.stable_seed("u1", 4)


def test_negatives_come_from_earlier_days_within_the_window():
    positives = [
        _positive(0, "u1", "A"),              # day 0: no earlier day, no negatives
        _positive(1, "u1", "B"),              # day 1: candidates {A}
        _positive(1, "u2", "A"),              # day 1: candidates {A} minus own A: none
        _positive(2, "u3", "C"),              # day 2: candidates {A (day 0, 1), B}
        _positive(2, "u3", "B"),              # ... B is u3's own purchase that day
        _positive(5, "u4", "D"),              # day 5, window 2: days 3-4 bought nothing
    ]
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        out = p | beam.Create(positives) | N.SampleNegatives(1, 2, seed=3, registry=REGISTRY)
        assert_that(out, equal_to([_negative(1, "u1", "A"), _negative(2, "u3", "A"),
                                   _negative(2, "u3", "A")]))


def test_pipeline_samples_what_the_day_function_samples():
    positives = [_positive(d, f"u{u}", f"i{(u * 7 + d) % 13}") for d in range(4) for u in range(6)]
    expected = []
    for day in range(4):
        candidates = [(p["item_id"], 1) for p in positives
                      if day - 3 <= p["timestamp"] // DAY < day]
        todays = [p for p in positives if p["timestamp"] // DAY == day]
        expected += N.sample_day(candidates, todays, 2, 11, ["purchase", "online"], "sampled")
    for row in expected:
        bought = {p["item_id"] for p in positives
                  if p["user_id"] == row["user_id"] and p["timestamp"] == row["timestamp"]}
        assert row["item_id"] not in bought
    assert len(expected) == 2 * 18  # day 0 has no candidates; each later positive gets 2
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        out = p | beam.Create(positives) | N.SampleNegatives(2, 3, seed=11, registry=REGISTRY)
        assert_that(out, equal_to(expected))
