"""Tests for pipelines.behaviour_counts: train-window counts per item and stage, and targets."""

import math

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import behaviour_counts
from pipelines.options import pipeline_options
from pipelines.read import ReadTable
from shoprec.core import generated_shop
from shoprec.core.timestamps import parse_timestamp
from trainer import behaviour as B

DATASET = generated_shop.dataset(generated_shop.REGISTRY)
EVAL_START = "2026-11-12T00:00:00Z"
# Train-window (impressions, clicks, purchases) per item. i3 has fewer than
# MIN_EVENTS impressions: it counts towards the catalogue-wide rates but teaches nothing.
TRAIN = {"i1": (40, 8, 2), "i2": (20, 1, 0), "i3": (10, 3, 1), "i4": (30, 0, 1)}
MIN_EVENTS, SMOOTHING = 20, 10.0


def _events_csv(path):
    """The TRAIN counts before the eval start, plus events the count must not see."""
    lines = ["timestamp,user_id,item_id,event_type"]
    for item, counts in TRAIN.items():
        for stage, n in zip(("impression", "click", "purchase"), counts):
            lines += [f"2026-11-05T10:00:00Z,u1,{item},{stage}"] * n
    # The eval window: on (not only after) the eval start, then later.
    lines += ["2026-11-12T00:00:00Z,u2,i4,click"]
    lines += ["2026-11-13T09:00:00Z,u2,i1,impression", "2026-11-13T09:00:01Z,u2,i1,click"] * 5
    # Dead letters, counted: an event type outside the funnel, a bad timestamp.
    lines += ["2026-11-05T10:00:00Z,u3,i2,wishlist", "yesterday,u3,i2,click"]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_counts_only_the_train_window_through_the_composite(tmp_path):
    events = _events_csv(tmp_path / "events.csv")
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        read = p | "Read" >> ReadTable(events, "csv", "events")
        counted = read.main | "Count" >> behaviour_counts.CountItemEvents(
            DATASET, parse_timestamp(EVAL_START))
        # Columns: item_id, impression, click, add_to_cart, purchase, other.
        assert_that(counted.main, equal_to([
            "i1,40,8,0,2,0", "i2,20,1,0,0,0", "i3,10,3,0,1,0", "i4,30,0,0,1,0"]),
            label="Counts")
        assert_that(counted.dead_letter | beam.Map(lambda d: d.reason),
                    equal_to(["bad_event_type", "bad_timestamp"]), label="DeadLetters")


def test_job_writes_the_table_the_targets_are_computed_from(tmp_path):
    events = _events_csv(tmp_path / "events.csv")
    job = behaviour_counts.run(events, "csv", DATASET, parse_timestamp(EVAL_START),
                               str(tmp_path / "out" / "item_counts"),
                               str(tmp_path / "out" / "dead_letter"), [])
    counts = job["counts"]
    # 100 + 12 + 4 train-window events; 1 + 10 on or after the eval start.
    assert counts["behaviour/train_window_events"] == 116
    assert counts["behaviour/eval_window_events"] == 11
    assert counts["dead_letter/events/bad_event_type"] == 1
    assert counts["dead_letter/events/bad_timestamp"] == 1
    read = B.read_counts(job["outputs"]["counts"])
    assert read == {item: {"impression": n, "click": c, "add_to_cart": 0, "purchase": b,
                           "other": 0} for item, (n, c, b) in TRAIN.items()}

    got = B.targets(read, ["i1", "i2", "i3", "i4", "i5"], MIN_EVENTS, SMOOTHING)
    assert got.columns == ["click_logodds", "purchase_logodds"]
    # Catalogue-wide rates over every counted item, i3 included:
    # clicks 8+1+3+0 = 12, purchases 2+0+1+1 = 4, impressions 40+20+10+30 = 100.
    assert got.priors == {"click": pytest.approx(0.12), "purchase": pytest.approx(0.04)}
    # m = 10 pseudo-impressions: m * prior = 1.2 clicks and 0.4 purchases.
    # i1: (8 + 1.2) / (40 + 10) = 0.184 and (2 + 0.4) / 50 = 0.048.
    # i2: (1 + 1.2) / 30 and (0 + 0.4) / 30. i4: (0 + 1.2) / 40 = 0.03, (1 + 0.4) / 40 = 0.035.
    # i3 (10 impressions < 20) and i5 (no events) are no teachers: weight 0, target 0.
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    expected = [[logit(0.184), logit(0.048)], [logit(2.2 / 30), logit(0.4 / 30)],
                [0.0, 0.0], [logit(0.03), logit(0.035)], [0.0, 0.0]]
    np.testing.assert_allclose(got.values, expected, rtol=1e-6)
    np.testing.assert_array_equal(got.weight, [1, 1, 0, 1, 0])
