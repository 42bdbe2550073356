"""Item photos → fixed-size raw RGB pixels, for the image encoder's embed job.

Every item comes out exactly once: a photo that is missing, empty or cannot be
decoded is a dead letter, and its item still gets an all-zero image with
``item_has_image = 0`` (and so a zero embedding), so that a bad photo never
costs the item its examples.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines import dead_letter as dl
from pipelines.outputs import Outputs
from pipelines.parse import HAS_IMAGE_KEY

IMAGES = "images"
DEFAULT_IMAGE_KEY = "item_image"


def resolve(images_root: str, image_path: str) -> str:
    """Joins a relative image path to the images root; absolute paths and URLs pass."""
    if image_path.startswith("/") or "://" in image_path:
        return image_path
    return FileSystems.join(images_root, image_path)


def image_features(pixels: bytes, has_image: bool,
                   image_key: str = DEFAULT_IMAGE_KEY) -> Dict[str, Any]:
    """The item-table image features for decoded pixels (or the zero image)."""
    return {image_key: pixels, HAS_IMAGE_KEY: int(has_image)}


def to_pixels(data: bytes, shape: Tuple[int, int, int]) -> bytes:
    """Decodes an encoded image and resizes it to ``shape``.

    Args:
        data: PNG, JPEG, GIF (first frame) or BMP bytes.
        shape: (height, width, 3).

    Returns:
        height * width * 3 uint8 bytes, row-major RGB.

    Raises:
        tf.errors.InvalidArgumentError: the bytes are not a decodable image.
    """
    import tensorflow as tf

    height, width, channels = shape
    image = tf.io.decode_image(data, channels=channels, expand_animations=False)
    # Antialiasing keeps downscaled photos from aliasing into noise.
    resized = tf.image.resize(image, (height, width), method="bilinear", antialias=True)
    return np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8).tobytes()


def _op_message(err) -> str:
    """A TensorFlow op error's message without its '{{function_node ...}}' prefix."""
    return err.message.rsplit("}}", 1)[-1].strip()


class _LoadImage(beam.DoFn):
    """(item_id, image_path) → (item_id, image features); failures also dead-letter."""

    def __init__(self, images_root: str, shape: Tuple[int, int, int], image_key: str):
        self._root = images_root
        self._shape = tuple(shape)
        self._key = image_key
        self._zero = bytes(int(np.prod(self._shape)))

    def setup(self):
        import tensorflow as tf

        self._decode_error = tf.errors.InvalidArgumentError

    def _read(self, path: str):
        """Returns (bytes, None) or (None, (reason, detail))."""
        try:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                return f.read(), None
        except FileNotFoundError as err:
            return None, ("missing_image", str(err))
        except OSError as err:
            # Beam wraps some filesystem errors (BeamIOError is an OSError); tell
            # a file that is not there from one that is there but unreadable.
            reason = "unreadable_image" if FileSystems.exists(path) else "missing_image"
            return None, (reason, str(err))

    def process(self, element):
        item_id, image_path = element
        # Every attempt is an input row of `images`, the base of its bad fraction.
        beam.metrics.Metrics.counter(dl.NAMESPACE, f"rows_read/{IMAGES}").inc()
        failure = None
        if not image_path:
            failure = ("missing_image", "item has no image_path")
        else:
            path = resolve(self._root, image_path)
            data, failure = self._read(path)
            if failure is None and not data:
                failure = ("empty_image", f"{path} is zero bytes")
            if failure is None:
                try:
                    pixels = to_pixels(data, self._shape)
                except self._decode_error as err:
                    failure = ("corrupt_image", f"{path}: {_op_message(err)}")
        if failure is not None:
            reason, detail = failure
            yield dl.tagged(IMAGES, reason, detail, f"{item_id},{image_path}")
            yield item_id, image_features(self._zero, False, self._key)
            return
        beam.metrics.Metrics.counter(dl.NAMESPACE, "images/loaded").inc()
        beam.metrics.Metrics.counter(dl.NAMESPACE, f"rows_valid/{IMAGES}").inc()
        yield item_id, image_features(pixels, True, self._key)


class LoadItemImages(beam.PTransform):
    """(item_id, image_path) → (item_id, {item_image, item_has_image}) + dead letters.

    ``item_image`` is the photo decoded to RGB and resized (bilinear,
    antialiased) to ``shape``, as ``height*width*3`` uint8 bytes in row-major
    order. Files are read through Beam's FileSystems, so gs:// roots work.
    Dead-letter reasons (input ``images``): ``missing_image`` (no path or no
    file), ``empty_image`` (zero bytes), ``corrupt_image`` (undecodable),
    ``unreadable_image`` (exists but cannot be read).
    """

    def __init__(self, images_root: str, shape: Tuple[int, int, int],
                 image_key: str = DEFAULT_IMAGE_KEY):
        """Args:
            images_root: Folder relative image paths are resolved against.
            shape: (height, width, channels); channels must be 3 (RGB).
            image_key: Name of the registry's image feature.
        """
        super().__init__()
        if len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"image shape must be (height, width, 3), got {shape}")
        self._root = images_root
        self._shape = tuple(shape)
        self._key = image_key

    def expand(self, items) -> Outputs:
        loaded = items | "Load" >> beam.ParDo(
            _LoadImage(self._root, self._shape, self._key)).with_outputs(
            dl.DEAD_LETTER_TAG, main="main")
        return Outputs(loaded.main, loaded[dl.DEAD_LETTER_TAG])
