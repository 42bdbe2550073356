"""The ingest benchmark's baseline writes the raw examples the ingest job writes.

A tiny generated shop with many broken and duplicated rows (every kind the
generator makes) is ingested by the real job and by the pyarrow baseline;
their examples must be equal as multisets, feature by feature, and their
event dead letters equal by reason.
"""

import csv
import dataclasses
import os

import pytest
import yaml

from benchmarks import ingest as bench
from benchmarks import ingest_baseline
from shoprec.core import config as config_lib
from tests.pipelines.fixtures import TINY_SHOP, write_embeddings


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    from pipelines import generate, ingest

    root = tmp_path_factory.mktemp("shop")
    shop = dict(TINY_SHOP, generate=dict(TINY_SHOP["generate"], num_users=40,
                                         corrupt_fraction=0.03, duplicate_fraction=0.03))
    path = os.path.join(str(root), "config.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(shop, f)
    config = config_lib.load(path, run_dir=os.path.join(str(root), "run"))
    # Far more broken rows than a real log may have: the quality gate would stop ingest.
    config = dataclasses.replace(config, dataset=dataclasses.replace(
        config.data, quality=dataclasses.replace(config.data.quality, max_bad_fraction=0.5)))
    generate.run(config)
    with open(config.input_path(config.inputs.items)) as f:
        ids = [row["item_id"] for row in csv.DictReader(f)]
    # Half the items with a photo embedding, the rest as a failed photo leaves them.
    write_embeddings(config.layout.item_embeddings,
                     [(i, [0.25 * (n % 4)] * 32, n % 2) for n, i in enumerate(ids)])
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
