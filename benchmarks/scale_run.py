"""A generated shop many times the demo's, through every stage of ``shoprec run --date``.

Generates the shop (``shoprec generate``: ``--users`` users, ``--items`` items,
the demo's days, sessions and impressions per user: the demo config with those
sizes, written to ``<work_dir>/config.yaml``), then runs ``shoprec run --date``
on it, with that config, on Beam's multi-process runner (``--workers`` SDK worker
processes, so a worker's memory is its own, as on Dataflow), each command a
child process watched by ``measure.TreeMonitor``. Per stage (split where
``shoprec run`` prints ``shoprec <stage>: done``): wall seconds, CPU-seconds of
the whole process tree, peak RSS of the coordinator (the ``shoprec`` process)
and of the largest worker process, and the bytes of what the stage wrote.
Every stage's figures are appended to ``<work_dir>/stages.jsonl`` as it
finishes (a long run can be read while it goes); the table is printed at the
end. Not part of ``make test``: 100x the demo takes hours on 2 cores::

    nice -n 10 python benchmarks/scale_run.py --users 150000 --items 3000 \\
        --work_dir /tmp/scale100
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from typing import Dict, List, Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # run as a script: make the benchmarks package importable
    sys.path.insert(0, REPO_ROOT)

from benchmarks import measure  # noqa: E402

DONE = re.compile(r"^shoprec (\w+): (done in|up to date|skipped)")
COLUMNS = ("stage", "wall_s", "cpu_s", "coordinator_peak_rss_mib", "worker_peak_rss_mib",
           "workers", "output_mib")


def folder_bytes(path: str) -> int:
    """Bytes of every file under ``path`` (0 when it does not exist)."""
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            full = os.path.join(folder, name)
            if not os.path.islink(full):
                total += os.path.getsize(full)
    return total


def _shoprec() -> List[str]:
    return [sys.executable, "-m", "shoprec"]


def run_watched(argv: List[str], log_path: str, on_stage, stage_dir,
                whole: Optional[str] = None) -> int:
    """Runs ``argv`` under a :class:`measure.TreeMonitor`; ``on_stage(row)`` per stage.

    A stage ends where the command prints ``shoprec <stage>: done ...``, or
    with the command when ``whole`` names its one stage; its output bytes
    are ``folder_bytes(stage_dir(stage))``.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO_ROOT] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=env, cwd=REPO_ROOT, text=True, bufsize=1)
        monitor = measure.TreeMonitor(proc.pid)
        monitor.start()
        try:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                found = DONE.match(line)
                if found:
                    _stage_row(monitor, found.group(1), found.group(2), on_stage, stage_dir)
            code = proc.wait()
            if whole and not code:
                _stage_row(monitor, whole, "done", on_stage, stage_dir)
        finally:
            monitor.stop()
    return code


def _stage_row(monitor, stage, status, on_stage, stage_dir) -> None:
    row = dict(monitor.mark(), stage=stage, status=status)
    row["output_mib"] = folder_bytes(stage_dir(stage)) / 2**20
    on_stage(row)


def table(rows: List[Dict]) -> str:
    """The stages as a Markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(
            f"{row[c]:,.1f}" if isinstance(row[c], float) else str(row[c]) for c in COLUMNS)
            + " |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=150_000)
    parser.add_argument("--items", type=int, default=3_000)
    parser.add_argument("--date", default="2026-12-01",
                        help="the run's date (its partition, and {date} in --data)")
    parser.add_argument("--workers", type=int, default=2, help="Beam SDK worker processes")
    parser.add_argument("--work_dir", required=True)
    parser.add_argument("--skip_generate", action="store_true",
                        help="the shop is already there (a rerun after a code change)")
    args = parser.parse_args(argv)
    work = os.path.abspath(args.work_dir)
    shop, run_dir = os.path.join(work, "shop", "dt={date}"), os.path.join(work, "run")
    os.makedirs(work, exist_ok=True)
    stages_path, log_path = os.path.join(work, "stages.jsonl"), os.path.join(work, "run.log")
    config = measure.write_demo_config(os.path.join(work, "config.yaml"), {
        "generate": {"num_users": args.users, "num_items": args.items}})
    rows: List[Dict] = []

    def record(row):
        rows.append(row)
        with open(stages_path, "a") as f:
            f.write(json.dumps(dict(row, time=time.time())) + "\n")
        print(json.dumps(row), flush=True)

    def stage_dir(stage):
        return shop.format(date=args.date) if stage == "generate" else os.path.join(
            run_dir, stage)

    beam = ["--direct_running_mode=multi_processing", f"--direct_num_workers={args.workers}"]
    started = time.perf_counter()
    if not args.skip_generate:
        generate = _shoprec() + ["generate", "--config", config,
                                 "--run_dir", shop.format(date=args.date)]
        code = run_watched(generate, log_path, record, stage_dir, whole="generate")
        if code:
            print(f"generate exited {code}; see {log_path}")
            return code
    day = _shoprec() + ["run", "--config", config, "--date", args.date, "--data", shop,
                        "--run_dir", run_dir] + beam
    code = run_watched(day, log_path, record, stage_dir)
    print(f"\nshoprec run exited {code} after {time.perf_counter() - started:.0f}s "
          f"({args.users} users, {args.items} items)\n")
    print(table(rows))
    return code


if __name__ == "__main__":
    sys.exit(main())
