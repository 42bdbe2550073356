"""A stage's manifest: a fingerprint of what decides the output, and a list its readers check."""

import dataclasses
import os
import subprocess
import sys

import pytest

from shoprec.core import config as config_lib
from shoprec.core.errors import InputDamagedError
from shoprec.io import files, manifest
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


def test_a_finished_folder_is_held_to_the_sizes_and_crc32c_its_manifest_lists(root):
    folder = f"{root}/ingest"
    files.write(f"{folder}/examples/train-0", b"123456789")
    files.write(f"{folder}/report.json", b"")
    write_success(folder, "ingest")
    # CRC32C("123456789") is the check value 0xE3069283, of nothing 0 (base64, big-endian):
    # the same whether Cloud Storage lists it or a local file is read.
    assert manifest.read(folder)["outputs"]["list"] == {
        "examples/train-0": [9, "4waSgw=="], "report.json": [0, "AAAAAA=="]}
    manifest.check(folder, "ingest", "fix it")
    files.write(f"{folder}/examples/train-0", b"123456780")  # the same size, a byte changed
    with pytest.raises(InputDamagedError, match=r"^ingest's output is damaged: .*/ingest/"
                       r"examples/train-0 has other bytes than ingest wrote \(its CRC32C "
                       r"differs\); fix it$"):
        manifest.check(folder, "ingest", "fix it")
    files.write(f"{folder}/examples/train-0", b"123456789")
    files.write(f"{folder}/examples/train-1", b"")  # a shard added: a reader's glob takes it
    with pytest.raises(InputDamagedError, match=r"train-1 is not a file ingest wrote"):
        manifest.check(folder, "ingest", "fix it")
    files.delete([f"{folder}/examples/train-1", f"{folder}/report.json"])
    with pytest.raises(InputDamagedError, match=r"report.json is missing"):
        manifest.check(folder, "ingest", "fix it")
    files.write(f"{folder}/report.json", b"")
    manifest.check(folder, "ingest", "fix it")
    # The marker of another stage, or one a reader cannot parse, is no manifest of this one.
    with pytest.raises(InputDamagedError, match=r"_SUCCESS is not a manifest of featurize"):
        manifest.check(folder, "featurize", "fix it")
    files.write(f"{folder}/_SUCCESS", b'{"stage": "ingest"')
    with pytest.raises(InputDamagedError, match=r"_SUCCESS is not JSON \("):
        manifest.check(folder, "ingest", "fix it")
