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
order.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Mapping, Optional, Tuple

from shoprec.core.errors import StageOrderError
from shoprec.core.layout import Layout
from shoprec.io import files
from shoprec.io.outputs import clear, write_report, write_text
from shoprec.io.publish import fault_point


def new_version(now: Optional[dt.datetime] = None) -> str:
    """A version name that sorts by publishing time: ``20261202T061530123456Z``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def current_version(layout: Layout) -> Optional[str]:
    """The version ``CURRENT`` names, or None when no model has been published."""
    raw = files.read(layout.current_pointer)
    version = raw.decode("utf-8").strip() if raw is not None else ""
    return version or None


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
    files.move_tree(staging, final)
    fault_point("before_flip")
    # The pointer last, whole: a reader sees the old name or the new one.
    write_text(layout.current_pointer, version + "\n", "text/plain")
    return final
