"""A stage's manifest: what its output was made from, kept in its success marker.

A published stage folder's ``_SUCCESS`` is a JSON manifest: the stage, its
inputs (per input: how many files, their bytes, newest modification time and
a digest of the whole listing), the digests of the upstream stages' manifests
it read, the config's hash, the package version and git commit, the stage's
options, row counts, the output's files, duration and finish time. The
*fingerprint* is the digest of the parts that decide the output (inputs,
upstream manifests, config, code, options): a stage whose published manifest
carries the fingerprint it would compute now is up to date and is skipped.

What the fingerprint leaves out: the contents of an input beyond its files'
sizes and modification times, edits to the code that are not committed (the
commit is the same; ``--force`` re-runs), and Beam flags (another runner writes
the same output).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import subprocess
from typing import Any, Dict, Mapping, Optional

import shoprec
from shoprec.core.layout import success_marker
from shoprec.io import files

# Config fields that say where a run is or how it is locked, not what it computes.
_PLACE_FIELDS = ("run_dir", "run_root", "partition", "date", "layout_roots",
                 "lock_stale_hours")


def digest(data: Any) -> str:
    """SHA-256 of ``data`` as canonical JSON (sorted keys)."""
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _listing(path: str):
    """(path, size, mtime) of every file ``path`` names: a file, a glob or a folder."""
    return [(f.path, f.size, f.mtime) for f in files.listing(path)]


def input_stats(path: str) -> Dict[str, Any]:
    """What the fingerprint knows of one input: files, bytes, newest mtime, listing digest."""
    found = _listing(path)
    return {"path": path, "files": len(found), "bytes": sum(f[1] for f in found),
            "newest_mtime": max((f[2] for f in found), default=None),
            "digest": digest(found)}


def output_stats(stage_dir: str) -> Dict[str, Any]:
    """Files and bytes of a finished stage folder, paths relative to it."""
    prefix = stage_dir.rstrip("/") + "/"
    found = [(p[len(prefix):], size) for p, size, _ in _listing(stage_dir)
             if p.startswith(prefix)]
    return {"files": len(found), "bytes": sum(f[1] for f in found), "digest": digest(found)}


def config_hash(config) -> str:
    """Digest of everything in the run config but where the run is."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
              if f.name not in _PLACE_FIELDS}
    return digest({k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
                   for k, v in fields.items()})


@functools.lru_cache(maxsize=1)
def code_version() -> Dict[str, Optional[str]]:
    """The package version and, from a git checkout, its commit (else None)."""
    source = os.path.dirname(os.path.dirname(os.path.abspath(shoprec.__file__)))
    try:
        commit = subprocess.run(["git", "-C", source, "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None  # an installed package, or no git: the version alone
    return {"version": shoprec.__version__, "commit": commit or None}


def read(stage_dir: str) -> Optional[Dict[str, Any]]:
    """The manifest in ``stage_dir``'s marker, or None without a readable one."""
    raw = marker_bytes(stage_dir)
    if raw is None:
        return None
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except ValueError:
        return None
    return manifest if isinstance(manifest, dict) else None


def marker_bytes(stage_dir: str) -> Optional[bytes]:
    """The raw bytes of ``stage_dir``'s success marker, or None when it has none."""
    return files.read(success_marker(stage_dir))


def marker_digest(stage_dir: str) -> Optional[str]:
    """SHA-256 of ``stage_dir``'s marker (what a downstream fingerprint records)."""
    raw = marker_bytes(stage_dir)
    return None if raw is None else hashlib.sha256(raw).hexdigest()


def fingerprint(stage: str, inputs: Mapping[str, str], upstream: Mapping[str, str],
                config, options: Mapping[str, Any]) -> Dict[str, Any]:
    """What decides a stage's output, and its digest under ``fingerprint``.

    Args:
        stage: The stage's name.
        inputs: {name: path, glob or folder} of the files it reads.
        upstream: {stage: its published folder} of the stages it reads.
        config: The run config.
        options: The stage's own flags (``strategy``, ``pairs``).
    """
    parts = {
        "stage": stage,
        "inputs": {name: input_stats(path) for name, path in sorted(inputs.items())},
        "upstream": {name: marker_digest(path) for name, path in sorted(upstream.items())},
        "config_hash": config_hash(config),
        "code": code_version(),
        "options": {k: v for k, v in sorted(options.items()) if v is not None},
    }
    return dict(parts, fingerprint=digest(parts))
