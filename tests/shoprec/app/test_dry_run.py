"""``shoprec STAGE --runner=DataflowRunner --dry_run=True``: built offline, nothing run.

The ingest job of the tiny demo run (``tiny_run``) is built for Dataflow
through ``cli.main`` with no Google credentials and every connection that is
not to this machine refused and recorded; the run folder must be byte for
byte what it was, the command must say in one line that nothing ran, and
exit 0. Flags a dry run cannot take are one line and exit 2.
"""

import hashlib
import os
import shutil
import socket

import pytest

from shoprec.app import cli

CLOUD = ["--runner=DataflowRunner", "--dry_run=True", "--project", "shoprec-test", "--region",
         "us-central1", "--temp_location", "gs://shoprec-test/tmp"]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No Google credentials, and no connection but to this machine; the refused ones."""
    refused = []
    connect, resolve = socket.socket.connect, socket.getaddrinfo

    def local_connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in (
                "127.0.0.1", "::1"):
            refused.append(address)
            raise OSError(f"the test refuses a connection to {address}")
        return connect(sock, address)

    def local_resolve(host, *args, **kwargs):
        if host not in ("localhost", "127.0.0.1", "::1", None):
            refused.append(host)
            raise socket.gaierror(f"the test refuses to resolve {host}")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", local_connect)
    monkeypatch.setattr(socket, "getaddrinfo", local_resolve)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    return refused


def _contents(folder):
    """{relative path: SHA-256} of every file and link under ``folder``."""
    out = {}
    for root, dirs, names in os.walk(folder):
        for name in names + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            path = os.path.join(root, name)
            key = os.path.relpath(path, folder)
            if os.path.islink(path):
                out[key] = "-> " + os.readlink(path)
            else:
                with open(path, "rb") as f:
                    out[key] = hashlib.sha256(f.read()).hexdigest()
    return out


def _one_line(capsys):
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return captured


def test_an_ingest_dry_run_builds_the_dataflow_job_offline_and_publishes_nothing(
        tiny_run, tmp_path, capsys, offline):
    tiny_run, _ = tiny_run
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run.layout.embed_dir, run_dir / "embed")
    before = _contents(run_dir)
    argv = ["ingest", "--run_dir", str(run_dir), "--data", tiny_run.run_dir, *CLOUD]
    assert cli.main(argv) == 0
    captured = _one_line(capsys)
    (line,) = captured.out.splitlines()
    assert line.startswith("shoprec ingest: dry run: built the DataflowRunner job ")
    assert line.endswith("did not submit it; nothing ran, no counters were read, nothing "
                         "was published")
    # ingest's graph: its reads, its composite and its sinks, translated for Dataflow.
    transforms = int(line.split("(")[1].split(" transforms")[0])
    assert transforms > 100
    assert _contents(run_dir) == before  # no ingest/, no .staging/, no lock left
    assert offline == []


@pytest.mark.parametrize("argv, message", [
    # The issue's own placeholders: not a bucket Cloud Storage allows (3-63 characters),
    # so Beam would go online to create one; refused before it does.
    (["ingest", "--runner=DataflowRunner", "--dry_run=True", "--project", "p", "--region", "r",
      "--temp_location", "gs://b/t"], "a dry run needs --temp_location or --staging_location"),
    (["ingest", "--runner=DataflowRunner", "--dry_run=True", "--project", "p", "--region", "r",
      "--temp_location", "gs://shoprec-test/tmp"], "Beam refused the flags: "
                                                   "Invalid Project ID (p)"),
    (["ingest", "--dry_run=True"], "with --runner=FnApiRunner the job would run"),
    (["train", *CLOUD], "`shoprec train` runs no Beam job"),
    (["run", "--date", "2026-12-01", *CLOUD], "`shoprec run` runs stages that read each "
                                              "other's outputs"),
])
def test_a_dry_run_it_cannot_do_is_one_line_and_exit_2(tiny_run, tmp_path, capsys, offline,
                                                       argv, message):
    tiny_run, _ = tiny_run
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run.layout.embed_dir, run_dir / "embed")
    full = [argv[0], "--run_dir", str(run_dir), "--data", tiny_run.run_dir, *argv[1:]]
    assert cli.main(full) == 2
    (line,) = _one_line(capsys).err.splitlines()
    assert line.startswith(f"shoprec {argv[0]}: ") and message in line, line
    assert offline == []
