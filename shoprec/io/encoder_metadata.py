"""The image encoder's metadata file, beside its SavedModel.

``trainer.image_encoder`` writes it when it exports an encoder; the embed job
reads the image shape from it (``pipelines.embed_images.model_spec``). A
user's own SavedModel embedder has none, and gives its image shape in config.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional

from apache_beam.io.filesystems import FileSystems

from shoprec.core.layout import ENCODER_METADATA


def path(export_dir: str) -> str:
    return os.path.join(export_dir, ENCODER_METADATA)


def write(export_dir: str, metadata: Dict[str, Any]) -> None:
    """Writes ``metadata`` (image shape, embedding width, classes, training report)."""
    with FileSystems.create(path(export_dir)) as f:
        f.write(json.dumps(metadata, indent=2).encode("utf-8"))


def read(export_dir: str) -> Optional[Dict[str, Any]]:
    """The metadata of an exported encoder; None when the model has none."""
    target = path(export_dir)
    if not FileSystems.exists(target):
        return None
    with FileSystems.open(target) as f:
        return json.loads(f.read().decode("utf-8"))
