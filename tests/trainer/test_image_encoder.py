"""Tests for trainer.image_encoder: learning, export round trip, catalogue loading."""

import csv
import itertools
import os

import numpy as np
import pytest
import tensorflow as tf

from shoprec.core.errors import InputEmptyError
from shoprec.io import encoder_metadata
from shoprec.io.photos import to_pixels
from trainer import image_encoder as E

HM_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "hm")
# Three classes told apart by colour alone; the noise keeps it from being trivial.
PALETTE = np.array([[0.85, 0.15, 0.15], [0.15, 0.75, 0.2], [0.2, 0.25, 0.85]], np.float32)
SMALL = E.EncoderConfig(filters=(8, 16), embedding_dim=8, dropout=0.0, epochs=1, min_steps=120,
                        batch_size=32, learning_rate=5e-3, holdout_fraction=0.25, seed=3)


def colour_images(n: int, size: int = 8, seed: int = 0):
    """Images whose class is their dominant colour; class 0 is the majority (half)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, n, p=[0.5, 0.25, 0.25])
    images = PALETTE[labels][:, None, None, :] + rng.normal(0, 0.12, (n, size, size, 3))
    return np.clip(images, 0, 1).astype(np.float32), labels.astype(np.int64)


@pytest.fixture(scope="module")
def trained():
    images, labels = colour_images(240)
    # A second head, "bright": whether the colour is the green one, to exercise several heads.
    model, report = E.train_encoder(images, {"colour": labels, "green": (labels == 1) * 1},
                                    SMALL, num_classes={"colour": 3, "green": 2})
    return images, labels, model, report


def test_learns_colour_far_above_majority(trained):
    _, _, _, report = trained
    colour = report["heads"]["colour"]
    assert report["held_out_items"] == 60 and report["train_items"] == 180
    # Majority rate: the held-out share of the training split's most common class.
    # The seeded split puts colours 0/1/2 at 86/42/52 of the 180 training items
    # and 23/18/19 of the 60 held-out ones: colour 0 is the majority, 23/60; for
    # "green" the majority is "no" (not colour 1), 60 - 18 = 42 of 60.
    assert colour["majority_rate"] == pytest.approx(23 / 60)
    assert report["heads"]["green"]["majority_rate"] == pytest.approx(42 / 60)
    # The classes are separable: palette colours differ by >= 0.5 in some channel
    # while the per-pixel noise (sd 0.12) averages to sd 0.015 over 64 pixels,
    # so the Bayes accuracy is 1.0; 0.9 leaves room for what 120 steps reach.
    assert colour["accuracy"] >= 0.9
    assert colour["accuracy"] > colour["majority_rate"] + 0.25
    assert report["heads"]["green"]["accuracy"] >= 0.9


def test_split_is_a_partition_of_items():
    train, held_out = E.split_items(50, 0.2, seed=1)
    assert len(held_out) == 10
    assert sorted(np.concatenate([train, held_out]).tolist()) == list(range(50))


def test_export_load_roundtrip_gives_identical_embeddings(trained, tmp_path):
    images, labels, model, report = trained
    export_dir = E.export(model, str(tmp_path / "encoder"),
                          {"colour": ["red", "green", "blue"], "green": ["no", "yes"]}, report)
    expected = E.embedder(model)(tf.constant(images[:20]), training=False).numpy()
    loaded = E.embed(export_dir, images[:20], batch_size=20)
    np.testing.assert_array_equal(loaded, expected)
    assert loaded.shape == (20, SMALL.embedding_dim)
    # Other batch sizes may pick other conv kernels: equal to float32 rounding.
    rebatched = E.embed(export_dir, images[:20], batch_size=7)
    np.testing.assert_allclose(rebatched, expected, rtol=1e-6, atol=1e-6)

    predicted = tf.saved_model.load(export_dir).signatures["predict"](
        images=tf.constant(images[:20]))
    np.testing.assert_allclose(predicted["colour_probabilities"].numpy().sum(axis=1), 1.0,
                               atol=1e-5)
    names = [n.decode() for n in predicted["colour"].numpy()]
    assert np.mean([n == ["red", "green", "blue"][y] for n, y in zip(names, labels[:20])]) >= 0.9

    metadata = encoder_metadata.read(export_dir)
    assert metadata["image_shape"] == [8, 8, 3]
    assert metadata["embedding_dim"] == SMALL.embedding_dim
    assert metadata["classes"]["green"] == ["no", "yes"]


def _write_catalogue(root):
    (root / "images").mkdir()
    rows = []
    for i, colour in enumerate(["red", "red", "blue", "red", "teal"]):
        pixels = np.full((12, 10, 3), (200, 30, 30) if colour == "red" else (30, 30, 200), np.uint8)
        (root / "images" / f"i{i}.png").write_bytes(tf.io.encode_png(pixels).numpy())
        rows.append((f"i{i}", colour, f"images/i{i}.png"))
    (root / "images" / "broken.png").write_bytes(b"\x89PNG not really")
    rows += [("i5", "red", "images/broken.png"), ("i6", "blue", "images/missing.png"),
             ("i7", "blue", "")]
    with open(root / "items.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["item_id", "colour", "image_path"])
        writer.writerows(rows)


def test_load_catalogue_skips_bad_photos_and_merges_rare_classes(tmp_path):
    _write_catalogue(tmp_path)
    cat = E.load_catalogue(str(tmp_path / "items.csv"), str(tmp_path), ["colour"], (4, 4, 3),
                           min_class_count=2)
    assert cat.ids.tolist() == ["i0", "i1", "i2", "i3", "i4"]
    # The embed job's dead-letter reasons (shoprec.io.photos): a corrupt file, a
    # path with no file, and an item with no path.
    assert sorted(r for _, r in cat.skipped) == ["corrupt_image", "missing_image",
                                                 "missing_image"]
    assert cat.images.shape == (5, 4, 4, 3) and cat.images.dtype == np.float32
    np.testing.assert_allclose(cat.images[0, 0, 0], np.array([200, 30, 30]) / 255, atol=1e-6)
    # blue (1 item with a usable photo) and teal (1) fall under (other).
    assert cat.classes["colour"] == ["red", E.OTHER_CLASS]
    assert cat.labels["colour"].tolist() == [0, 0, 1, 0, 1]


def test_load_catalogue_skips_paths_outside_the_images_root(tmp_path):
    _write_catalogue(tmp_path)
    with open(tmp_path / "items.csv", "a", newline="") as f:
        csv.writer(f).writerow(["i9", "red", "../../../../etc/passwd"])
    cat = E.load_catalogue(str(tmp_path / "items.csv"), str(tmp_path), ["colour"], (4, 4, 3))
    assert ("i9", "image_path_outside_root") in cat.skipped and "i9" not in cat.ids.tolist()


def test_a_catalogue_with_no_rows_is_an_empty_input(tmp_path):
    (tmp_path / "items.csv").write_text("item_id,colour,image_path\n")
    with pytest.raises(InputEmptyError, match="no item has a usable photo.*the file has no rows"):
        E.load_catalogue(str(tmp_path / "items.csv"), str(tmp_path), ["colour"], (4, 4, 3))


@pytest.mark.skipif(not os.path.isdir(HM_DIR), reason="H&M sample data not at ../shared/data")
def test_hm_catalogue_reads_photos_by_article_id():
    shape = (24, 16, 3)
    cat = E.hm_catalogue(HM_DIR, image_shape=shape, limit=40, min_class_count=1)
    with open(os.path.join(HM_DIR, "articles.csv"), newline="") as f:
        articles = list(itertools.islice(csv.DictReader(f), 40))
    # Each of the first 40 articles has its photo at images/<first 3 digits>/<id>.jpg
    # (checked by hand in the sample), so all 40 are read and none is skipped.
    assert cat.skipped == []
    assert cat.ids.tolist() == [a["article_id"] for a in articles]  # ids kept as strings
    assert cat.images.shape == (40,) + shape
    # Pixels are the article's own photo, resized as embed and ingest resize it.
    first = articles[0]["article_id"]
    with open(os.path.join(HM_DIR, "images", first[:3], first + ".jpg"), "rb") as f:
        pixels = np.frombuffer(to_pixels(f.read(), shape), np.uint8).reshape(shape)
    np.testing.assert_allclose(cat.images[0], pixels / 255.0, rtol=0, atol=1e-6)
    # With min_class_count=1 no class is merged: each label names the article's own value.
    assert set(cat.labels) == {"product_type_name", "colour_group_name"}
    for name, index in cat.labels.items():
        assert [cat.classes[name][i] for i in index] == [a[name] for a in articles], name


def test_given_held_out_items_are_never_trained_on():
    images, labels = colour_images(120, seed=4)
    # Hold out every item of colour 2: trained on colours 0 and 1 only, the
    # encoder has never seen class 2 as a label, so it predicts it for no item
    # and its held-out accuracy is exactly 0 (the majority rate too: class 2 is
    # no training class).
    held_out = labels == 2
    _, report = E.train_encoder(images, {"colour": labels}, SMALL, num_classes={"colour": 3},
                                held_out=held_out)
    assert report["held_out_items"] == int(held_out.sum())
    assert report["train_items"] == 120 - int(held_out.sum())
    assert report["heads"]["colour"] == {"accuracy": 0.0, "majority_rate": 0.0, "classes": 3}
    with pytest.raises(ValueError, match="some but not all"):
        E.train_encoder(images, {"colour": labels}, SMALL, held_out=np.zeros(120, bool))
