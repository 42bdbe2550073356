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


def _tree(root: int) -> List[int]:
    """``root`` and every descendant now alive."""
    children: Dict[int, List[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _proc_sample(pid: int):
    """(VmRSS, VmHWM) in bytes and CPU-seconds (own + reaped children) of ``pid``; None
    once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            status = {k: v for k, _, v in (line.partition(":") for line in f)}
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    kib = lambda key: int(status.get(key, "0 kB").split()[0]) * 1024  # noqa: E731
    ticks = os.sysconf("SC_CLK_TCK")
    # utime, stime, cutime, cstime: fields 14-17 of stat, 11-14 after the command name.
    cpu = sum(int(v) for v in fields[11:15]) / ticks
    return kib("VmRSS"), kib("VmHWM"), cpu


def is_beam_worker(pid: int) -> bool:
    """Whether ``pid`` is a Beam SDK worker process (multi_processing's), not its shell."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return (b"apache_beam.runners.worker.sdk_worker_main" in argv
            and not argv[0].endswith(b"sh"))


class TreeMonitor(threading.Thread):
    """Samples a process tree: the root (the coordinator) apart from Beam's worker processes.

    Per interval it reads every live process of the tree: the root's resident
    memory, each worker's high-water mark (``VmHWM``: exact up to its last
    sample) and the CPU-seconds of the whole tree (each live process's own
    and its reaped children's, so a worker that exited is still counted once
    its parent reaped it). :meth:`mark` closes a phase (a stage) and starts
    the next: its coordinator peak RSS, largest worker's peak RSS, worker
    count and CPU-seconds are the phase's own.
    """

    def __init__(self, root: int, interval_s: float = 0.25):
        super().__init__(daemon=True)
        self._root, self._interval = root, interval_s
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._workers: Dict[int, bool] = {}
        self._cpu = 0.0
        self._reset(0.0)

    def _reset(self, cpu: float) -> None:
        self._phase_cpu = cpu
        self._phase_start = time.perf_counter()
        self._coordinator_peak = 0
        self._worker_peaks: Dict[int, int] = {}

    def sample(self) -> None:
        cpu = 0.0
        for pid in _tree(self._root):
            got = _proc_sample(pid)
            if got is None:
                continue
            rss, hwm, pid_cpu = got
            cpu += pid_cpu
            if pid == self._root:
                with self._lock:
                    self._coordinator_peak = max(self._coordinator_peak, rss)
                continue
            if pid not in self._workers:
                self._workers[pid] = is_beam_worker(pid)
            if self._workers[pid]:
                with self._lock:
                    self._worker_peaks[pid] = max(self._worker_peaks.get(pid, 0), hwm)
        with self._lock:
            # Never backwards: a process that exited unreaped drops out for a moment.
            self._cpu = max(self._cpu, cpu)

    def run(self):
        while not self._done.is_set():
            self.sample()
            self._done.wait(self._interval)

    def mark(self) -> Dict[str, float]:
        """The phase since the last mark (or the start); starts the next one."""
        self.sample()
        with self._lock:
            peaks = self._worker_peaks
            out = {"wall_s": time.perf_counter() - self._phase_start,
                   "cpu_s": self._cpu - self._phase_cpu,
                   "coordinator_peak_rss_mib": self._coordinator_peak / 2**20,
                   "worker_peak_rss_mib": max(peaks.values(), default=0) / 2**20,
                   "workers": len(peaks)}
            self._reset(self._cpu)
        return out

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

def write_demo_config(path: str, overrides: Mapping[str, Mapping[str, object]]) -> str:
    """Writes the demo config with ``{section: {key: value}}`` changed to ``path``.

    A generated shop's later stages need its sizes in their config too (the
    recommend stage's evaluation redraws the generator's world from them), so
    a benchmark passes this file to every ``shoprec`` command of a run.
    """
    from importlib import resources

    import yaml

    config = yaml.safe_load(resources.files("shoprec").joinpath("configs/demo.yaml").read_text())
    for section, values in overrides.items():
        config.setdefault(section, {}).update(values)
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return path


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
