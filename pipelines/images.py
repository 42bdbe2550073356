"""Item photos → fixed-size raw RGB pixels, for the image encoder's embed job.

Every item comes out exactly once: a photo that is missing, empty or cannot be
decoded is a dead letter, and its item still gets an all-zero image with
``item_has_image = 0`` (and so a zero embedding), so that a bad photo never
costs the item its examples.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import apache_beam as beam
import numpy as np

from pipelines import dead_letter as dl
from pipelines.outputs import Outputs
from pipelines.parse import HAS_IMAGE_KEY
from shoprec.io import photos

IMAGES = "images"
DEFAULT_IMAGE_KEY = "item_image"


def image_features(pixels: bytes, has_image: bool,
                   image_key: str = DEFAULT_IMAGE_KEY) -> Dict[str, Any]:
    """The item-table image features for decoded pixels (or the zero image)."""
    return {image_key: pixels, HAS_IMAGE_KEY: int(has_image)}


class _LoadImage(beam.DoFn):
    """(item_id, image_path) → (item_id, image features); failures also dead-letter."""

    def __init__(self, images_root: str, shape: Tuple[int, int, int], image_key: str,
                 allowed_prefixes: Sequence[str]):
        self._root = images_root
        self._allowed = tuple(allowed_prefixes)
        self._shape = tuple(shape)
        self._key = image_key
        self._zero = bytes(int(np.prod(self._shape)))

    def process(self, element):
        item_id, image_path = element
        # Every attempt is an input row of `images`, the base of its bad fraction.
        beam.metrics.Metrics.counter(dl.NAMESPACE, f"rows_read/{IMAGES}").inc()
        photo = photos.load(self._root, image_path, self._shape, self._allowed)
        if photo.pixels is None:
            yield dl.tagged(IMAGES, photo.reason, photo.detail, f"{item_id},{image_path}")
            yield item_id, image_features(self._zero, False, self._key)
            return
        beam.metrics.Metrics.counter(dl.NAMESPACE, "images/loaded").inc()
        beam.metrics.Metrics.counter(dl.NAMESPACE, f"rows_valid/{IMAGES}").inc()
        yield item_id, image_features(photo.pixels, True, self._key)


class LoadItemImages(beam.PTransform):
    """(item_id, image_path) → (item_id, {item_image, item_has_image}) + dead letters.

    ``item_image`` is the photo decoded to RGB and resized (bilinear,
    antialiased) to ``shape``, as ``height*width*3`` uint8 bytes in row-major
    order (``shoprec.io.photos``). Dead-letter reasons (input ``images``):
    ``missing_image`` (no path or no file), ``empty_image`` (zero bytes),
    ``corrupt_image`` (undecodable), ``unreadable_image`` (exists but cannot
    be read), ``image_path_outside_root`` (the path, or a link on it, leads
    out of the images root and every allowed prefix).
    """

    def __init__(self, images_root: str, shape: Tuple[int, int, int],
                 image_key: str = DEFAULT_IMAGE_KEY, allowed_prefixes: Sequence[str] = ()):
        """Args:
            images_root: Folder relative image paths are resolved against.
            shape: (height, width, channels); channels must be 3 (RGB).
            image_key: Name of the registry's image feature.
            allowed_prefixes: Where absolute image paths and URLs may point.
        """
        super().__init__()
        if len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"image shape must be (height, width, 3), got {shape}")
        self._root = images_root
        self._shape = tuple(shape)
        self._key = image_key
        self._allowed = tuple(allowed_prefixes)

    def expand(self, items) -> Outputs:
        loaded = items | "Load" >> beam.ParDo(
            _LoadImage(self._root, self._shape, self._key, self._allowed)).with_outputs(
            dl.DEAD_LETTER_TAG, main="main")
        return Outputs(loaded.main, loaded[dl.DEAD_LETTER_TAG])
