"""Where an item's photo is: a data set's image-path pattern, resolved against its root.

A data set names its photos either by a column holding the path or by a
pattern over item columns, such as H&M's
``images/{article_id[:3]}/{article_id}.jpg``. Ingest, the embed job and the
image encoder's catalogue reader all resolve paths here, so they agree on
which file is an item's photo.

Paths are confined: a relative path must stay under the images root (no
``..`` out of it), and an absolute path or a URL must lie under one of the
configured ``inputs.allowed_image_prefixes`` (none by default), since a
catalogue row is data, not a licence to read any file the job can. Anything
else is refused with :data:`OUTSIDE_ROOT`, the dead-letter reason. This is
the rule on the path's text; symbolic links that lead out of the root are
caught where the file is opened (``shoprec.io.photos``).
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, Optional, Sequence, Tuple

OUTSIDE_ROOT = "image_path_outside_root"
_PLACEHOLDER = re.compile(r"\{(\w+)(?:\[(-?\d*):(-?\d*)\])?\}")


def image_path(pattern: str, row: Mapping[str, Any]) -> str:
    """Fills ``pattern``'s ``{column}`` / ``{column[a:b]}`` from a raw row.

    A pattern without braces names the column holding the path.

    Raises:
        KeyError: a placeholder names a column the row lacks.
    """
    if "{" not in pattern:
        value = row.get(pattern)
        return "" if value is None else str(value).strip()

    def fill(match):
        value = str(row[match.group(1)]).strip()
        if match.group(2) is None and match.group(3) is None:
            return value
        start, stop = (int(g) if g else None for g in match.groups()[1:])
        return value[start:stop]

    return _PLACEHOLDER.sub(fill, pattern)


def pattern_columns(pattern: Optional[str]) -> Tuple[str, ...]:
    """The item columns an image-path pattern reads (the column itself for a plain name)."""
    if not pattern:
        return ()
    if "{" not in pattern:
        return (pattern,)
    return tuple(m.group(1) for m in _PLACEHOLDER.finditer(pattern))


class PathOutsideRoot(ValueError):
    """An image path that leaves the images root or an allowed prefix (:data:`OUTSIDE_ROOT`)."""


def is_absolute(path: str) -> bool:
    """A URL, a POSIX or Windows absolute path, or a drive-relative one (``C:x``)."""
    return ("://" in path or path.startswith(("/", "\\"))
            or (len(path) > 1 and path[1] == ":" and path[0].isalpha()))


def _climbs_out(relative: str) -> bool:
    """Whether ``..`` parts take a relative path above where it starts (``\\`` counts as ``/``)."""
    depth = 0
    for part in relative.replace("\\", "/").split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def allowed_prefix(path: str, prefixes: Sequence[str]) -> Optional[str]:
    """The first of ``prefixes`` an absolute path or URL lies under, or None."""
    for prefix in prefixes:
        base = prefix.rstrip("/") + "/"
        if path.startswith(base) and not _climbs_out(path[len(base):]):
            return prefix
    return None


def resolve(images_root: str, image_path: str, allowed_prefixes: Sequence[str] = ()) -> str:
    """The file an item's image path names: under the root, or under an allowed prefix.

    Object-store roots (``gs://...``) are joined with ``/`` whatever the local OS.

    Args:
        images_root: Folder relative image paths resolve against.
        image_path: The item's path: relative, absolute or a URL.
        allowed_prefixes: Where absolute paths and URLs may point
            (``inputs.allowed_image_prefixes``); empty: nowhere.

    Raises:
        PathOutsideRoot: the path climbs out of the root, is absolute or a URL
            under no allowed prefix, or holds a NUL (no file has that name).
    """
    if "\x00" in image_path:
        raise PathOutsideRoot(f"{image_path!r} holds a NUL byte")
    if is_absolute(image_path):
        if allowed_prefix(image_path, allowed_prefixes) is None:
            raise PathOutsideRoot(
                f"{image_path!r} is absolute or a URL and lies under none of "
                f"inputs.allowed_image_prefixes {list(allowed_prefixes)}")
        return image_path
    if _climbs_out(image_path):
        raise PathOutsideRoot(f"{image_path!r} leaves the images root {images_root}")
    if "://" in images_root:
        return images_root.rstrip("/") + "/" + image_path
    return os.path.join(images_root, image_path)
