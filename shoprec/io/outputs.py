"""Writing a stage's outputs: clearing its folder, writing small text files and reports.

Every stage replaces its own folder on each run, so a re-run leaves no stale
shard from an earlier one; each writes its report as JSON beside its outputs,
and, last and only when it succeeded, its success marker
(:func:`write_success`). A stage checks its upstream stages' markers
(:func:`require_success`) before it reads their folders. Paths may be local or
on an object store (Beam's FileSystems).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Mapping, Optional, Sequence

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from shoprec.core.errors import StageOrderError
from shoprec.core.layout import REPORT_FILE, SUCCESS_FILE, success_marker


def clear(directory: str, keep: Sequence[str] = ()) -> None:
    """Deletes a previous run's outputs under ``directory``.

    Args:
        directory: The stage's folder.
        keep: Names of children of ``directory`` to leave as they are (the
            trainer keeps an unfinished job's backup to resume from).
    """
    kept = [FileSystems.join(directory, name).rstrip("/") for name in keep]

    def is_kept(path: str) -> bool:
        path = path.rstrip("/")
        return any(path == k or path.startswith(k + "/") for k in kept)

    if not kept:
        if FileSystems.exists(directory):
            FileSystems.delete([directory])  # Local folders: removed recursively.
    else:
        # Each child once, by the first path part under ``directory`` of every
        # file (matching lists files, not folders); a folder goes whole.
        files = FileSystems.match([FileSystems.join(directory, "**")])[0].metadata_list
        prefix = directory.rstrip("/") + "/"
        children = {FileSystems.join(directory, m.path[len(prefix):].split("/", 1)[0])
                    for m in files if m.path.startswith(prefix)}
        doomed = sorted(c for c in children if not is_kept(c))
        if doomed:
            FileSystems.delete(doomed)
    # Object stores have no folders: delete whatever still lies under the prefix.
    leftover = FileSystems.match([FileSystems.join(directory, "**")])[0].metadata_list
    doomed = [m.path for m in leftover if not is_kept(m.path)]
    if doomed:
        FileSystems.delete(doomed)


def write_text(path: str, text: str, mime: str) -> None:
    """Writes one small text file (local or object store)."""
    with FileSystems.create(path, mime_type=mime,
                            compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(text.encode("utf-8"))


def write_report(path: str, report: Mapping[str, Any]) -> None:
    """Writes a stage's report as indented JSON with sorted keys."""
    write_text(path, json.dumps(report, indent=2, sort_keys=True, default=str),
               "application/json")


def write_success(stage_dir: str, stage: str) -> None:
    """Marks ``stage_dir`` as the output of a finished ``stage``; call it last."""
    marker = {"stage": stage, "finished": dt.datetime.now(dt.timezone.utc).isoformat()}
    write_text(success_marker(stage_dir), json.dumps(marker, sort_keys=True),
               "application/json")


def read_report(path: str) -> Optional[Any]:
    """A report (or metrics) JSON a stage wrote, or None when it is absent or unreadable."""
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        try:
            return json.loads(f.read().decode("utf-8"))
        except ValueError:
            return None


def _status(report_path: str) -> Optional[str]:
    """The ``status`` of a stage's report, or None without a readable one."""
    report = read_report(report_path)
    return report.get("status") if isinstance(report, dict) else None


def require_success(stage_dir: str, stage: str) -> None:
    """Refuses an upstream folder its stage did not finish.

    Args:
        stage_dir: The upstream stage's folder.
        stage: Its name, for the message (``embed``, ``ingest``, ...).

    Raises:
        StageOrderError: no success marker: the stage never ran there, or it
            failed (its report says so) or stopped half way.
    """
    if FileSystems.exists(success_marker(stage_dir)):
        return
    report = FileSystems.join(stage_dir, REPORT_FILE)
    status = _status(report)
    if status == "failed":
        raise StageOrderError(f"`shoprec {stage}` failed: see {report}; fix what it names "
                              f"and run `shoprec {stage}` again")
    if FileSystems.exists(stage_dir):
        raise StageOrderError(f"`shoprec {stage}` did not finish in {stage_dir} (no "
                              f"{SUCCESS_FILE}); run `shoprec {stage}` again")
    raise StageOrderError(f"no {stage} output at {stage_dir}: run `shoprec {stage}` first")
