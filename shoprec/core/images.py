"""Where an item's photo is: a data set's image-path pattern, resolved against its root.

A data set names its photos either by a column holding the path or by a
pattern over item columns, such as H&M's
``images/{article_id[:3]}/{article_id}.jpg``. Ingest, the embed job and the
image encoder's catalogue reader all resolve paths here, so they agree on
which file is an item's photo.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, Optional, Tuple

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


def resolve(images_root: str, image_path: str) -> str:
    """Joins a relative image path to the images root; absolute paths and URLs pass.

    Object-store roots (``gs://...``) are joined with ``/`` whatever the local OS.
    """
    if image_path.startswith("/") or "://" in image_path:
        return image_path
    if "://" in images_root:
        return images_root.rstrip("/") + "/" + image_path
    return os.path.join(images_root, image_path)
