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


def test_image_paths_outside_the_root_are_dead_letters_and_never_opened(tmp_path):
    root, outside = tmp_path / "images", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    png = _png(np.full((8, 8, 3), COLOUR, np.uint8))
    (root / "ok.png").write_bytes(png)
    (outside / "secret.png").write_bytes(png)  # decodable: only confinement refuses it
    (root / "link.png").symlink_to(outside / "secret.png")
    (root / "photos").symlink_to(outside)  # a folder link out of the root
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "a.png").write_bytes(png)
    items = [("ok", "ok.png"), ("up", "../../../../etc/passwd"), ("abs", "/etc/passwd"),
             ("url", "https://example.com/a.png"), ("link", "link.png"),
             ("dir", "photos/secret.png"), ("allowed", str(allowed / "a.png"))]
    zero = bytes(4 * 6 * 3)
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        loaded = (p | beam.Create(items)
                  | LoadItemImages(str(root), SHAPE, allowed_prefixes=(str(allowed),)))
        assert_that(loaded.main | beam.Map(lambda kv: (kv[0], kv[1]["item_has_image"],
                                                      kv[1]["item_image"] == zero)),
                    equal_to([("ok", 1, False), ("allowed", 1, False), ("up", 0, True),
                              ("abs", 0, True), ("url", 0, True), ("link", 0, True),
                              ("dir", 0, True)]), label="Items")
        assert_that(loaded.dead_letter | beam.Map(lambda d: (d.record.split(",")[0], d.reason)),
                    equal_to([(i, "image_path_outside_root")
                              for i in ("up", "abs", "url", "link", "dir")]),
                    label="DeadLetters")
