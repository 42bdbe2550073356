"""One run of a run folder at a time: a lock file naming its owner, on a disk or on ``gs://``.

``RUN/.lock`` holds the owner's pid, host, the process's start time (on
Linux, to tell a reused pid apart), the time it took the lock and its
command, and a random token that tells this process's locks apart. It is created whole and only if there is none
(``shoprec.io.files.create_new``: a hard link on a local disk, a create with
``ifGenerationMatch=0`` on Cloud Storage), so no reader sees a half-written
lock and of two runs that start together exactly one gets it. The other
fails at once with :class:`RunLockedError` naming the owner (exit 8).

A lock is stale, and is taken over with a message, when its owner is gone:
on this host, when its pid is not running (or runs a later process); from
another host, whose processes cannot be checked from here (a lock on an
object store or a shared disk), when it is older than the config's
``lock_stale_hours``: the schedulers stop a run after 6 h (Airflow's
``execution_timeout``, the CronJob's ``activeDeadlineSeconds``), so an older
lock is one a killed run left. A takeover overwrites the lock only if it is
still the stale one that was read (``files.replace``; on Cloud Storage one
conditional upload), so of two runs taking over at once one wins.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import socket
import sys
import uuid
from typing import Any, Dict, Iterator, Optional

from shoprec.core.errors import RunLockedError
from shoprec.io import files


@dataclasses.dataclass(frozen=True)
class Lock:
    """A lock this process holds: where, its owner record and the version it created."""

    path: str
    owner: Dict[str, Any]
    version: Any


def _process_start(pid: int) -> Optional[str]:
    """The start time of ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name may hold spaces: fields after its closing paren.
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(owner: Dict[str, Any]) -> bool:
    """Whether the lock's owner, a process on this host, still runs."""
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


def _age_hours(owner: Dict[str, Any]) -> Optional[float]:
    """Hours since the owner took the lock (its own clock), or None when unreadable."""
    try:
        started = dt.datetime.fromisoformat(str(owner.get("started")))
    except ValueError:
        return None
    if started.tzinfo is None:
        return None
    return (dt.datetime.now(dt.timezone.utc) - started).total_seconds() / 3600.0


def _stale(owner: Dict[str, Any], stale_hours: float) -> bool:
    """Whether the owner is gone: its pid on this host, else the lock's age, says so."""
    if owner.get("host") == socket.gethostname():
        return not _alive(owner)
    age = _age_hours(owner)
    return age is not None and age > stale_hours


def _owner(raw: bytes) -> Dict[str, Any]:
    """The owner record in a lock's bytes; {} when it is not one."""
    try:
        owner = json.loads(raw.decode("utf-8"))
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


def _describe(owner: Dict[str, Any]) -> str:
    return (f"pid {owner.get('pid')} on {owner.get('host')}, started "
            f"{owner.get('started')} ({owner.get('command')})")


def acquire(path: str, command: str, stale_hours: float) -> Lock:
    """Takes the lock at ``path`` for this process.

    Args:
        path: The lock file (``Layout.lock_file``), local or ``gs://``.
        command: What this process runs, for the message another run prints.
        stale_hours: A lock from another host older than this is stale (the
            config's ``lock_stale_hours``).

    Returns:
        The lock, for :func:`release`.

    Raises:
        RunLockedError: a live process holds it.
    """
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "process_start": _process_start(os.getpid()),
          "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
          "command": command, "token": uuid.uuid4().hex}
    data = json.dumps(me, sort_keys=True).encode("utf-8")
    for _ in range(3):
        try:
            return Lock(path, me, files.create_new(path, data))
        except FileExistsError:
            pass
        found = files.read_version(path)
        if found is None:
            continue  # released meanwhile
        owner, version = _owner(found[0]), found[1]
        if owner == me:
            return Lock(path, me, version)  # ours: a retried create whose reply was lost
        if owner == {} or not _stale(owner, stale_hours):
            held = _describe(owner) if owner else "an unreadable lock"
            raise RunLockedError(
                f"{os.path.dirname(path)} is being run by {held}; wait for it to finish, "
                f"or, if that process is gone, delete {path} (a lock from another host is "
                f"taken over once older than {stale_hours:g} h)") from None
        print(f"shoprec: taking over the stale lock {path} of {_describe(owner)}, "
              "which is no longer running", file=sys.stderr)
        try:
            return Lock(path, me, files.replace(path, data, version))
        except FileExistsError:
            continue  # another run took it over first: look again
    raise RunLockedError(f"another run took {path} at the same time; try again")


def release(lock: Lock) -> None:
    """Removes the lock if this process still holds it."""
    found = files.read_version(lock.path)
    if found is not None and _owner(found[0]) == lock.owner:
        files.delete_version(lock.path, found[1])


@contextlib.contextmanager
def held(path: str, command: str, stale_hours: float) -> Iterator[None]:
    """Holds the lock at ``path`` for the ``with`` block."""
    taken = acquire(path, command, stale_hours)
    try:
        yield
    finally:
        release(taken)
