"""The run folder's lock: one run at a time, a clear message, stale locks taken over."""

import json
import os
import socket
import subprocess
import sys

import pytest

from shoprec.core.errors import RunLockedError
from shoprec.io import lock

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def _holder(path):
    """A live process holding the lock at ``path`` until its stdin closes."""
    code = ("import sys; from shoprec.io import lock; "
            "lock.acquire(sys.argv[1], 'shoprec run --date 2026-12-01'); "
            "print('held', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code, path], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_fails_at_once_naming_the_owner(tmp_path):
    path = str(tmp_path / "run" / ".lock")
    proc = _holder(path)
    try:
        with pytest.raises(RunLockedError) as err:
            lock.acquire(path, "shoprec ingest")
        message = str(err.value)
        assert f"pid {proc.pid} on {socket.gethostname()}" in message
        assert "shoprec run --date 2026-12-01" in message and path in message
        assert err.value.exit_code == 7
    finally:
        proc.stdin.close()
        proc.wait()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, capsys):
    path = str(tmp_path / ".lock")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with open(path, "w") as f:
        json.dump({"pid": dead.pid, "host": socket.gethostname(), "started": "earlier",
                   "command": "shoprec run"}, f)
    owner = lock.acquire(path, "shoprec run")
    assert f"taking over the stale lock {path} of pid {dead.pid}" in capsys.readouterr().err
    with open(path) as f:
        assert json.load(f) == owner and owner["pid"] == os.getpid()
    lock.release(path, owner)
    assert os.listdir(tmp_path) == []


def test_held_releases_the_lock_even_when_the_block_fails(tmp_path):
    path = str(tmp_path / ".lock")
    with pytest.raises(KeyError):
        with lock.held(path, "shoprec train"):
            assert os.path.exists(path)
            with pytest.raises(RunLockedError):  # the same folder again, even in-process
                lock.acquire(path, "shoprec score")
            raise KeyError("stage failed")
    assert not os.path.exists(path)
    with lock.held(path, "shoprec train"):
        pass
