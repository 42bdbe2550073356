"""Publishing a stage's finished output so that readers only ever see whole folders.

A stage run from the CLI writes its whole folder in its staging place
(``RUN/.staging/<stage>/``; its inputs are read from the published folders),
its manifest last, and :func:`publish` then makes it the stage's folder:

- **Local disk**: the staged folder is renamed into ``RUN/.versions/`` as
  ``<stage>-<manifest digest>``, and ``RUN/<stage>`` is a symbolic link that is
  replaced, by one ``os.replace``, with a link to it; the versions it no
  longer points to are deleted after. At every instant ``RUN/<stage>`` is the
  previous complete output or the new one, never a mix or nothing (Beam's file
  sinks do the same: write to a temporary place, rename at finalize).
- **Object stores** (``gs://``), where a rename is a copy: the old marker is
  deleted first, so the folder stops being accepted, then its files, then
  the staged files are copied over and the marker is copied last: the marker
  is what makes the folder visible. While the copy runs, readers find no
  marker and refuse the folder (``shoprec.io.outputs.require_success``).

Publishing is idempotent: publishing what is already published changes
nothing. A process killed at any point leaves the previous output readable,
and the next run of the stage publishes or rewrites its output.

Kill points for tests: with ``SHOPREC_FAULT_POINT`` set to one of
:data:`FAULT_POINTS`, the process kills itself with SIGKILL when it reaches
that point (read each time, so a test sets it per subprocess).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import signal

from apache_beam.io.filesystems import FileSystems

from shoprec.core.layout import SUCCESS_FILE, Layout, success_marker
from shoprec.io import manifest

FAULT_ENV = "SHOPREC_FAULT_POINT"
# In order: the stage's outputs written, no manifest yet; the manifest written,
# not yet moved; the version in place, the link not switched; switched, the old
# versions not yet deleted.
FAULT_POINTS = ("before_marker", "before_publish", "before_flip", "before_cleanup")


def fault_point(name: str) -> None:
    """Kills this process with SIGKILL when ``SHOPREC_FAULT_POINT`` names ``name``."""
    if name not in FAULT_POINTS:
        raise ValueError(f"unknown fault point {name!r}; known: {FAULT_POINTS}")
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def is_local(path: str) -> bool:
    """Whether ``path`` is on the local disk (atomic renames and links)."""
    return "://" not in path


def publish(layout: Layout, stage: str, atomic_rename: bool = None) -> str:
    """Makes the staged output of ``stage`` its published folder.

    Args:
        layout: The run's layout (not a staged one).
        stage: The stage's name; its folder is ``layout.stage_dir(stage)``.
        atomic_rename: Publish by rename and link (True) or by copy, marker
            last (False); default: by rename on a local disk.

    Returns:
        The published folder's real location (the version on a local disk).

    Raises:
        FileNotFoundError: nothing is staged with a marker and nothing is
            published either.
    """
    staged, target = layout.staging_dir(stage), layout.stage_dir(stage)
    if atomic_rename is None:
        atomic_rename = is_local(target)
    staged_marker = manifest.marker_bytes(staged)
    if staged_marker is None:
        if manifest.marker_bytes(target) is not None:
            return os.path.realpath(target) if atomic_rename else target  # done already
        raise FileNotFoundError(f"nothing to publish: no {SUCCESS_FILE} in {staged}")
    fault_point("before_publish")
    if atomic_rename:
        return _publish_by_rename(layout, stage, staged, target, staged_marker)
    return _publish_by_copy(staged, target, staged_marker)


def _fsync_dir(path: str) -> None:
    """Makes a rename or link in ``path`` survive a power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish_by_rename(layout: Layout, stage: str, staged: str, target: str,
                       marker: bytes) -> str:
    versions = layout.versions_dir
    os.makedirs(versions, exist_ok=True)
    version = os.path.join(versions, f"{stage}-{hashlib.sha256(marker).hexdigest()[:16]}")
    if os.path.exists(version):
        # The same manifest was moved here before a crash: the same output.
        shutil.rmtree(staged)
    else:
        os.rename(staged, version)
    _fsync_dir(versions)
    fault_point("before_flip")
    if os.path.isdir(target) and not os.path.islink(target):
        # A folder a stage wrote in place (before publishing, or called as a
        # library): moved aside whole, to be deleted with the old versions.
        os.rename(target, os.path.join(versions, f"{stage}-unpublished"))
    link = f"{target}.link-{os.getpid()}"
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(os.path.relpath(version, os.path.dirname(target)), link)
    os.replace(link, target)
    _fsync_dir(os.path.dirname(target))
    fault_point("before_cleanup")
    for old in glob.glob(os.path.join(versions, f"{stage}-*")):
        if old != version:
            shutil.rmtree(old)
    return version


def _copy_tree(source: str, destination: str, skip: str) -> None:
    prefix = source.rstrip("/") + "/"
    files = [m.path for m in FileSystems.match([FileSystems.join(source, "**")])[0].metadata_list]
    relative = sorted(p[len(prefix):] for p in files if p.startswith(prefix))
    relative = [r for r in relative if r != skip]
    for name in relative:
        path = FileSystems.join(destination, name)
        if is_local(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
    if relative:
        FileSystems.copy([FileSystems.join(source, r) for r in relative],
                         [FileSystems.join(destination, r) for r in relative])


def _publish_by_copy(staged: str, target: str, marker: bytes) -> str:
    if manifest.marker_bytes(target) != marker:
        if FileSystems.exists(success_marker(target)):
            FileSystems.delete([success_marker(target)])  # no longer accepted
        if FileSystems.exists(target):
            FileSystems.delete([target])
        leftover = [m.path for m in
                    FileSystems.match([FileSystems.join(target, "**")])[0].metadata_list]
        if leftover:
            FileSystems.delete(leftover)
        _copy_tree(staged, target, skip=SUCCESS_FILE)
        fault_point("before_flip")
        # The marker last: from here on the folder is accepted.
        FileSystems.copy([success_marker(staged)], [success_marker(target)])
    fault_point("before_cleanup")
    FileSystems.delete([staged])
    return target
