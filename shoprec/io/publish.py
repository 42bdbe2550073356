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
  Every operation goes through ``shoprec.io.files``, and the tests run it
  against a Cloud Storage emulator (``tests/shoprec/io/test_publish.py``).

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
from typing import List, Optional

from shoprec.core.layout import SUCCESS_FILE, Layout, success_marker
from shoprec.io import files, manifest

FAULT_ENV = "SHOPREC_FAULT_POINT"
# In order: the stage's outputs written, no manifest yet; the manifest written,
# not yet moved; (object stores) the old folder deleted and one staged file
# copied; the version in place (object stores: every file but the marker), the
# link not switched; switched, the old versions (the staged copy) not yet deleted.
FAULT_POINTS = ("before_marker", "before_publish", "mid_copy", "before_flip",
                "before_cleanup")


def fault_point(name: str) -> None:
    """Kills this process with SIGKILL when ``SHOPREC_FAULT_POINT`` names ``name``."""
    if name not in FAULT_POINTS:
        raise ValueError(f"unknown fault point {name!r}; known: {FAULT_POINTS}")
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def publish(layout: Layout, stage: str, source: Optional[str] = None) -> str:
    """Makes a finished output of ``stage`` its published folder.

    Args:
        layout: The run's layout (not a staged one).
        stage: The stage's name; its folder is ``layout.stage_dir(stage)``.
        source: The finished folder: the staging place (default) or a
            version a killed publish moved into place (:func:`unpublished`).

    Returns:
        The published folder's real location (the version on a local disk).

    Raises:
        FileNotFoundError: nothing is staged with a marker and nothing is
            published either.
    """
    staged, target = source or layout.staging_dir(stage), layout.stage_dir(stage)
    atomic_rename = files.is_local(target)
    staged_marker = manifest.marker_bytes(staged)
    if staged_marker is None:
        if manifest.marker_bytes(target) is None:
            raise FileNotFoundError(f"nothing to publish: no {SUCCESS_FILE} in {staged}")
        if not atomic_rename:
            return target  # published already
        # Published already; a run killed before its clean-up left old versions.
        if os.path.islink(target):
            _delete_other_versions(layout, stage, os.path.realpath(target))
        return os.path.realpath(target)
    fault_point("before_publish")
    if atomic_rename:
        return _publish_by_rename(layout, stage, staged, target, staged_marker)
    return _publish_by_copy(staged, target, staged_marker)


def unpublished(layout: Layout, stage: str) -> List[str]:
    """Finished outputs of ``stage`` (with a marker) that are not its published folder.

    The staging place, once its manifest is written, and a version a publish
    killed before its link flip moved into place; the stage runner publishes
    the one whose manifest matches the run instead of running the stage again.
    """
    found = [layout.staging_dir(stage)]
    if not files.is_local(layout.versions_dir):  # no versions: published by copy
        return [f for f in found if manifest.marker_bytes(f) is not None]
    current = os.path.realpath(layout.stage_dir(stage))
    found += sorted(glob.glob(os.path.join(layout.versions_dir, f"{stage}-*")))
    return [f for f in found if os.path.realpath(f) != current
            and manifest.marker_bytes(f) is not None]


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
    if os.path.realpath(staged) == os.path.realpath(version):
        pass  # moved here by a publish killed before its flip
    elif os.path.exists(version):
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
    _delete_other_versions(layout, stage, version)
    return version


def _delete_other_versions(layout: Layout, stage: str, current: str) -> None:
    for old in glob.glob(os.path.join(layout.versions_dir, f"{stage}-*")):
        if os.path.realpath(old) != os.path.realpath(current):
            shutil.rmtree(old)


def _publish_by_copy(staged: str, target: str, marker: bytes) -> str:
    if manifest.marker_bytes(target) != marker:
        files.delete([success_marker(target)])  # from here on no longer accepted
        files.delete([target])
        names = [n for n in files.relative_files(staged) if n != SUCCESS_FILE]
        # One file first: a publish killed here leaves a half-copied folder.
        files.copy_files(staged, target, names[:1])
        fault_point("mid_copy")
        files.copy_files(staged, target, names[1:])
        fault_point("before_flip")
        # The marker last: from here on the folder is accepted.
        files.copy(success_marker(staged), success_marker(target))
    fault_point("before_cleanup")
    files.delete([staged])
    return target
