"""Runs one measurement in a fresh process and records its peak memory.

CPU seconds are recorded beside wall seconds: on a machine shared with other
work, wall time measures the neighbours as much as the job, while the CPU the
job itself burnt does not depend on them nearly as much.

Each measurement is a child process (``python benchmarks/featurize.py --child
...``), so its peak RSS is its own, not the largest seen by a long-lived
driver. The child reports its own high-water mark (``VmHWM``) and the largest
of its waited-for children (``RUSAGE_CHILDREN``); the driver also samples the
summed RSS of the whole process tree, which is what counts when the Beam
runner starts worker processes (``--direct_running_mode=multi_processing``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence

RESULT_PREFIX = "BENCHMARK_RESULT "
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _parents() -> Dict[int, int]:
    """{pid: parent pid} of every process now visible in /proc."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # exited between listdir and open
        # The command name may hold spaces and parentheses: parse after the last ')'.
        out[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def tree_rss_bytes(root: int) -> int:
    """Summed resident memory of ``root`` and all its descendants."""
    parents = _parents()
    children: Dict[int, List[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, ()))
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * _PAGE
        except OSError:
            continue
    return total


class _Sampler(threading.Thread):
    """Polls the tree RSS of a process until it exits; keeps the peak."""

    def __init__(self, pid: int, interval_s: float):
        super().__init__(daemon=True)
        self._pid, self._interval = pid, interval_s
        self.peak = 0
        self._done = threading.Event()

    def run(self):
        while not self._done.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self._pid))
            self._done.wait(self._interval)

    def stop(self):
        self._done.set()
        self.join()


def self_peak_rss() -> Dict[str, float]:
    """This process's VmHWM and its largest reaped child's max RSS, in MiB."""
    hwm_kib = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm_kib = int(line.split()[1])
    children_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"vmhwm_mib": hwm_kib / 1024, "children_maxrss_mib": children_kib / 1024}


def cpu_seconds() -> float:
    """User + system CPU of this process (all threads) and its reaped children so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def emit(result: dict) -> None:
    """Child side: prints the result line the driver parses."""
    result.update(self_peak_rss())
    print(RESULT_PREFIX + json.dumps(result, default=float), flush=True)


def run_child(args: Sequence[str], repo_root: str, log_path: str,
              interval_s: float = 0.2, timeout_s: Optional[float] = None,
              script: str = "featurize.py") -> dict:
    """Runs ``benchmarks/<script> --child ...`` and returns its result.

    Args:
        args: Arguments after the script path.
        repo_root: Put first on the child's PYTHONPATH so the child and any
            Beam worker processes it starts import this checkout.
        log_path: File that receives the child's stdout and stderr.
        interval_s: Tree RSS sampling period.
        timeout_s: Kill the child after this long.
        script: The benchmark script under ``benchmarks/``.

    Raises:
        RuntimeError: the child failed or printed no result (see the log).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [repo_root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    script = os.path.join(repo_root, "benchmarks", script)
    started = time.perf_counter()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, script, *args], stdout=subprocess.PIPE,
                                stderr=log, env=env, cwd=repo_root, text=True)
        sampler = _Sampler(proc.pid, interval_s)
        sampler.start()
        try:
            stdout, _ = proc.communicate(timeout=timeout_s)
        finally:
            sampler.stop()
        log.write(stdout)
    wall = time.perf_counter() - started
    lines = [l for l in stdout.splitlines() if l.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child {' '.join(args)} exited {proc.returncode}; see {log_path}")
    result = json.loads(lines[-1][len(RESULT_PREFIX):])
    result["tree_peak_rss_mib"] = sampler.peak / 2**20
    result["process_wall_s"] = wall
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # The whole child, start-up included, plus the descendants it reaped.
    result["process_cpu_s"] = (cpu_after.ru_utime + cpu_after.ru_stime
                               - cpu_before.ru_utime - cpu_before.ru_stime)
    # Other work on a shared machine skews timings: keep the 1-minute load with them.
    result["loadavg_after"] = os.getloadavg()[0]
    return result


# ---- the scripts' shared command line: sizes of the demo shop, one child per process ----

def build_config(run_dir: str, users: int):
    """The demo config with ``users`` users, writing into ``run_dir``."""
    from shoprec.core import config as config_lib

    config = config_lib.load(None, run_dir=run_dir)
    return dataclasses.replace(
        config, generate=dataclasses.replace(config.generate, num_users=users))


def add_size_args(parser: argparse.ArgumentParser, sizes: str, children: Sequence[str]) -> None:
    """Adds ``--sizes`` and ``--base_users``, and the internal flags of one child run.

    Args:
        parser: The benchmark's parser.
        sizes: Default ``--sizes`` (comma-separated multiples of ``--base_users``).
        children: The kinds of measurement ``--child`` may name.
    """
    parser.add_argument("--sizes", default=sizes, help="comma-separated multiples of --base_users")
    parser.add_argument("--base_users", type=int, default=None,
                        help="users at 1x (default: the demo config's)")
    # Internal: one measurement in this process.
    parser.add_argument("--child", choices=tuple(children), help=argparse.SUPPRESS)
    parser.add_argument("--run_dir", help=argparse.SUPPRESS)
    parser.add_argument("--users", type=int, help=argparse.SUPPRESS)


def parse_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]],
               children: Mapping[str, Callable[..., dict]]) -> Optional[argparse.Namespace]:
    """Parses a benchmark's flags; runs the measurement ``--child`` names, if any.

    Args:
        parser: A parser that :func:`add_size_args` has added to.
        argv: The command line (None: ``sys.argv``).
        children: ``{kind: fn(config, args) -> result}``; the child's result
            is printed for the driver (:func:`emit`).

    Returns:
        The driver's arguments, ``base_users`` filled in; None after a child ran.
    """
    args = parser.parse_args(argv)
    if args.child:
        emit(children[args.child](build_config(args.run_dir, args.users), args))
        return None
    # The driver's checks load TensorFlow; its C++ start-up chatter would bury the tables.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.base_users is None:
        from shoprec.core import config as config_lib

        args.base_users = config_lib.load(None).generate.num_users
    return args
