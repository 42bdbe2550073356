"""Writing a stage's outputs: clearing its folder, writing small text files and reports.

Every stage clears its own folder before it writes (run from the CLI, that is
its staging place, ``shoprec.io.publish``), so a re-run leaves no stale shard
from an earlier one; each writes its report as JSON beside its outputs, and,
last and only when it succeeded, its success marker (:func:`write_success`),
which the stage runner completes into the manifest (``shoprec.io.manifest``)
before it publishes the folder. A stage checks its upstream stages' markers
(:func:`require_success`) before it reads their folders. Paths may be local or
on ``gs://`` (``shoprec.io.files``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any, Mapping, Optional, Sequence

from shoprec.core.errors import StageOrderError
from shoprec.core.layout import REPORT_FILE, SUCCESS_FILE, staging_dir_of, success_marker
from shoprec.io import files, manifest as manifest_lib


def clear(directory: str, keep: Sequence[str] = ()) -> None:
    """Deletes a previous run's outputs under ``directory``.

    Args:
        directory: The stage's folder.
        keep: Names of children of ``directory`` to leave as they are (the
            trainer keeps an unfinished job's backup to resume from).
    """
    if os.path.islink(directory):
        # A published folder (a link to its version), cleared by a stage called
        # as a library to write in place: the link goes, the version stays
        # until the next publish of the stage deletes it.
        os.remove(directory)
        return
    kept = [os.path.join(directory, name).rstrip("/") for name in keep]

    def is_kept(path: str) -> bool:
        path = path.rstrip("/")
        return any(path == k or path.startswith(k + "/") for k in kept)

    if not kept:
        files.delete([directory])
        return
    # Each child once, by the first path part of every file under ``directory``
    # (object stores have files, not folders); a folder goes whole.
    children = {os.path.join(directory, name.split("/", 1)[0])
                for name in files.relative_files(directory)}
    files.delete(sorted(c for c in children if not is_kept(c)))


def write_text(path: str, text: str, mime: str) -> None:
    """Writes one small text file, whole (local or ``gs://``)."""
    files.write(path, text.encode("utf-8"), mime)


def write_report(path: str, report: Mapping[str, Any]) -> None:
    """Writes a stage's report as indented JSON with sorted keys."""
    write_text(path, json.dumps(report, indent=2, sort_keys=True, default=str),
               "application/json")


def write_success(stage_dir: str, stage: str,
                  manifest: Optional[Mapping[str, Any]] = None) -> None:
    """Marks ``stage_dir`` as the output of a finished ``stage``; call it last.

    The marker lists the folder's files with their sizes and checksums
    (``outputs``; ``shoprec.io.manifest.output_stats``), which every reader's
    stage runner checks before it reads the folder (``manifest.check``).

    Args:
        stage_dir: The stage's folder (or its staging place).
        stage: The stage's name.
        manifest: What the output was made from (``shoprec.io.manifest``);
            the stage itself writes none, the stage runner adds it.
    """
    marker = dict(manifest or {}, stage=stage, outputs=manifest_lib.output_stats(stage_dir),
                  finished=dt.datetime.now(dt.timezone.utc).isoformat())
    write_text(success_marker(stage_dir), json.dumps(marker, indent=1, sort_keys=True,
                                                     default=str), "application/json")


def read_report(path: str) -> Optional[Any]:
    """A report (or metrics) JSON a stage wrote, or None when it is absent or unreadable."""
    raw = files.read(path)
    if raw is None:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
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
            failed (its report says so, in the folder or, for a stage run
            from the CLI, in its staging place) or stopped half way. A
            staged folder is never accepted, finished or not.
    """
    if files.exists(success_marker(stage_dir)):
        return
    for folder in (staging_dir_of(stage_dir), stage_dir):
        report = os.path.join(folder, REPORT_FILE)
        if _status(report) == "failed":
            raise StageOrderError(f"`shoprec {stage}` failed: see {report}; fix what it "
                                  f"names and run `shoprec {stage}` again")
    if files.exists(stage_dir):
        raise StageOrderError(f"`shoprec {stage}` did not finish in {stage_dir} (no "
                              f"{SUCCESS_FILE}); run `shoprec {stage}` again")
    raise StageOrderError(f"no {stage} output at {stage_dir}: run `shoprec {stage}` first")
