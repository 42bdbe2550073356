"""One run of a run folder at a time: a lock file naming its owner.

``RUN/.lock`` holds the owner's pid, host, the process's start time (on
Linux, to tell a reused pid apart), the time it took the lock and its
command. It is created complete in one step (written under a private name,
then hard-linked to ``.lock``, which fails when the lock exists, as
``O_EXCL`` would), so no reader sees a half-written lock. A second run of the
same folder fails at once with :class:`RunLockedError` naming the owner. A
lock whose owner is gone (its pid is not running on this host, or runs a
later process) is stale: it is taken over, and the run says so.

Run folders on object stores are not locked (they have no exclusive
create): there the scheduler runs one run per partition at a time (Airflow
``max_active_runs=1``, a CronJob's ``concurrencyPolicy: Forbid``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import sys
from typing import Any, Dict, Iterator, Optional

from shoprec.core.errors import RunLockedError


def _process_start(pid: int) -> Optional[str]:
    """The start time of ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name may hold spaces: fields after its closing paren.
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(owner: Dict[str, Any]) -> bool:
    """Whether the lock's owner still runs (a lock from another host is assumed to)."""
    if owner.get("host") != socket.gethostname():
        return True
    pid = int(owner.get("pid", -1))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    started = owner.get("process_start")
    return started is None or _process_start(pid) in (None, started)


def _owner(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path) as f:
            owner = json.load(f)
    except FileNotFoundError:
        return None
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


def _describe(owner: Dict[str, Any]) -> str:
    return (f"pid {owner.get('pid')} on {owner.get('host')}, started "
            f"{owner.get('started')} ({owner.get('command')})")


def acquire(path: str, command: str) -> Dict[str, Any]:
    """Takes the lock at ``path`` for this process.

    Args:
        path: The lock file (``Layout.lock_file``).
        command: What this process runs, for the message another run prints.

    Returns:
        The lock's content.

    Raises:
        RunLockedError: a live process holds it.
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "process_start": _process_start(os.getpid()),
          "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
          "command": command}
    private = f"{path}.{os.getpid()}"
    with open(private, "w") as f:
        json.dump(me, f, sort_keys=True)
    try:
        for _ in range(2):
            try:
                os.link(private, path)
                return me
            except FileExistsError:
                owner = _owner(path)
                if owner is None:
                    continue  # released meanwhile
                if owner == {} or _alive(owner):
                    held = _describe(owner) if owner else "an unreadable lock"
                    raise RunLockedError(
                        f"{os.path.dirname(path)} is being run by {held}; wait for it to "
                        f"finish, or, if that process is gone, delete {path}") from None
                print(f"shoprec: taking over the stale lock {path} of {_describe(owner)}, "
                      "which is no longer running", file=sys.stderr)
                os.remove(path)
        raise RunLockedError(f"another run took {path} at the same time; try again")
    finally:
        os.remove(private)


def release(path: str, owner: Dict[str, Any]) -> None:
    """Removes the lock at ``path`` if ``owner`` still holds it."""
    if _owner(path) == owner:
        os.remove(path)


@contextlib.contextmanager
def held(path: str, command: str) -> Iterator[None]:
    """Holds the lock at ``path`` for the ``with`` block (object stores: no lock)."""
    if "://" in path:
        yield
        return
    owner = acquire(path, command)
    try:
        yield
    finally:
        release(path, owner)
