"""Scheduled runs for real: stages killed with SIGKILL, a whole day run twice, a locked folder.

The ``gs://`` run folders are on the Cloud Storage emulator (``tests/gcs_emulator.py``).

Each stage here runs as ``shoprec`` does: through ``cli.main`` or as a
``python -m shoprec`` subprocess, over a tiny generated shop, publishing
into a real run folder.
"""

import argparse
import csv
import dataclasses
import glob
import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from pipelines import generate
from shoprec.app import cli
from shoprec.core import config as config_lib
from shoprec.core.errors import RunLockedError, StageOrderError
from shoprec.core.layout import success_marker
from shoprec.io import files, manifest, publish
from shoprec.io.outputs import require_success
from tests.pipelines.fixtures import write_embeddings

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
DATE = "2026-12-01"


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A tiny generated shop's raw files and a config over it (tiny model, one epoch)."""
    root = tmp_path_factory.mktemp("shop")
    text = {"generate": {"num_users": 30, "num_items": 10, "days": 3, "sessions_per_user": 2.0},
            "ingest": {"eval_start": "2026-11-03T00:00:00Z", "num_shards": 2},
            "embed": {"epochs": 1, "min_steps": 20},
            "model": {"bottom_units": [16], "tower_units": [8],
                      "retrieval": {"enabled": True, "embedding_dim": 8, "tower_units": [8]}},
            "training": {"epochs": 1, "per_replica_batch_size": 64, "strategy": "default"},
            # One epoch on a tiny shop scores near 0.5 either side: the gate is not
            # what these tests are about.
            "gate": {"min_auc": 0.0}}
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(text))
    generate.run(config_lib.load(str(path), run_dir=str(root / "data")))
    return root


def _argv(shop, run_dir, stage, *extra):
    return [stage, "--config", str(shop / "config.yaml"), "--run_dir", str(run_dir),
            "--data", str(shop / "data"), *extra]


def _with_embed_table(shop, run_dir):
    """A finished embed stage's folder, so ingest can run alone."""
    config = config_lib.load(str(shop / "config.yaml"), run_dir=str(run_dir))
    with open(shop / "data" / "raw" / "items.csv") as f:
        ids = [row["item_id"] for row in csv.DictReader(f)]
    write_embeddings(config.layout.item_embeddings, [(i, [0.0] * 32, 0) for i in ids])
    return config


def _files(stage_dir):
    """{relative path: sha256} of a published folder's files, the manifest and report aside."""
    out = {}
    for path in glob.glob(os.path.join(stage_dir, "**"), recursive=True):
        name = os.path.relpath(path, stage_dir)
        if os.path.isfile(path) and name not in ("_SUCCESS", "report.json"):
            with open(path, "rb") as f:
                out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def _shoprec(argv, **env):
    """``python -m shoprec ARGV`` in a subprocess; its return code (-9: SIGKILL)."""
    full = dict(os.environ, PYTHONPATH=REPO, **env)
    return subprocess.run([sys.executable, "-m", "shoprec", *argv], env=full,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_re_running_ingest_on_the_same_inputs_writes_the_same_bytes(shop, tmp_path):
    config = _with_embed_table(shop, tmp_path / "run")
    assert cli.main(_argv(shop, tmp_path / "run", "ingest")) == 0
    first = _files(config.layout.ingest_dir)
    assert len([f for f in first if f.startswith("examples/train-")]) == 2
    assert cli.main(_argv(shop, tmp_path / "run", "ingest", "--force")) == 0
    assert _files(config.layout.ingest_dir) == first


def test_a_killed_stage_leaves_the_previous_output_and_a_re_run_completes(shop, tmp_path,
                                                                         capsys):
    run_dir = tmp_path / "run"
    config = _with_embed_table(shop, run_dir)
    layout = config.layout
    assert cli.main(_argv(shop, run_dir, "ingest")) == 0
    previous, previous_marker = _files(layout.ingest_dir), manifest.marker_bytes(
        layout.ingest_dir)
    events = shop / "data" / "raw" / "events.csv"
    for point in ("before_marker", "before_publish", "before_flip"):
        # The same rows, re-exported: a new fingerprint, the same output.
        os.utime(events, (time.time(), time.time()))
        killed = _shoprec(_argv(shop, run_dir, "ingest"), **{publish.FAULT_ENV: point})
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        require_success(layout.ingest_dir, "ingest")  # the previous output, whole
        assert manifest.marker_bytes(layout.ingest_dir) == previous_marker, point
        assert _files(layout.ingest_dir) == previous, point
        capsys.readouterr()
        assert cli.main(_argv(shop, run_dir, "ingest")) == 0
        said = capsys.readouterr().out
        # Killed once its manifest was written: published as it is, not run again.
        assert ("published the output an interrupted run had finished" in said) == (
            point != "before_marker"), (point, said)
        assert _files(layout.ingest_dir) == previous, point
        previous_marker = manifest.marker_bytes(layout.ingest_dir)
        assert manifest.read(layout.ingest_dir)["inputs"]["events"]["newest_mtime"] == \
            os.stat(events).st_mtime
        assert os.listdir(layout.versions_dir) == [os.path.basename(
            os.path.realpath(layout.ingest_dir))]


def test_a_stage_killed_while_writing_is_never_read(shop, tmp_path):
    run_dir = tmp_path / "run"
    config = _with_embed_table(shop, run_dir)
    staging = config.layout.staging_dir("ingest")
    proc = subprocess.Popen([sys.executable, "-m", "shoprec", *_argv(shop, run_dir, "ingest")],
                            env=dict(os.environ, PYTHONPATH=REPO),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Killed as soon as the job has written anything into its staging place.
        while proc.poll() is None and not glob.glob(os.path.join(staging, "**", "*"),
                                                    recursive=True):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with pytest.raises(StageOrderError, match="run `shoprec ingest` first"):
        require_success(config.layout.ingest_dir, "ingest")
    assert cli.main(_argv(shop, run_dir, "ingest")) == 0
    require_success(config.layout.ingest_dir, "ingest")


@pytest.mark.parametrize("where", ["local", "gs"])
def test_a_second_run_of_a_locked_folder_fails_at_once(shop, tmp_path, capsys, request, where):
    run_dir = str(tmp_path / "run") if where == "local" else request.getfixturevalue("gcs")
    code = ("import sys; from shoprec.io import lock; lock.acquire(sys.argv[1], 'shoprec run', 6); "
            "print('held', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, os.path.join(run_dir, ".lock")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=REPO))
    try:
        assert holder.stdout.readline().strip() == "held"
        assert cli.main(_argv(shop, run_dir, "run", "--date", DATE)) == RunLockedError.exit_code
    finally:
        holder.stdin.close()
        holder.wait()
    err = capsys.readouterr().err
    assert f"shoprec run: {run_dir} is being run by pid {holder.pid}" in err
    assert "Traceback" not in err


def test_a_stage_on_gs_publishes_then_skips_until_an_upstream_manifest_changes(tiny_run, gcs,
                                                                              capsys):
    """The report stage, whose every file goes through the run machinery, on ``gs://``.

    Its upstream stages' folders are copied from the tiny local run into a
    ``gs://`` run folder on the emulator; the stage runs through the CLI's runner
    there: lock, fingerprint, the check of its upstream folders against their
    manifests (CRC32C from the listing), staging, manifest, publish.
    """
    config, _ = tiny_run
    local = config.layout
    run = dataclasses.replace(config, run_dir=f"{gcs}/run", models_dir=f"{gcs}/models",
                              inputs=dataclasses.replace(
                                  config.inputs, data_dir=os.path.abspath(config.run_dir)))
    for stage in ("ingest", "embed", "train", "push", "recommend"):
        files.copy_tree(local.stage_dir(stage), run.layout.stage_dir(stage))
    args = argparse.Namespace(command="shoprec report --run_dir " + run.run_dir)

    def report():
        capsys.readouterr()
        assert cli.run_stage("report", run, [], args) == 0
        assert files.read(run.layout.lock_file) is None  # released
        return capsys.readouterr().out

    assert "skipped" not in report()
    page = files.read(run.layout.report_page).decode()
    assert page.startswith("<!DOCTYPE html>") and run.run_dir in page
    published = manifest.read(run.layout.report_dir)
    assert published["upstream"]["train"] == manifest.marker_digest(run.layout.train_dir)
    assert "shoprec report: skipped (up to date)" in report()
    assert manifest.read(run.layout.report_dir) == published
    # A re-published upstream stage (another manifest) makes the report stale.
    marker = success_marker(run.layout.ingest_dir)
    files.write(marker, files.read(marker).replace(b"{", b'{"rerun": 1, ', 1))
    assert "skipped" not in report()
    assert manifest.read(run.layout.report_dir)["upstream"]["ingest"] == \
        manifest.marker_digest(run.layout.ingest_dir)
    assert not files.exists(run.layout.staging_dir("report"))


def test_a_day_runs_every_stage_once_then_skips_them_all(shop, tmp_path, capsys,
                                                         monkeypatch):
    root = tmp_path / "runs"
    (tmp_path / "shops").mkdir()
    os.symlink(shop / "data", tmp_path / "shops" / f"dt={DATE}")  # the day's export
    argv = ["run", "--config", str(shop / "config.yaml"), "--date", DATE,
            "--data", str(tmp_path / "shops" / "dt={date}")]
    config = config_lib.dated(config_lib.load(str(shop / "config.yaml")), DATE)
    monkeypatch.chdir(tmp_path)  # the config's run_dir (runs/demo) is relative
    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    stages = ["embed", "ingest", "featurize", "train", "push", "score", "recommend", "report"]
    run_dir = root / "demo" / f"dt={DATE}"
    assert config.run_dir == f"runs/demo/dt={DATE}"
    for stage in stages:
        assert f"shoprec {stage}: done in" in first
        assert os.path.islink(run_dir / stage)
        require_success(str(run_dir / stage), stage)
    assert sorted(os.listdir(run_dir)) == [".staging", ".versions"] + sorted(stages)
    assert os.listdir(run_dir / ".staging") == []
    # The published model lives beside the partitions, for the next day to find.
    assert sorted(os.listdir(root / "demo")) == ["dt=" + DATE, "models"]
    markers = {s: manifest.marker_bytes(str(run_dir / s)) for s in stages}
    # Each stage's manifest records the manifest digests of what it read.
    train = manifest.read(str(run_dir / "train"))
    assert train["upstream"] == {"featurize": hashlib.sha256(markers["featurize"]).hexdigest()}

    assert cli.main(argv) == 0
    second = capsys.readouterr().out
    for stage in stages:
        assert f"shoprec {stage}: skipped (up to date)" in second
        assert manifest.marker_bytes(str(run_dir / stage)) == markers[stage]
