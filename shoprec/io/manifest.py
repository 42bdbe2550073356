"""A stage's manifest: what its output was made from, kept in its success marker.

A published stage folder's ``_SUCCESS`` is a JSON manifest: the stage, its
inputs (per input: how many files, their bytes, newest modification time and
a digest of the whole listing), the digests of the upstream stages' manifests
it read, the config's hash, the package version and git commit, the stage's
options, row counts, the output's files (each file's size and CRC32C),
duration and finish time. The *fingerprint* is the digest of the parts that
decide the output (inputs, upstream manifests, config, code, options): a stage
whose published manifest carries the fingerprint it would compute now is up to
date and is skipped.

Before a stage runs, :func:`check` holds each folder it reads to the list in
that folder's manifest: a file missing, added, truncated, changed or
unreadable since the stage that wrote it finished stops the reader with
:class:`InputDamagedError`, naming the file, before any job starts.

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
from shoprec.core.errors import InputDamagedError
from shoprec.core.layout import SUCCESS_FILE, success_marker
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


def _outputs(stage_dir: str) -> Dict[str, files.FileInfo]:
    """{path relative to ``stage_dir``: file} of a stage folder's files, its marker aside."""
    prefix = stage_dir.rstrip("/") + "/"
    found = {info.path[len(prefix):]: info for info in files.listing(stage_dir)
             if info.path.startswith(prefix)}
    found.pop(SUCCESS_FILE, None)
    return found


def output_stats(stage_dir: str) -> Dict[str, Any]:
    """Files and bytes of a finished stage folder, and each file's size and CRC32C.

    Returns:
        ``files``, ``bytes``, ``digest`` (of the names and sizes) and ``list``:
        {path relative to the folder: [size, CRC32C]}, the marker left out.
    """
    found = _outputs(stage_dir)
    sizes = [(name, info.size) for name, info in sorted(found.items())]
    return {"files": len(found), "bytes": sum(size for _, size in sizes),
            "digest": digest(sizes),
            "list": {name: [info.size, files.checksum(info)] for name, info in found.items()}}


def _listed(raw: bytes, stage: str) -> Dict[str, Any]:
    """The file list of ``stage``'s manifest ``raw``.

    Raises:
        ValueError: not ``stage``'s manifest with a file list; the message
            says why (``is not JSON (...)``).
    """
    try:
        found = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8 text") from None
    except ValueError as err:
        raise ValueError(f"is not JSON ({err})") from None
    if not isinstance(found, dict) or found.get("stage") != stage:
        raise ValueError(f"is not a manifest of {stage}")
    listed = (found.get("outputs") or {}).get("list")
    if not isinstance(listed, dict) or not all(
            isinstance(v, list) and len(v) == 2 for v in listed.values()):
        raise ValueError("has no list of its files")
    return listed


def _problem(info: Optional[files.FileInfo], listed: Optional[list], stage: str) -> str:
    """What is wrong with one file of a checked folder ('' when nothing is)."""
    if info is None:
        return "is missing"
    if listed is None:
        return f"is not a file {stage} wrote"
    size, crc = listed
    if info.size != size:
        return f"is {info.size} bytes, not the {size} {stage} wrote"
    try:
        same = files.checksum(info) == crc
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    return "" if same else f"has other bytes than {stage} wrote (its CRC32C differs)"


def check(stage_dir: str, stage: str, fix: str, name: Optional[str] = None,
          required: bool = False) -> None:
    """Refuses a finished folder whose files are not the ones its manifest lists.

    Every file is held to the manifest's list: there, the same size, the same
    CRC32C (free on Cloud Storage; a local file is read once), and no file
    beyond the list. A stage folder without a marker is left to its reader,
    which refuses it as unfinished (``require_success``).

    Args:
        stage_dir: A finished folder (a stage's, or a published model version).
        stage: The stage its manifest names (``ingest``, ``model``, ...).
        fix: What the user does about it, ending the message.
        name: What the message calls the folder (default ``<stage>'s output``).
        required: Refuse a folder without a marker too (a published model
            version always has one).

    Raises:
        InputDamagedError: the manifest cannot be read, or a file differs;
            the message names the first such file.
    """
    marker = success_marker(stage_dir)
    damaged = (name or f"{stage}'s output") + " is damaged"
    try:
        raw = files.read(marker)
        found = None if raw is None else _outputs(stage_dir)
    except OSError as err:  # an unreadable file, or a link to nothing, in the folder
        raise InputDamagedError(f"{damaged}: {err}; {fix}") from err
    if raw is None:
        if required:
            raise InputDamagedError(f"{damaged}: {marker} is missing; {fix}")
        return
    try:
        listed = _listed(raw, stage)
    except ValueError as err:
        raise InputDamagedError(f"{damaged}: {marker} {err}; {fix}") from err
    for relative in sorted(set(listed) | set(found)):
        problem = _problem(found.get(relative), listed.get(relative), stage)
        if problem:
            raise InputDamagedError(
                f"{damaged}: {os.path.join(stage_dir, relative)} {problem}; {fix}")


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
