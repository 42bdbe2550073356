"""An item's photo → fixed-size RGB pixels, or the reason it has none.

The embed job (every catalogue item, a bad photo a dead letter) and the image
encoder's catalogue (the items it learns from) both load photos here, so a
photo the encoder trained on is decoded exactly as the one it embeds.
Files are read through Beam's FileSystems, so ``gs://`` roots work.

A path is confined before it is opened (``shoprec.core.images.resolve``: no
``..`` out of the root, absolute paths and URLs only under an allowed
prefix), and a local file is opened only if its real path, symbolic links
followed, is still under the root (or its allowed prefix): a link in the
photo folder that points at ``/etc`` is refused like ``../../etc``.
"""

from __future__ import annotations

import os
from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from shoprec.core import images

# Why an item has no pixels: the dead-letter reasons of input ``images``.
MISSING = "missing_image"  # no path, or no file there
EMPTY = "empty_image"  # zero bytes
CORRUPT = "corrupt_image"  # not a decodable image
UNREADABLE = "unreadable_image"  # there, but cannot be read
OUTSIDE_ROOT = images.OUTSIDE_ROOT  # leaves the images root (text or symbolic links)


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


def _is_under(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def _escapes(path: str, images_root: str, image_path: str,
             allowed_prefixes: Sequence[str]) -> bool:
    """Whether a local file's real path (links followed) leaves where its path said it is."""
    if "://" in path:
        return False  # Object stores have no symbolic links.
    if images.is_absolute(image_path):
        base = images.allowed_prefix(image_path, allowed_prefixes)
    else:
        base = images_root
    return not _is_under(os.path.realpath(path), os.path.realpath(base))


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


def load(images_root: str, image_path: str, shape: Tuple[int, int, int],
         allowed_prefixes: Sequence[str] = ()) -> Photo:
    """Reads and decodes one item photo.

    Args:
        images_root: Folder relative image paths resolve against.
        image_path: The item's path (relative, absolute or a URL); '' for none.
        shape: (height, width, 3) the photo is resized to (bilinear, antialiased).
        allowed_prefixes: Where absolute paths and URLs may point
            (``inputs.allowed_image_prefixes``).

    Returns:
        The pixels, or the reason (:data:`MISSING`, :data:`EMPTY`,
        :data:`CORRUPT`, :data:`UNREADABLE`, :data:`OUTSIDE_ROOT`) and a
        detail naming the file.
    """
    import tensorflow as tf

    if not image_path:
        return Photo(None, MISSING, "item has no image_path")
    try:
        path = images.resolve(images_root, image_path, allowed_prefixes)
    except images.PathOutsideRoot as err:
        return Photo(None, OUTSIDE_ROOT, str(err))
    if _escapes(path, images_root, image_path, allowed_prefixes):
        return Photo(None, OUTSIDE_ROOT, f"{image_path!r} is a link to "
                                         f"{os.path.realpath(path)}, outside where it may point")
    data, reason, detail = _read(path)
    if reason is not None:
        return Photo(None, reason, detail)
    if not data:
        return Photo(None, EMPTY, f"{path} is zero bytes")
    try:
        return Photo(to_pixels(data, shape))
    except tf.errors.InvalidArgumentError as err:
        return Photo(None, CORRUPT, f"{path}: {_op_message(err)}")
