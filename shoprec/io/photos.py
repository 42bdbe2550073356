"""An item's photo → fixed-size RGB pixels, or the reason it has none.

The embed job (every catalogue item, a bad photo a dead letter) and the image
encoder's catalogue (the items it learns from) both load photos here, so a
photo the encoder trained on is decoded exactly as the one it embeds.
Files are read through Beam's FileSystems, so ``gs://`` roots work.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from shoprec.core.images import resolve

# Why an item has no pixels: the dead-letter reasons of input ``images``.
MISSING = "missing_image"  # no path, or no file there
EMPTY = "empty_image"  # zero bytes
CORRUPT = "corrupt_image"  # not a decodable image
UNREADABLE = "unreadable_image"  # there, but cannot be read


class Photo(NamedTuple):
    """A loaded photo: ``pixels`` (``height*width*3`` uint8, row-major RGB) or why not."""

    pixels: Optional[bytes]
    reason: Optional[str] = None
    detail: str = ""


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


def _read(path: str) -> Tuple[Optional[bytes], Optional[str], str]:
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            return f.read(), None, ""
    except FileNotFoundError as err:
        return None, MISSING, str(err)
    except OSError as err:
        # Beam wraps some filesystem errors (BeamIOError is an OSError); tell
        # a file that is not there from one that is there but unreadable.
        return None, UNREADABLE if FileSystems.exists(path) else MISSING, str(err)


def load(images_root: str, image_path: str, shape: Tuple[int, int, int]) -> Photo:
    """Reads and decodes one item photo.

    Args:
        images_root: Folder relative image paths resolve against.
        image_path: The item's path (relative, absolute or a URL); '' for none.
        shape: (height, width, 3) the photo is resized to (bilinear, antialiased).

    Returns:
        The pixels, or the reason (:data:`MISSING`, :data:`EMPTY`,
        :data:`CORRUPT`, :data:`UNREADABLE`) and a detail naming the file.
    """
    import tensorflow as tf

    if not image_path:
        return Photo(None, MISSING, "item has no image_path")
    path = resolve(images_root, image_path)
    data, reason, detail = _read(path)
    if reason is not None:
        return Photo(None, reason, detail)
    if not data:
        return Photo(None, EMPTY, f"{path} is zero bytes")
    try:
        return Photo(to_pixels(data, shape))
    except tf.errors.InvalidArgumentError as err:
        return Photo(None, CORRUPT, f"{path}: {_op_message(err)}")
