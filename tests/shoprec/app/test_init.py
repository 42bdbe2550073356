"""``shoprec init`` on files it was not written against: the config it writes runs every stage.

A tiny generated shop goes ``init`` → ``shoprec run --date`` with no edit in
between (one epoch, a short photo encoder and the gate's floor at 0 are
init's own flags); the same files as Parquet with renamed columns give the
same config but for the names. Each case the data cannot decide stops with
one line naming the flag that settles it, and exit 2.
"""

import csv
import dataclasses
import os
import re

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines import generate
from shoprec.app import cli
from shoprec.core import config as config_lib
from shoprec.core.errors import ConfigError

DATE = "2026-12-01"
# Keeps a run tiny; the config init writes is otherwise the one a user gets.
SMALL = ["--epochs", "1", "--encoder_steps", "20", "--min_auc", "0"]
STAGES = ("embed", "ingest", "featurize", "train", "push", "score", "recommend", "report")


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A small generated shop's raw files (with the demo's few broken rows and photos)."""
    root = tmp_path_factory.mktemp("shop")
    config = config_lib.load(run_dir=str(root))
    generate.run(dataclasses.replace(config, generate=dataclasses.replace(
        config.generate, num_users=80, num_items=24, days=6, sessions_per_user=3.0)))
    return root / "raw"


def _init(tmp_path, *argv):
    out = tmp_path / "shop.yaml"
    code = cli.main(["init", *argv, "--out", str(out), "--run_dir", str(tmp_path / "runs")])
    return code, out


def run_everything(tmp_path, *argv):
    """``init`` then ``shoprec run --date`` on what it wrote; returns the config."""
    code, out = _init(tmp_path, *argv, *SMALL)
    assert code == 0
    assert cli.main(["run", "--config", str(out), "--date", DATE]) == 0
    config = config_lib.load(str(out), date=DATE)
    wanted = [s for s in STAGES if s != "embed" or config.registry.embedding_feature()]
    for stage in wanted:
        assert os.path.exists(os.path.join(config.layout.stage_dir(stage), "_SUCCESS")), stage
    assert os.path.getsize(os.path.join(config.run_dir, "report", "index.html")) > 10_000
    return config


def test_generated_shop_runs_every_stage_from_the_config_init_writes(shop, tmp_path, capsys):
    config = run_everything(tmp_path, "--events", str(shop / "events.csv"),
                            "--items", str(shop / "items.csv"), "--users",
                            str(shop / "users.csv"), "--images", str(shop / "images"))
    printed = capsys.readouterr().out
    # The demo's corrupt_fraction breaks about one timestamp in a thousand.
    assert re.search(r"timestamp   timestamp: (99\.\d|100\.0)% of [\d,]+ values parse as iso",
                     printed), printed
    data = config.data
    assert (data.labels, data.events.user_id, data.items.image_path) == (
        "impressions", "user_id", "image_path")
    assert {f.name for f in config.registry.labels()} == {"click", "purchase"}


def _renamed_parquet(source, target, names):
    # The shop's few broken rows are left behind, as a converter would.
    table = pa_csv.read_csv(
        source, parse_options=pa_csv.ParseOptions(invalid_row_handler=lambda row: "skip"),
        convert_options=pa_csv.ConvertOptions(
            column_types={c: pa.string() for c in ("user_id", "item_id")}))
    pq.write_table(table.rename_columns([names.get(c, c) for c in table.column_names]), target)


def test_parquet_with_renamed_columns_gives_the_same_config(shop, tmp_path):
    names = {"user_id": "visitorId", "item_id": "productId", "timestamp": "eventTime",
             "event_type": "action", "category": "dept"}
    os.makedirs(tmp_path / "pq")
    for table in ("events", "items", "users"):
        _renamed_parquet(str(shop / f"{table}.csv"), str(tmp_path / "pq" / f"{table}.parquet"),
                         names)
    configs = []
    for folder, ext in ((shop, "csv"), (tmp_path / "pq", "parquet")):
        code, out = _init(tmp_path / ext, *[a for t in ("events", "items", "users")
                                           for a in (f"--{t}", str(folder / f"{t}.{ext}"))])
        assert code == 0
        configs.append(yaml.safe_load(out.read_text()))
    csv_data, pq_data = (c["dataset"] for c in configs)
    assert pq_data["events"]["user_id"] == "visitorId" and pq_data["items"]["key"] == "productId"
    assert configs[1]["inputs"]["format"] == "parquet"
    # The same features, but the renamed columns (pyarrow reads the times as timestamps).
    renamed = {v: k for k, v in names.items()}
    assert [(f["name"].replace("dept", "category"), f["kind"]) for f in pq_data["features"]] == [
        (f["name"], f["kind"]) for f in csv_data["features"]]
    assert {renamed.get(c, c) for c in pq_data["events"]["columns"]} == set(
        csv_data["events"]["columns"])
    assert (pq_data["labels"], pq_data["events"]["event_types"]) == (
        csv_data["labels"], csv_data["events"]["event_types"])


def _log(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


UNDECIDED = {
    "no timestamp": (["who", "what", "sku"], lambda i: (f"u{i % 9}", "view", f"s{i % 13}"),
                     "events: no column parses as a timestamp; pass --timestamp_col COLUMN"),
    "two user ids": (["ts", "user_id", "customer_id", "item_id"],
                     lambda i: (1700000000 + 60 * i, f"u{i % 9}", f"c{i % 9}", f"i{i % 13}"),
                     "events: two plausible user ids, user_id and customer_id; pass "
                     "--user_col COLUMN"),
    "unknown events": (["ts", "user_id", "item_id", "event"],
                       lambda i: (1700000000 + 60 * i, f"u{i % 9}", f"i{i % 13}",
                                  ["view", "view", "zap"][i % 3]),
                       "events.event: values 'zap' (33.3%) are no known event type; pass "
                       "--event_map click=view,other=zap"),
    "too few rows": (["ts", "user_id", "item_id"],
                     lambda i: (1700000000 + 60 * i, f"u{i % 9}", f"i{i % 13}"),
                     "events: 300 rows; init needs at least 1,000 to infer types, a funnel and "
                     "a time split: give it a longer log"),
}


@pytest.mark.parametrize("case", sorted(UNDECIDED))
def test_what_the_data_cannot_decide_is_one_line_and_exit_2(case, tmp_path, capsys):
    header, row, message = UNDECIDED[case]
    events = _log(tmp_path / "log.csv", header,
                  [row(i) for i in range(300 if case == "too few rows" else 1200)])
    code, out = _init(tmp_path, "--events", events)
    captured = capsys.readouterr()
    assert code == ConfigError.exit_code == 2
    assert captured.err.splitlines() == [f"shoprec init: {message}"]
    assert "Traceback" not in captured.out and not out.exists()
