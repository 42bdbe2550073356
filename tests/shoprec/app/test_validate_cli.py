"""`shoprec validate` and `shoprec ingest` on the command line: the report, and the gate."""

import csv
import json
import os

import yaml

from pipelines import generate
from shoprec.app import cli
from shoprec.core import config as config_lib
from shoprec.core.timestamps import parse_timestamp


def _config_file(tmp_path, max_bad_fraction):
    """A tiny generated shop with 2% corrupt rows, and a config over it."""
    text = {
        "generate": {"num_users": 40, "num_items": 12, "days": 3, "sessions_per_user": 2.0,
                     "corrupt_fraction": 0.02},
        "ingest": {"eval_start": "2026-11-03T00:00:00Z", "num_shards": 1},
        "embed": {"epochs": 1, "min_steps": 20},
        "dataset": {"quality": {"max_bad_fraction": max_bad_fraction}},
    }
    path = tmp_path / f"config-{max_bad_fraction}.yaml"
    path.write_text(yaml.safe_dump(text))
    return str(path)


def test_validate_prints_the_report_and_ingest_fails_over_the_threshold(
        tmp_path, capsys, monkeypatch):
    generous = _config_file(tmp_path, 0.5)
    # The shop's files lie in ./shop, given as a relative --data: it resolves
    # against where the command runs, not against the run folder.
    generate.run(config_lib.load(generous, run_dir=str(tmp_path / "shop")))
    monkeypatch.chdir(tmp_path)
    run_dir = str(tmp_path / "run")
    flags = ["--run_dir", run_dir, "--data", "shop"]
    # Ingest joins the photo embeddings, so `shoprec embed` comes first.
    assert cli.main(["embed", "--config", generous] + flags) == 0
    with open(os.path.join(run_dir, "embed", "report.json")) as f:
        embedded = json.load(f)
    assert embedded["status"] == "ok" and embedded["items"] == 12
    capsys.readouterr()

    assert cli.main(["validate", "--config", generous] + flags) == 0
    out = capsys.readouterr().out
    assert "data report: generated (ok)" in out and "label rates: click" in out
    with open(os.path.join(run_dir, "validate", "ingest", "report.json")) as f:
        report = json.load(f)
    # One example per clean impression: truth.csv lists exactly those (corrupt
    # rows are not in it, a duplicate's original is), so before the eval start
    # the two counts agree.
    config = config_lib.load(generous, run_dir=str(tmp_path / "shop"))
    with open(config.input_path(config.inputs.truth)) as f:
        before_eval = sum(parse_timestamp(r["timestamp"]) < config.eval_start_ts
                          for r in csv.DictReader(f))
    assert report["status"] == "ok" and report["splits"]["train"]["examples"] == before_eval
    assert not os.path.exists(os.path.join(run_dir, "ingest"))  # validate writes no examples

    strict = _config_file(tmp_path, 0.001)
    assert cli.main(["ingest", "--config", strict] + flags) == 1
    captured = capsys.readouterr()
    assert "data report: generated (failed)" in captured.out
    assert "input 'events'" in captured.err and "bad_timestamp=" in captured.err
