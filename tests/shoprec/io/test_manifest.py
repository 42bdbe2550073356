"""A stage's fingerprint: it changes with its inputs, upstream manifests and config only."""

import dataclasses
import os
import subprocess
import sys

from shoprec.core import config as config_lib
from shoprec.io import manifest
from shoprec.io.outputs import write_success

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def _fingerprint(tmp_path, config=None):
    config = config or config_lib.load(run_dir=str(tmp_path / "run"))
    inputs = {"events": str(tmp_path / "events.csv"), "images": str(tmp_path / "images")}
    return manifest.fingerprint("ingest", inputs, {"embed": str(tmp_path / "embed")}, config,
                                {"pairs": None})["fingerprint"]


def test_the_fingerprint_follows_inputs_upstream_and_config(tmp_path):
    (tmp_path / "events.csv").write_text("a,b\n1,2\n")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "i1.png").write_bytes(b"png")
    write_success(str(tmp_path / "embed"), "embed", {"fingerprint": "e1"})
    first = _fingerprint(tmp_path)
    assert _fingerprint(tmp_path) == first
    # Where the run is does not matter; what it computes does.
    assert _fingerprint(tmp_path, config_lib.load(run_dir="/elsewhere", date="2026-12-01")) \
        == first
    base = config_lib.load()
    assert _fingerprint(tmp_path, dataclasses.replace(
        base, ingest=dataclasses.replace(base.ingest, num_shards=9))) != first

    os.utime(tmp_path / "images" / "i1.png", (1, 1))  # a photo re-exported
    second = _fingerprint(tmp_path)
    assert second != first
    (tmp_path / "events.csv").write_text("a,b\n1,2\n3,4\n")
    third = _fingerprint(tmp_path)
    assert third not in (first, second)
    write_success(str(tmp_path / "embed"), "embed", {"fingerprint": "e2"})  # embed re-ran
    assert _fingerprint(tmp_path) not in (first, second, third)


def test_the_config_hash_is_the_same_in_another_process():
    code = ("from shoprec.core import config; from shoprec.io import manifest; "
            "print(manifest.config_hash(config.load()))")
    env = dict(os.environ, PYTHONPATH=REPO, PYTHONHASHSEED="123")
    other = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, check=True).stdout.strip()
    assert other == manifest.config_hash(config_lib.load())


def test_input_stats_count_a_folder_a_glob_and_a_file(tmp_path):
    for name in ("a-00000.csv", "a-00001.csv"):
        (tmp_path / name).write_text("xyz")
    stats = manifest.input_stats(str(tmp_path / "a-*.csv"))
    assert (stats["files"], stats["bytes"]) == (2, 6)
    assert manifest.input_stats(str(tmp_path))["files"] == 2
    assert manifest.input_stats(str(tmp_path / "missing.csv"))["files"] == 0
