"""Warm start: embedding rows carried over by token, and a model that starts where the
published one ended."""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from pipelines import examples
from shoprec.core import generated_shop as shop
from shoprec.io import models
from tests.trainer.synthetic import NUM_EVAL, make_config, make_rows
from trainer import export, gate, train
from trainer.inputs import vocabulary_owners
from trainer.warm_start import remap_rows


def test_rows_follow_their_token_and_the_oov_buckets_are_kept():
    # Old vocabulary a, b, c and 2 OOV buckets: rows 0-2 tokens, rows 3-4 buckets.
    old = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [8.0, 8.0], [9.0, 9.0]])
    # Today: c moved to index 0, d is new, a moved to 2, b is gone.
    fresh = np.full((5, 2), -1.0)
    table, counts = remap_rows(old, ["a", "b", "c"], fresh, ["c", "d", "a"], oov_buckets=2)
    np.testing.assert_array_equal(table, [[3.0, 3.0],     # c: old row 2
                                          [-1.0, -1.0],   # d: fresh
                                          [1.0, 1.0],     # a: old row 0
                                          [8.0, 8.0],     # OOV bucket 0
                                          [9.0, 9.0]])    # OOV bucket 1
    assert counts == {"carried": 2, "fresh": 1, "dropped": 1, "oov": 2}
    assert fresh[0, 0] == -1.0  # the fresh table is not written to

    # A grown vocabulary: the buckets move down with it.
    table, counts = remap_rows(old[[0, 3]], ["a"], np.zeros((4, 2)), ["x", "a", "y"], 1)
    np.testing.assert_array_equal(table, [[0, 0], [1, 1], [0, 0], [8, 8]])
    assert counts == {"carried": 1, "fresh": 2, "dropped": 0, "oov": 1}
    with pytest.raises(ValueError, match="old table has 5 rows for 2 tokens and 2 OOV"):
        remap_rows(old, ["a", "b"], np.zeros((4, 2)), ["a", "b"], 2)


def _served(model_dir):
    rows = make_rows(NUM_EVAL, seed=2)
    names = shop.REGISTRY.example_names(include_labels=False)
    raw = tf.constant([examples.encode(r, names, shop.REGISTRY) for r in rows])
    served = tf.saved_model.load(model_dir).signatures[export.SIGNATURE](examples=raw)
    return {k: v.numpy() for k, v in served.items()}


def test_a_warm_started_model_starts_from_the_published_weights(featurized_dir, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for stage in ("ingest", "featurize"):
        os.symlink(os.path.join(featurized_dir, stage), run_dir / stage)
    config = make_config(str(run_dir), per_replica_batch_size=32, epochs=2, learning_rate=0.03,
                         warm_start="latest_blessed")
    # Nothing published yet: a cold start that says so.
    first = train.run(config, strategy_name="default")
    assert first["training"]["warm_start"] == {
        "version": None, "reason": f"no published model in {config.layout.models_root}"}
    version = gate.run(config, force_bless=True)["version"]

    # Learning rate 0: the warm-started model is exactly the published one.
    frozen = dataclasses.replace(config, training=dataclasses.replace(
        config.training, epochs=1, learning_rate=0.0))
    second = train.run(frozen, strategy_name="mirrored")
    warm = second["training"]["warm_start"]
    assert warm["version"] == version == models.current_version(config.layout)
    # Same vocabularies (the same featurize output): every row stays where it was.
    assert set(warm["remapped"]) == {f.name for f in vocabulary_owners(shop.REGISTRY)}
    for counts in warm["remapped"].values():
        assert counts["fresh"] == counts["dropped"] == 0 and counts["carried"] > 0
    assert warm["skipped"] == [] and warm["copied"] > 0
    published = _served(config.layout.published_model(version))
    now = _served(config.layout.model_dir)
    for output in ("p_click", "p_conversion"):
        np.testing.assert_allclose(now[output], published[output], rtol=1e-5, atol=1e-6)
    assert second["tasks"]["click"]["auc"] == pytest.approx(first["tasks"]["click"]["auc"],
                                                            abs=1e-6)
