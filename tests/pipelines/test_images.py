"""Tests for pipelines.images: photo decoding and the broken-photo dead letters."""

import numpy as np
import pytest
import tensorflow as tf
import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.images import LoadItemImages
from pipelines.options import pipeline_options
from shoprec.core import config as config_lib
from shoprec.core.sections import ConfigError
from shoprec.io.photos import to_pixels

SHAPE = (4, 6, 3)  # small and non-square so a transposed layout would show
COLOUR = (10, 200, 77)


def _png(array: np.ndarray) -> bytes:
    return tf.io.encode_png(array).numpy()


def test_flat_colour_resizes_to_exact_pixels():
    flat = np.full((40, 30, 3), COLOUR, np.uint8)
    assert to_pixels(_png(flat), SHAPE) == bytes(COLOUR) * (4 * 6)


def test_same_size_image_keeps_row_major_rgb_layout():
    array = np.random.RandomState(3).randint(0, 256, SHAPE, dtype=np.uint8)
    assert to_pixels(_png(array), SHAPE) == array.tobytes()


def test_grey_png_is_expanded_to_rgb():
    grey = np.full((8, 8, 1), 99, np.uint8)
    assert to_pixels(_png(grey), (2, 2, 3)) == bytes([99]) * 12


def test_the_encoder_shape_must_be_rgb(tmp_path):
    assert config_lib.load().embed.image_shape[2] == 3
    bad = tmp_path / "grey.yaml"
    bad.write_text("embed:\n  image_shape: [32, 32, 1]\n")
    with pytest.raises(ConfigError, match="embed.image_shape"):
        config_lib.load(str(bad))


def test_rejects_non_rgb_shape():
    with pytest.raises(ValueError, match=r"must be \(height, width, 3\), got \(4, 4, 1\)"):
        LoadItemImages("/images", (4, 4, 1))


def test_broken_images_dead_letter_and_get_zero_image(tmp_path):
    flat = np.full((40, 30, 3), COLOUR, np.uint8)
    good = _png(flat)
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "good.png").write_bytes(good)
    (tmp_path / "img" / "empty.png").write_bytes(b"")
    (tmp_path / "img" / "corrupt.png").write_bytes(b"\x89PNG this is not an image")
    (tmp_path / "img" / "truncated.png").write_bytes(good[: len(good) // 2])
    items = [("good", "img/good.png"), ("empty", "img/empty.png"),
             ("corrupt", "img/corrupt.png"), ("truncated", "img/truncated.png"),
             ("missing", "img/missing.png"), ("nopath", "")]
    zero = bytes(4 * 6 * 3)
    expected = [("good", {"item_image": bytes(COLOUR) * 24, "item_has_image": 1})] + [
        (item_id, {"item_image": zero, "item_has_image": 0}) for item_id, _ in items[1:]]

    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        out = p | "Create" >> beam.Create(items) | LoadItemImages(
            str(tmp_path), SHAPE)
        assert_that(out.main, equal_to(expected), label="Images")
        reasons = out.dead_letter | beam.Map(lambda d: (d.input, d.reason, d.record))
        assert_that(reasons, equal_to([
            ("images", "empty_image", "empty,img/empty.png"),
            ("images", "corrupt_image", "corrupt,img/corrupt.png"),
            ("images", "corrupt_image", "truncated,img/truncated.png"),
            ("images", "missing_image", "missing,img/missing.png"),
            ("images", "missing_image", "nopath,"),
        ]), label="DeadLetters")
