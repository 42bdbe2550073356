"""The data report from counters, and the quality gate's messages."""

import pytest

from pipelines import report as R

COUNTS = {
    "rows_read/events": 1000, "rows_valid/events": 985,
    "dead_letter/events/bad_timestamp": 6, "dead_letter/events/wrong_column_count": 9,
    "dead_letter/events/unknown_item": 300,
    "rows_read/items": 10, "rows_valid/items": 10,
    "clean/users": 7, "clean/items": 9, "clean/events/click": 40, "clean/events/purchase": 5,
    "units_collapsed/events": 3, "anomaly/robot_users": 1,
    "examples/train": 8, "positives/train/buy": 2, "sampled/train": 4,
    "history_length/train/0": 2, "history_length/train/3": 6,
    "examples/eval": 0,
}


def test_report_sections_from_counters():
    report = R.build(COUNTS, ("train", "eval"), ("buy",), "toy")
    events = report["inputs"]["events"]
    assert events["bad_fraction"] == 0.315
    assert events["dead_letters"] == {"bad_timestamp": 6, "unknown_item": 300,
                                      "wrong_column_count": 9}
    assert report["inputs"]["items"]["bad_fraction"] == 0.0
    assert "users" not in report["inputs"]  # nothing read, nothing rejected
    assert report["events"] == {"users": 7, "items": 9, "by_type": {"click": 40, "purchase": 5},
                                "units_collapsed": 3, "robot_users": 1}
    train = report["splits"]["train"]
    assert train["label_rates"] == {"buy": 0.25} and train["sampled"] == 4
    assert train["history_length"] == {"mean": 2.25, "p50": 3, "p90": 3, "max": 3, "empty": 2,
                                       "histogram": {"0": 2, "3": 6}}
    assert report["splits"]["eval"]["label_rates"] == {"buy": None}
    text = R.render(dict(report, status="ok"))
    assert "unknown_item" in text and "history length mean 2.25" in text


def test_gate_names_the_input_and_its_reasons():
    report = R.build(COUNTS, ("train",), ("buy",), "toy")
    with pytest.raises(R.DataQualityError) as err:
        R.check_quality(report, 0.01, {})
    message = str(err.value)
    assert "input 'events'" in message and "31.50% of 1000 rows" in message
    assert "unknown_item=300, wrong_column_count=9, bad_timestamp=6" in message
    assert err.value.report is report


def test_a_reason_with_its_own_limit_is_judged_apart():
    report = R.build(COUNTS, ("train",), ("buy",), "toy")
    assert R.problems(report, 0.02, {"unknown_item": 0.5}) == []
    (problem,) = R.problems(report, 0.01, {"unknown_item": 0.5})
    assert problem.startswith("input 'events': 1.50% of 1000 rows")
    (problem,) = R.problems(report, 0.02, {"unknown_item": 0.2})
    assert "unknown_item dead letters (max 20.00% for unknown_item)" in problem
