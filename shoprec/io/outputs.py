"""Writing a stage's outputs: clearing its folder, writing small text files and reports.

Every stage replaces its own folder on each run, so a re-run leaves no stale
shard from an earlier one; each writes its report as JSON beside its outputs.
Paths may be local or on an object store (Beam's FileSystems).
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems


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
