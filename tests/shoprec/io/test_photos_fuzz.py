"""Fuzzing the image decoder: any bytes decode to pixels or give a reason, never a crash."""

import os
import tempfile

import numpy as np
import tensorflow as tf
from hypothesis import example, given, settings, strategies as st

from shoprec.io import photos

SHAPE = (4, 4, 3)
REASONS = {photos.MISSING, photos.EMPTY, photos.CORRUPT, photos.UNREADABLE,
           photos.OUTSIDE_ROOT}
MAGIC = st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM"])
_PNG = tf.io.encode_png(np.zeros((3, 5, 3), np.uint8)).numpy()


@settings(max_examples=150, deadline=None)
@given(MAGIC, st.binary(max_size=200))
@example(b"", _PNG)
@example(b"", _PNG[:40])  # a truncated PNG
@example(b"", b"")
def test_any_bytes_are_pixels_or_a_reason(magic, data):
    with tempfile.TemporaryDirectory() as root:
        with open(os.path.join(root, "p.img"), "wb") as f:
            f.write(magic + data)
        photo = photos.load(root, "p.img", SHAPE)
    if photo.pixels is None:
        assert photo.reason in REASONS and photo.detail
    else:
        assert len(photo.pixels) == 4 * 4 * 3


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
@example("../x.png")
@example("a\x00.png")  # open() refuses a NUL byte with ValueError, not OSError
@example(".")
def test_any_image_path_is_pixels_or_a_reason(path):
    with tempfile.TemporaryDirectory() as root:
        photo = photos.load(os.path.join(root, "images"), path, SHAPE)
    assert photo.pixels is None and photo.reason in REASONS and photo.detail
