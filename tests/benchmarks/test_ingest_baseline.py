"""The ingest benchmark's baseline writes the raw examples the ingest job writes.

A tiny generated shop with many broken and duplicated rows (every kind the
generator makes) is ingested by the real job and by the pyarrow baseline;
their examples must be equal as multisets, feature by feature, and their
event dead letters equal by reason.
"""

import dataclasses
import os

import pytest

from benchmarks import ingest as bench
from benchmarks import ingest_baseline
from tests.pipelines.fixtures import broken_shop


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    from pipelines import ingest

    config = broken_shop(tmp_path_factory.mktemp("shop"))
    report = ingest.run(config)
    baseline = ingest_baseline.ingest(config, os.path.join(config.run_dir, bench.BASELINE_DIR))
    return config, report, baseline


def test_same_examples_in_every_split(ingested):
    config, report, baseline = ingested
    rows = bench.check_same_examples(config)
    assert rows == baseline["rows"] == {s: report["counts"][f"examples/{s}"]
                                        for s in config.splits}
    assert rows["train"] > 0 and rows["eval"] > 0


def test_same_event_dead_letters(ingested):
    _, report, baseline = ingested
    ours = {k: v for k, v in report["counts"].items() if k.startswith("dead_letter/events/") and v}
    theirs = {k: v for k, v in baseline["counts"].items()
              if k.startswith("dead_letter/events/") and v}
    assert ours == theirs
    # The shop exercised the cleaning: broken rows of every kind and copies.
    for reason in ("bad_timestamp", "unknown_item", "wrong_column_count", "duplicate_event"):
        assert ours.get(f"dead_letter/events/{reason}", 0) > 0, reason


def test_refuses_what_it_does_not_implement(ingested):
    config = ingested[0]
    funnel = dataclasses.replace(config, dataset=dataclasses.replace(config.data,
                                                                   labels="funnel"))
    with pytest.raises(NotImplementedError, match="impression labels"):
        ingest_baseline.check_supported(funnel)
