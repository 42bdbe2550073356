"""What the infra tests share: the repo's infra/ folder, the DAG's exit codes, a pod's shell.

:func:`run_container` runs a container's command line in a real shell with a
stand-in ``shoprec`` first on ``PATH``, which records its arguments and
``TF_CONFIG`` as one JSON line and exits 0, so a test sees exactly what the
container would run.
"""

import ast
import json
import os
import subprocess
import sys
from typing import Dict, List, Mapping

INFRA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                     "infra")
DAG_FILE = os.path.join(INFRA, "airflow", "shoprec_daily.py")

STUB = """#!/bin/sh
"@PYTHON@" -c 'import json, os, sys; print(json.dumps({"args": sys.argv[1:],
  "tf_config": os.environ.get("TF_CONFIG")}))' "$@" >> "$STUB_LOG"
"""


def dag_exit_codes() -> Dict[str, int]:
    """The DAG's ``SHOPREC_EXIT_CODES``, read from its source (no Airflow import)."""
    with open(DAG_FILE) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "SHOPREC_EXIT_CODES":
            return ast.literal_eval(node.value)
    raise AssertionError(f"SHOPREC_EXIT_CODES not found in {DAG_FILE}")


def run_container(command: List[str], args: List[str], env: Mapping[str, str],
                  tmp_path) -> Dict:
    """Runs ``command + args`` (a container's) with ``env``; returns the stub's record."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "shoprec"
    stub.write_text(STUB.replace("@PYTHON@", sys.executable))
    stub.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    if log.exists():
        log.unlink()
    full_env = dict(env, STUB_LOG=str(log), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    subprocess.run(command + args, env=full_env, check=True, timeout=60)
    (line,) = log.read_text().splitlines()
    return json.loads(line)


def container_env(container: Mapping) -> Dict[str, str]:
    """A container's literal ``env`` entries as a dict."""
    return {e["name"]: e["value"] for e in container.get("env", [])}
