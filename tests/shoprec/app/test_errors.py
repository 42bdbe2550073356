"""User mistakes and bad inputs on the command line: one line, a documented code, no traceback.

Each case of issue 15 runs ``shoprec STAGE`` through ``cli.main`` on real
files and checks the exit code, the ``shoprec STAGE: ...`` line and that no
traceback is printed (``--verbose`` prints one).
"""

import csv
import json
import os

import pytest
import yaml

from pipelines import generate
from shoprec.app import cli
from shoprec.core import config as config_lib
from shoprec.core.errors import (CRASH_EXIT_CODE, ConfigError, InputEmptyError,
                                 InputMissingError, StageOrderError)
from shoprec.core.layout import success_marker
from tests.pipelines.fixtures import write_embeddings


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A tiny generated shop (raw files only) and a config file over it."""
    root = tmp_path_factory.mktemp("shop")
    text = {"generate": {"num_users": 30, "num_items": 10, "days": 3, "sessions_per_user": 2.0},
            "ingest": {"eval_start": "2026-11-03T00:00:00Z", "num_shards": 1}}
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(text))
    generate.run(config_lib.load(str(path), run_dir=str(root / "data")))
    return root


def _run(shop, tmp_path, stage, *extra, events=None, items=None):
    """``shoprec STAGE`` over a copy of the shop's inputs (events / items text replaced)."""
    data = tmp_path / "data" / "raw"
    data.mkdir(parents=True, exist_ok=True)
    for name, text in (("events.csv", events), ("items.csv", items), ("users.csv", None)):
        source = (shop / "data" / "raw" / name).read_text()
        if text is not False:
            (data / name).write_text(source if text is None else text)
    run_dir = tmp_path / "run"
    config = config_lib.load(str(shop / "config.yaml"), run_dir=str(run_dir))
    with open(shop / "data" / "raw" / "items.csv") as f:
        ids = [row["item_id"] for row in csv.DictReader(f)]
    # A finished embed stage's table, as `shoprec embed` would leave it.
    write_embeddings(config.layout.item_embeddings, [(i, [0.0] * 32, 0) for i in ids])
    argv = [stage, "--config", str(shop / "config.yaml"), "--run_dir", str(run_dir),
            "--data", str(tmp_path / "data"), *extra]
    return cli.main(argv), config


def _one_line(capsys, stage):
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    lines = [line for line in captured.err.splitlines() if line.startswith(f"shoprec {stage}:")]
    assert len(lines) == 1
    return lines[0]


def _header(shop, name):
    return (shop / "data" / "raw" / name).read_text().split("\n", 1)[0] + "\n"


def test_an_events_file_with_only_its_header_fails_ingest(shop, tmp_path, capsys):
    code, config = _run(shop, tmp_path, "ingest", events=_header(shop, "events.csv"))
    assert code == InputEmptyError.exit_code == 4
    line = _one_line(capsys, "ingest")
    assert "input 'events' has 0 data rows (dataset.quality.min_rows is 1)" in line
    # The report says why, in the staging place; nothing is published, nothing a later
    # stage would accept is left.
    staged = config.layout.staged("ingest")
    with open(staged.ingest_report) as f:
        assert json.load(f)["status"] == "failed"
    assert not os.path.exists(config.layout.ingest_dir)
    assert not os.path.exists(success_marker(staged.ingest_dir))
    assert not os.path.exists(os.path.dirname(staged.examples("train")))


def test_an_empty_events_file_fails_ingest(shop, tmp_path, capsys):
    code, _ = _run(shop, tmp_path, "ingest", events="")
    assert code == 4
    line = _one_line(capsys, "ingest")
    assert "events input:" in line and "events.csv is empty: no header line" in line


def test_a_missing_items_file_fails_ingest(shop, tmp_path, capsys):
    code, _ = _run(shop, tmp_path, "ingest", items=False)
    assert code == InputMissingError.exit_code == 3
    line = _one_line(capsys, "ingest")
    assert "items input: no input file matches" in line and "items.csv" in line


def test_train_before_featurize_and_score_before_train(shop, tmp_path, capsys):
    code, config = _run(shop, tmp_path, "train")
    assert code == StageOrderError.exit_code == 5
    assert _one_line(capsys, "train") == (
        f"shoprec train: no featurize output at {config.layout.featurize_dir}: run "
        f"`shoprec featurize` first")
    code, config = _run(shop, tmp_path, "score")
    assert code == 5
    assert "run `shoprec ingest` first" in _one_line(capsys, "score")


def test_ingest_refuses_the_table_of_an_embed_stage_that_failed(shop, tmp_path, capsys):
    # What `shoprec embed` leaves when its quality gate fails: shards and a
    # failed report, no success marker (tests/shoprec/app/test_embed.py).
    config = config_lib.load(str(shop / "config.yaml"), run_dir=str(tmp_path / "run"))
    write_embeddings(config.layout.item_embeddings, [("i0", [0.0] * 32, 0)])
    os.remove(success_marker(config.layout.embed_dir))
    with open(config.layout.embed_report, "w") as f:
        json.dump({"status": "failed"}, f)
    argv = ["ingest", "--config", str(shop / "config.yaml"), "--run_dir", str(tmp_path / "run"),
            "--data", str(shop / "data")]
    assert cli.main(argv) == 5
    assert _one_line(capsys, "ingest") == (
        f"shoprec ingest: `shoprec embed` failed: see {config.layout.embed_report}; fix what "
        f"it names and run `shoprec embed` again")
    assert not os.path.exists(config.layout.ingest_dir)


def test_verbose_shows_the_traceback(shop, tmp_path, capsys, monkeypatch):
    code, _ = _run(shop, tmp_path, "train", "--verbose")
    assert code == 5
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("SHOPREC_VERBOSE", "1")
    assert _run(shop, tmp_path, "train")[0] == 5
    err = capsys.readouterr().err
    assert "Traceback" in err and "StageOrderError" in err


def test_a_bad_config_is_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset:\n  quality:\n    min_rowz: 3\n")
    assert cli.main(["ingest", "--config", str(bad)]) == ConfigError.exit_code == 2
    assert "min_rowz" in _one_line(capsys, "ingest")
    assert cli.main(["ingest", "--config", str(tmp_path / "nothing.yaml")]) == 2
    assert "cannot read the config" in _one_line(capsys, "ingest")


def test_an_exception_that_is_no_user_error_is_a_crash_with_its_traceback(tmp_path, capsys):
    # The demo refuses a folder it did not make with a plain FileExistsError.
    (tmp_path / "mine.txt").write_text("not a demo run")
    assert cli.main(["demo", "--run_dir", str(tmp_path)]) == CRASH_EXIT_CODE == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "FileExistsError" in err
    assert "shoprec demo: crashed (a bug, not a user error; exit 70)" in err
