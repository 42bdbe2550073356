"""The event log's time range, split, robot ceiling and limits, on hand-made times."""

import pytest

from shoprec.core import infer_log
from shoprec.core.infer import Undecided

DAY = infer_log.DAY
START = 1_700_006_400  # 2023-11-15T00:00:00Z


def test_split_at_day_boundaries_near_80_and_90_percent():
    # Ten days, 100 events a day at noon and 13:00: 80% of events precede day 8.
    times = [START + d * DAY + h * 3600 for d in range(10) for h in [12, 13] for _ in range(50)]
    eval_start, test_start, why = infer_log.split(times)
    assert (eval_start, test_start) == ("2023-11-23", "2023-11-24")
    assert why == ("the log runs 2023-11-15 to 2023-11-24 (9.0 days): train before 2023-11-23 "
                   "(80% of events), eval from there, test from 2023-11-24 (10%)")
    # Two days: hour boundaries, and no test split when 90% falls on the same hour.
    short = [START + h * 3600 for h in range(40)]
    assert infer_log.split(short)[:2] == ("2023-11-16T08:00:00Z", "2023-11-16T12:00:00Z")
    with pytest.raises(Undecided, match="too short to split"):
        infer_log.split([START] * 100)


def test_stray_times_days_away_fall_outside_the_range():
    times = [START + d * DAY + 5 for d in range(10) for _ in range(1000)]
    assert infer_log.time_range(times)[0] is None
    strays = [START - 80 * DAY, START + 30 * DAY]
    # An event the day before the first keeps its day (adjacent); far ones fall out.
    window, outside, why = infer_log.time_range(times + strays + [START - 10])
    assert window == (START - DAY, START + 10 * DAY) and outside == 2
    assert why == ("2 events (0.02%) lie days away from the rest: outside [2023-11-14, "
                   "2023-11-25), dead letters")


def test_robot_ceiling_duplicates_and_history_length():
    users = ["a"] * 20 + ["b"] * 3
    times = [START + i for i in range(20)] + [START + 120, START + 180, START + 240]
    assert infer_log.robot_ceiling(users, times) == (
        60, 40, "the busiest user-minute of the sample has 20 events: a user over 40 in one "
                "minute is taken for a robot")
    assert infer_log.robot_ceiling(["a", "a"], [START, START + DAY])[0] == DAY
    rows = [{"u": "a", "t": "1"}, {"t": "1", "u": "a"}, {"u": "b", "t": "1"}, {"u": "a", "t": "1"}]
    assert infer_log.duplicate_share(rows) == 0.5
    assert infer_log.history_length(["a"] * 7 + ["b", "c", "d"] * 140)[0] == 50
    assert infer_log.history_length(["a"] * 7 + ["b"] * 3)[0] == 10
    assert infer_log.limit_for(0.687) == 0.78
    assert infer_log.id_embedding_dim(100, 1000, "cart") == (4, "0.10 cart events per id: "
                                                                "embeddings of 4")
    with pytest.raises(Undecided, match="events: 999 rows; init needs at least 1,000"):
        infer_log.enough_events(999, True)
