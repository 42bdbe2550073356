"""Robot filter: from the first burst on, per fixed window; anomaly rows per user."""

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.anomaly import FilterRobots, anomaly_row
from pipelines.options import pipeline_options


def _event(ts, user, item="i1", kind="click"):
    return {"timestamp": ts, "user_id": user, "item_id": item, "event_type": kind}


# Minute buckets, at most 3 events each. The bot is calm in minute 1, bursts in
# minute 10 (5 events) and logs once more in minute 20.
BOT = ([_event(61, "bot")] + [_event(600 + i, "bot", f"i{i}") for i in range(5)]
       + [_event(1200, "bot")])
HUMAN = [_event(600 + i, "human", f"i{i}") for i in range(3)]


def test_robot_events_from_the_first_burst_on_are_dead_letters():
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        out = p | beam.Create(BOT + HUMAN) | FilterRobots(60, 3)
        assert_that(out.main, equal_to([_event(61, "bot")] + HUMAN), label="Kept")
        assert_that(out.dead_letter | beam.Map(lambda d: (d.input, d.reason, d.record)),
                    equal_to([("events", "robot_user", f"{600 + i},bot,i{i},click")
                              for i in range(5)] + [("events", "robot_user", "1200,bot,i1,click")]),
                    label="Dead")
        assert_that(out.users, equal_to([
            {"user_id": "bot", "events": 7, "max_events_per_window": 5, "robotic_windows": 1,
             "robotic_from": 600, "score": round(5 / 3, 4)},
            {"user_id": "human", "events": 3, "max_events_per_window": 3, "robotic_windows": 0,
             "robotic_from": None, "score": 1.0}]), label="Users")


def test_no_limit_keeps_everything_but_still_scores():
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        out = p | beam.Create(BOT) | FilterRobots(60, 0)
        assert_that(out.main, equal_to(BOT), label="Kept")
        assert_that(out.users | beam.Map(lambda r: r["max_events_per_window"]), equal_to([5]),
                    label="Users")


def test_anomaly_row_of_a_user_with_two_bursts():
    row = anomaly_row("u", {1: 2, 5: 9, 7: 4}, 60, 3)
    assert (row["robotic_windows"], row["robotic_from"], row["score"]) == (2, 300, 3.0)


def test_pass_flagged_keeps_the_robots_events_and_still_flags_them():
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        out = p | beam.Create(BOT + HUMAN) | FilterRobots(60, 3, pass_flagged=True)
        assert_that(out.main, equal_to(BOT + HUMAN), label="Kept")
        assert_that(out.dead_letter, equal_to([]), label="Dead")
        assert_that(out.users | beam.Map(lambda r: (r["user_id"], r["robotic_from"])),
                    equal_to([("bot", 600), ("human", None)]), label="Users")
    # The bot's events from minute 10 on (5 + 1) passed instead of dying.
    counters = p.result.metrics().query()["counters"]
    assert {c.key.metric.name: c.committed for c in counters}["anomaly/passed_events"] == 6
