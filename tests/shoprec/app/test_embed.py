"""The embed stage: a user's own SavedModel embedder through the config, and its checks."""

import csv
import dataclasses
import glob
import json
import os

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from pipelines import generate, ingest, report as report_lib
from shoprec.app import embed
from shoprec.core import config as config_lib
from shoprec.core import dataset as ds
from shoprec.core import generated_shop as shop
from shoprec.core import registry as F
from shoprec.core.errors import StageOrderError
from shoprec.core.layout import success_marker
from shoprec.core.timestamps import parse_timestamp
from tests.pipelines.fixtures import TINY_SHOP

COLOURS = {"i0": (200, 30, 30), "i1": (30, 200, 30), "i2": (30, 30, 200)}


class _MeanColour(tf.Module):
    """Three floats per photo: its mean red, green and blue."""

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def __call__(self, pixels):
        return {"vector": tf.reduce_mean(pixels, axis=[1, 2])}


def _config(tmp_path, width, broken=0, max_bad_fraction=0.01):
    """A generated-shop config whose registry embeds photos in ``width`` floats."""
    raw = tmp_path / "raw"
    (raw / "images").mkdir(parents=True)
    rows = []
    for item_id, rgb in COLOURS.items():
        png = tf.io.encode_png(np.full((8, 8, 3), rgb, np.uint8)).numpy()
        (raw / "images" / f"{item_id}.png").write_bytes(png)
        rows.append((item_id, "shoes", "acme", "red", "1.0", f"images/{item_id}.png"))
    rows += [(f"b{i}", "shoes", "acme", "red", "1.0", "images/none.png") for i in range(broken)]
    with open(raw / "items.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["item_id", "category", "brand", "colour", "price", "image_path"])
        writer.writerows(rows)
    model_dir = str(tmp_path / "embedder")
    module = _MeanColour()
    tf.saved_model.save(module, model_dir, signatures={"serving_default": module.__call__})
    features = tuple(dataclasses.replace(f, width=width) if f.kind == F.Kind.EMBEDDING else f
                     for f in shop.REGISTRY.features)
    base = config_lib.Config(run_dir=str(tmp_path / "run"))
    return dataclasses.replace(
        base,
        inputs=dataclasses.replace(base.inputs, items=str(raw / "items.csv"),
                                   images_root=str(raw)),
        embed=config_lib.EmbedConfig(encoder=model_dir, signature="serving_default",
                                     input_key="pixels", output_key="vector",
                                     image_shape=(4, 4, 3)),
        dataset=dataclasses.replace(shop.dataset(shop.REGISTRY), features=features,
                                    quality=ds.QualitySpec(max_bad_fraction=max_bad_fraction)))


def test_a_configured_embedder_embeds_every_item_for_ingest(tmp_path):
    config = _config(tmp_path, width=3)
    report = embed.run(config)
    assert report["status"] == "ok" and report["items"] == 3 and "encoder" not in report
    rows = {r["item_id"]: r for p in glob.glob(config.layout.item_embeddings + "-*.parquet")
            for r in pq.read_table(p).to_pylist()}
    for item_id, rgb in COLOURS.items():
        np.testing.assert_allclose(rows[item_id]["embedding"], np.array(rgb) / 255.0, atol=1e-6)
    with open(os.path.join(config.layout.embed_dir, "report.json")) as f:
        assert json.load(f)["embedding_width"] == 3
    assert os.path.exists(success_marker(config.layout.embed_dir))


def test_an_embedder_of_another_width_than_the_registry_fails(tmp_path):
    with pytest.raises(ValueError, match="outputs 3 floats per image, 8 are needed"):
        embed.run(_config(tmp_path, width=8))


def test_too_many_broken_photos_fail_the_stage_naming_the_input(tmp_path):
    # 1 of 4 photos missing: 25% > 10%.
    config = _config(tmp_path, width=3, broken=1, max_bad_fraction=0.1)
    with pytest.raises(report_lib.DataQualityError, match="input 'images'.*missing_image=1"):
        embed.run(config)
    # The report and the embeddings are written all the same, for the user to look at.
    with open(os.path.join(config.layout.embed_dir, "report.json")) as f:
        assert json.load(f)["status"] == "failed"
    assert glob.glob(config.layout.item_embeddings + "-*.parquet")
    # ...but no success marker, so ingest refuses the table before reading anything.
    assert not os.path.exists(success_marker(config.layout.embed_dir))
    with pytest.raises(StageOrderError, match=r"`shoprec embed` failed: see .*embed/report.json"):
        ingest.read_inputs(beam.Pipeline(), config)


def test_a_registry_without_photos_has_nothing_to_embed(tmp_path):
    config = _config(tmp_path, width=3)
    blind = tuple(f for f in shop.REGISTRY.features if f.kind != F.Kind.EMBEDDING)
    config = dataclasses.replace(config, dataset=dataclasses.replace(config.data, features=blind))
    with pytest.raises(ValueError, match="no EMBEDDING feature"):
        embed.run(config)


def test_the_encoder_holds_out_the_items_a_task_holds_out():
    from transforms import holdout
    ids = np.array([f"item-{i}" for i in range(30)])
    held = holdout.held_out(ids, 0.3).numpy() > 0.5
    registry = F.Registry(shop.REGISTRY.features + (
        F.Feature("item_held_out", F.Source.DERIVED, F.Kind.HOLDOUT,
                  derived_from=(shop.REGISTRY.item_key,), fraction=0.3),
        # A user hold-out says nothing about items.
        F.Feature("user_held_out", F.Source.DERIVED, F.Kind.HOLDOUT,
                  derived_from=(shop.REGISTRY.user_key,), fraction=0.9),
    ))
    np.testing.assert_array_equal(embed._held_out_items(registry, ids), held)
    assert 0 < held.sum() < 30
    assert embed._held_out_items(shop.REGISTRY, ids) is None


def test_a_behaviour_only_encoder_learns_from_the_train_window_counts(tmp_path):
    config = config_lib.load(None, run_dir=str(tmp_path / "run"))
    config = dataclasses.replace(
        config,
        generate=dataclasses.replace(config.generate, **TINY_SHOP["generate"]),
        ingest=dataclasses.replace(config.ingest, **TINY_SHOP["ingest"]),
        embed=config_lib.EmbedConfig(
            attributes=(), image_shape=(8, 8, 3), epochs=1, min_steps=4,
            behaviour=config_lib.BehaviourConfig(min_events=1, smoothing=2.0)))
    generate.run(config)
    report = embed.run(config, [])

    # Counted by hand from the raw log: the events before the eval start, per item.
    counts = {}
    eval_start = config.eval_start_ts
    with open(config.input_path(config.inputs.events)) as f:
        for row in csv.DictReader(f):
            if parse_timestamp(row["timestamp"]) < eval_start:
                item = counts.setdefault(row["item_id"], {})
                item[row["event_type"]] = item.get(row["event_type"], 0) + 1
    with open(config.layout.behaviour_counts + ".csv") as f:
        written = {r["item_id"]: {k: int(v) for k, v in r.items() if k != "item_id" and int(v)}
                   for r in csv.DictReader(f)}
    assert written == counts
    encoder = report["encoder"]
    shown = sum(c.get("impression", 0) for c in counts.values())
    assert encoder["behaviour_counts"]["priors"] == {
        s: pytest.approx(sum(c.get(s, 0) for c in counts.values()) / shown)
        for s in ("click", "purchase")}
    assert encoder["heads"] == {}
    assert encoder["behaviour"]["columns"] == ["click_logodds", "purchase_logodds"]
    assert report["status"] == "ok" and report["with_image"] == report["items"]
