"""The run folder's lock, on a local disk and on ``gs://`` (the Cloud Storage emulator).

One run at a time, a clear message naming the owner, stale locks taken over.
"""

import datetime as dt
import json
import os
import socket
import subprocess
import sys

import pytest

from shoprec.core.errors import RunLockedError
from shoprec.io import files, lock

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
# A run that waits for "go" on stdin, takes the lock, says "held" and holds it
# until stdin closes; locked out, it exits with the error's code (8), as the CLI does.
CONTENDER = """
import sys
from shoprec.core.errors import RunLockedError
from shoprec.io import lock
sys.stdin.readline()
try:
    with lock.held(sys.argv[1], "shoprec run --date 2026-12-01", 6):
        print("held", flush=True)
        sys.stdin.read()
except RunLockedError as err:
    print(err, file=sys.stderr)
    sys.exit(err.exit_code)
"""


def _contender(path):
    return subprocess.Popen([sys.executable, "-c", CONTENDER, path], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=REPO))


def _holder(path):
    """A live process holding the lock at ``path`` until its stdin closes."""
    proc = _contender(path)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "held"
    return proc


def _done(proc):
    proc.stdin.close()
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()


def _write_owner(path, **owner):
    files.write(path, json.dumps(dict(command="shoprec run", **owner)).encode())


def test_a_second_run_fails_at_once_naming_the_owner(root):
    path = os.path.join(root, "run", ".lock")
    proc = _holder(path)
    try:
        with pytest.raises(RunLockedError) as err:
            lock.acquire(path, "shoprec ingest", 6)
        message = str(err.value)
        assert f"pid {proc.pid} on {socket.gethostname()}" in message
        assert "shoprec run --date 2026-12-01" in message and path in message
        assert err.value.exit_code == RunLockedError.exit_code == 8
    finally:
        _done(proc)
    assert files.read(path) is None  # released when the holder's block ended


def test_two_runs_started_at_once_one_holds_the_lock_one_exits_8(root):
    path = os.path.join(root, "dt=2026-12-01", ".lock")
    for _ in range(3):
        procs = [_contender(path) for _ in range(2)]
        for proc in procs:  # both ready (imports done) before either is told to go
            proc.stdin.write("go\n")
            proc.stdin.flush()
        try:
            codes = {}
            for proc in procs:
                line = proc.stdout.readline().strip()
                codes[proc.pid] = "held" if line == "held" else proc.wait(timeout=30)
            assert sorted(codes.values(), key=str) == [8, "held"], codes
            holder = next(pid for pid, code in codes.items() if code == "held")
            loser = next(p for p in procs if p.pid != holder)
            assert f"is being run by pid {holder} on" in loser.stderr.read()
        finally:
            for proc in procs:
                _done(proc)
        assert files.read(path) is None


def test_a_stale_lock_of_a_dead_process_is_taken_over(root, capsys):
    path = os.path.join(root, ".lock")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_owner(path, pid=dead.pid, host=socket.gethostname(), started="earlier")
    taken = lock.acquire(path, "shoprec run", 6)
    assert f"taking over the stale lock {path} of pid {dead.pid}" in capsys.readouterr().err
    assert json.loads(files.read(path)) == taken.owner and taken.owner["pid"] == os.getpid()
    lock.release(taken)
    assert files.listing(root) == []


def test_a_lock_from_another_host_is_stale_only_past_the_configured_age(root, capsys):
    path = os.path.join(root, ".lock")
    started = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=5)
    # Its pid cannot be checked from here: only its age tells.
    _write_owner(path, pid=1, host="worker-elsewhere", started=started.isoformat())
    with pytest.raises(RunLockedError, match="taken over once older than 6 h"):
        lock.acquire(path, "shoprec run", 6)
    taken = lock.acquire(path, "shoprec run", 4)
    assert "taking over the stale lock" in capsys.readouterr().err
    assert taken.owner["host"] == socket.gethostname()
    lock.release(taken)
    assert files.read(path) is None


def test_held_releases_the_lock_even_when_the_block_fails(root):
    path = os.path.join(root, ".lock")
    with pytest.raises(KeyError):
        with lock.held(path, "shoprec train", 6):
            assert files.exists(path)
            with pytest.raises(RunLockedError):  # the same folder again, even in-process
                lock.acquire(path, "shoprec train", 6)
            raise KeyError("stage failed")
    assert not files.exists(path)
    with lock.held(path, "shoprec train", 6):
        pass
