"""shoprec.app.console: native log lines dropped in a real process, and the stage lines."""

import os
import subprocess
import sys
import textwrap

import pytest

from shoprec.app import console

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))))

# What a child process writes to its stderr: C++-style lines straight to file
# descriptor 2 (as TensorFlow's native logging does), Python logging, a traceback.
CHILD = textwrap.dedent("""
    import logging, os, sys
    from shoprec.app import console
    console.configure(verbose=sys.argv[1] == "verbose")
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are "
                b"written to STDERR\\n")
    os.write(2, b"I0000 00:00:1796190724.547845    7221 cudart_stub.cc:31] Could not find "
                b"cuda drivers on your machine, GPU will not be used.\\n")
    os.write(2, b"E0000 00:00:1796190730.722035    7221 cuda_platform.cc:52] failed call "
                b"to cuInit\\n2025-09-17 14:44:05.157831: I external/x/cudart_stub.cc:32] old\\n")
    os.write(2, b"kept native line\\n")
    logging.warning("Resource module is not available for current platform, memory usage "
                    "cannot be fetched.")
    logging.warning("a warning of our own")
    logging.getLogger("tensorflow").warning("tensorflow python noise")
    print("on stdout")
    raise RuntimeError("the traceback survives")
""")


def _child(mode):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True,
                          env=env, timeout=120)


def test_quiet_drops_native_and_library_lines_and_keeps_the_rest():
    done = _child("quiet")
    assert done.returncode == 1
    assert done.stdout == "on stdout\n"
    lines = done.stderr.splitlines()
    assert lines[:2] == ["kept native line", "WARNING:root:a warning of our own"]
    assert lines[-1] == "RuntimeError: the traceback survives"
    assert lines[2] == "Traceback (most recent call last):"
    for gone in ("InitializeLog", "cudart_stub", "cuInit", "Resource module", "tensorflow"):
        assert gone not in done.stderr, gone


def test_verbose_shows_everything():
    done = _child("verbose")
    for shown in ("InitializeLog", "cudart_stub", "cuInit", "old", "Resource module",
                  "tensorflow python noise", "kept native line", "the traceback survives"):
        assert shown in done.stderr, shown


@pytest.mark.parametrize("line, dropped", [
    (b"I0000 00:00:1796191201.128936   17887 port.cc:153] oneDNN custom operations", True),
    (b"W0000 00:00:1796190779.556355    7221 local_rendezvous.cc:412] Local rendezvous", True),
    (b"F0000 00:00:1796190779.556355    7221 check.cc:10] Check failed", False),
    (b"I like tests.cc:1] but this is prose", False),
    (b"Traceback (most recent call last):", False),
])
def test_native_log_pattern(line, dropped):
    assert bool(console.NATIVE_LOG.match(line)) is dropped


def test_stage_lines_carry_counts_and_rates():
    ingest = {"counts": {"rows_read/events": 900, "rows_read/items": 100,
                         "dead_letter/events/bad_type": 4, "examples/train": 700,
                         "examples/eval": 150}}
    assert console.stage_line("ingest", ingest, 2.0) == (
        "[ingest] 1000 rows read, 4 dead letters; examples eval 150, train 700; 500/s rows "
        "in 2.0s")
    train = {"tasks": {"click": {"auc": 0.71234}, "rmse_task": {"rmse": 1.0}},
             "training": {"steps": 40, "epochs_run": [0, 1], "examples_per_second": 12345.6}}
    assert console.stage_line("train", train, 3.25) == (
        "[train] 40 steps over 2 epoch(s), 12,346 examples/s; eval AUC click 0.7123 in 3.2s")
    push = {"status": "blessed", "version": "v1",
            "verdict": {"tasks": {"click": {"auc": 0.7, "passed": True}}}}
    assert console.stage_line("push", push, 1.0) == (
        "[push] blessed, version v1; gate AUC click 0.7000 in 1.0s")
    assert console.stage_line("score", {"counts": {"score/rows": 30}}, 0.0) == (
        "[score] 30 pairs scored, 0 dead letters; n/a rows in 0.0s")


def _shoprec(*args):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("SHOPREC_VERBOSE", None)
    return subprocess.run([sys.executable, "-m", "shoprec", *args], capture_output=True,
                          text=True, env=env, timeout=600)


def test_the_shoprec_command_prints_no_native_log_lines(tiny_run, tmp_path):
    # A stage that loads TensorFlow (RunInference), on a copy of the tiny run.
    import shutil

    config, _ = tiny_run
    run_dir = str(tmp_path / "run")
    shutil.copytree(config.run_dir, run_dir)
    quiet = _shoprec("score", "--run_dir", run_dir, "--force")
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    native = [line for line in quiet.stderr.splitlines()
              if console.NATIVE_LOG.match(line.encode())]
    assert native == []
    assert console.BEAM_RESOURCE_WARNING not in quiet.stderr
    assert quiet.stderr.splitlines()[-1].startswith("[score] ")
    # The same stage with --verbose shows what was hidden (--force: it is up to date now).
    loud = _shoprec("score", "--run_dir", run_dir, "--verbose", "--force")
    assert loud.returncode == 0
    assert any(console.NATIVE_LOG.match(line.encode()) for line in loud.stderr.splitlines())
