"""Published models: one folder per blessed version and the ``CURRENT`` pointer.

``shoprec push`` publishes a blessed model as ``models/<version>/`` (the
serving SavedModel, its final checkpoint, the TFT output it was trained on,
its metrics and the gate's verdict) and then points ``models/CURRENT`` at it.
Scoring, recommending and warm starts read the model ``CURRENT`` names
(:func:`require_current`), never ``train/model``: a model the gate refused is
never used.

Publishing is ordered so that a reader never sees half a version: the
version is assembled in a staging folder, renamed to its version name (on an
object store, where renames are copies, copied), and only then is the
pointer replaced, whole (``shoprec.io.files.write``: a temporary file renamed
over it on a disk, one object upload on ``gs://``). A job killed before the
pointer moves leaves the previous version current (the tests kill it at
``before_flip``, after the version is in place).
Versions are UTC timestamps to the microsecond, so they sort in publishing
order. Each version holds a manifest listing its files (``_SUCCESS``, as a
stage folder does), and :func:`check_current` holds the current version to
it before a stage reads it.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Mapping, Optional, Tuple

from shoprec.core.errors import InputDamagedError, StageOrderError
from shoprec.core.layout import Layout
from shoprec.io import files, manifest
from shoprec.io.outputs import clear, write_report, write_success, write_text
from shoprec.io.publish import fault_point

# What a published version's manifest names as the stage that wrote it.
VERSION_STAGE = "model"


def new_version(now: Optional[dt.datetime] = None) -> str:
    """A version name that sorts by publishing time: ``20261202T061530123456Z``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def current_version(layout: Layout) -> Optional[str]:
    """The version ``CURRENT`` names, or None when no model has been published.

    Raises:
        InputDamagedError: ``CURRENT`` is there but names no version: empty,
            not UTF-8 text, or more than one line.
    """
    raw = files.read(layout.current_pointer)
    if raw is None:
        return None
    try:
        version = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        version = ""
    if not version or any(c in version for c in "/\n\r\x00"):
        raise InputDamagedError(
            f"{layout.current_pointer} is damaged: it names no model version (its one line "
            f"is a folder name in {layout.models_root}); write the name of an intact "
            "version into it, or remove it for `shoprec push` to publish the trained model")
    return version


def check_current(layout: Layout) -> None:
    """Refuses a current model version whose files are not those its manifest lists.

    Nothing to check when no model is published or ``CURRENT`` names a
    missing folder: the reader says so (:func:`require_current`).

    Raises:
        InputDamagedError: ``CURRENT`` is damaged, the version has no
            manifest, or one of its files differs from it.
    """
    version = current_version(layout)
    if version is None or not files.exists(layout.version_dir(version)):
        return
    folder = layout.version_dir(version)
    fix = (f"point {layout.current_pointer} at an intact version, or remove it for "
           "`shoprec push` to publish the trained model")
    manifest.check(folder, VERSION_STAGE, fix, name=f"model version {version}", required=True)


def require_current(layout: Layout) -> Tuple[str, str]:
    """The current published version and its serving SavedModel.

    Raises:
        StageOrderError: no model has been published in ``layout.models_root``,
            or the version ``CURRENT`` names is not there.
    """
    version = current_version(layout)
    if version is None:
        raise StageOrderError(
            f"no published model in {layout.models_root} (no {layout.current_pointer}): "
            "run `shoprec train` and then `shoprec push`")
    model_dir = layout.published_model(version)
    if not files.exists(model_dir):
        raise StageOrderError(f"{layout.current_pointer} names version {version}, but "
                              f"{model_dir} is missing; run `shoprec push --force_bless` "
                              "after `shoprec train` to publish a model again")
    return version, model_dir


def publish(layout: Layout, version: str, folders: Mapping[str, str],
            reports: Mapping[str, Mapping]) -> str:
    """Publishes a version and makes it current; the pointer moves last.

    Args:
        layout: The run's folders (``models_root`` is where versions live).
        version: The new version's name (:func:`new_version`).
        folders: {name inside the version: folder to copy} (``model``, ...).
        reports: {file name inside the version: JSON-able report}.

    Returns:
        The published version's folder.

    Raises:
        FileExistsError: the version is already published (names are unique
            to the microsecond; a clash is a second publisher at once).
    """
    final = layout.version_dir(version)
    if files.exists(final):
        raise FileExistsError(f"model version {version} is already published at {final}")
    staging = layout.version_staging_dir(version)
    clear(staging)
    for name in sorted(folders):
        files.copy_tree(folders[name], os.path.join(staging, name))
    for name, report in sorted(reports.items()):
        write_report(os.path.join(staging, name), report)
    # Its file list, which every reader checks (check_current).
    write_success(staging, VERSION_STAGE)
    files.move_tree(staging, final)
    fault_point("before_flip")
    # The pointer last, whole: a reader sees the old name or the new one.
    write_text(layout.current_pointer, version + "\n", "text/plain")
    return final
