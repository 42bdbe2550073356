"""Launches local multi-worker training jobs: worker processes on 127.0.0.1.

Each worker is a fresh Python process (MultiWorkerMirroredStrategy must be
created before any other TensorFlow op), given its own TF_CONFIG naming free
loopback ports. Every process is killed and reaped when a job ends, however
it ends.
"""

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from typing import List, Optional, Sequence

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_ports(n: int) -> List[int]:
    """n distinct free TCP ports on 127.0.0.1 (all held open until all are picked)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports: Sequence[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def write_config(config, path: str) -> str:
    """Writes the run, model and training sections of ``config`` as a loadable YAML file."""
    def plain(value):
        # YAML has no tuples, and unset (None) fields fall back to their defaults.
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    data = {"run_dir": config.run_dir,
            "model": plain(dataclasses.asdict(config.model)),
            "training": plain(dataclasses.asdict(config.training))}
    with open(path, "w") as f:
        yaml.safe_dump(data, f)
    return path


def train_command(config_path: str) -> List[str]:
    return [sys.executable, "-m", "trainer.train", "--config", config_path,
            "--strategy", "multi_worker"]


class Job:
    """Worker processes of one training job; use as a context manager.

    Args:
        commands: One command line per worker, worker 0 (the chief) first.
        log_dir: Each worker's stdout and stderr go to ``worker-<i>.log`` here.
    """

    def __init__(self, commands: Sequence[Sequence[str]], log_dir: str, tag: str):
        self.commands = [list(c) for c in commands]
        self.logs = [os.path.join(log_dir, f"{tag}-worker-{i}.log") for i in range(len(commands))]
        self.processes: List[subprocess.Popen] = []

    def __enter__(self) -> "Job":
        ports = free_ports(len(self.commands))
        for i, command in enumerate(self.commands):
            env = dict(os.environ, TF_CONFIG=tf_config(ports, i), TF_CPP_MIN_LOG_LEVEL="2",
                       PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
            with open(self.logs[i], "w") as log:
                self.processes.append(subprocess.Popen(
                    command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
        return self

    def wait(self, timeout_s: float) -> List[Optional[int]]:
        """Exit codes once every worker has exited, None for those still running at the deadline."""
        deadline = time.monotonic() + timeout_s
        codes: List[Optional[int]] = []
        for process in self.processes:
            try:
                codes.append(process.wait(timeout=max(0.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                codes.append(None)
        return codes

    def tail(self, lines: int = 40) -> str:
        out = []
        for path in self.logs:
            with open(path, errors="replace") as f:
                text = f.read().splitlines()
            out.append(f"--- {os.path.basename(path)} ---\n" + "\n".join(text[-lines:]))
        return "\n".join(out)

    def __exit__(self, *exc) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()
