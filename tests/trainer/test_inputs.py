"""FeatureEncoder on hashed, crossed, bucketized and text features.

One test feeds hand-made transformed tensors and checks each part against the
embedding rows it must be; the other analyses real raw rows with TFT, feeds
serialized raw examples (no derived feature in them) through the transform
graph, as the exported model does, and encodes the result.
"""

import functools
import tempfile

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.testing.test_pipeline import TestPipeline

from pipelines import examples
from shoprec.core import registry as F
from shoprec.core.model_config import ModelConfig
from tests.transforms import test_indexed_features as indexed
from trainer import inputs
from transforms.preprocessing import preprocessing_fn

S, K = F.Source, F.Kind
SMALL = F.Registry((
    F.Feature("user_id", S.EVENT, K.ID, embedding_dim=2),
    F.Feature("item_id", S.EVENT, K.ID, embedding_dim=2),
    F.Feature("postal", S.USER, K.HASHED, hash_buckets=8, embedding_dim=3),
    F.Feature("age", S.USER, K.NUMERIC),
    F.Feature("desc", S.ITEM, K.TEXT, max_length=3, top_k=5, embedding_dim=2),
    F.Feature("age_group", S.DERIVED, K.BUCKETIZED, derived_from=("age",),
              boundaries=(30.0,), embedding_dim=2),
    F.Feature("pair", S.DERIVED, K.CROSS, derived_from=("user_id", "item_id"),
              hash_buckets=16, embedding_dim=2),
))
NO_L2 = ModelConfig(embedding_l2=0.0)


def test_each_new_kind_is_its_own_embedding_and_text_is_mean_pooled():
    encoder = inputs.FeatureEncoder(SMALL, {"user_id": 4, "item_id": 4, "desc": 6}, NO_L2)
    features = {
        "user_id": tf.constant([0, 1], tf.int64), "item_id": tf.constant([2, 3], tf.int64),
        "postal": tf.constant([5, 7], tf.int64), "age": tf.constant([0.5, -0.5]),
        "desc": tf.constant([[-1, -1, -1], [0, 2, -1]], tf.int64),
        "age_group": tf.constant([0, 1], tf.int64), "pair": tf.constant([15, 3], tf.int64),
    }
    parts = {n: v.numpy() for n, v in encoder.parts(features).items()}
    tables = {n: layer.embeddings.numpy() for n, layer in encoder.embeddings.items()}
    # Hashed and crossed tables have hash_buckets rows, bucketized ones edges + 1,
    # text its vocabulary + OOV.
    assert {n: tables[n].shape for n in ("postal", "pair", "age_group", "desc")} == {
        "postal": (8, 3), "pair": (16, 2), "age_group": (2, 2), "desc": (6, 2)}
    np.testing.assert_allclose(parts["postal"], tables["postal"][[5, 7]])
    np.testing.assert_allclose(parts["pair"], tables["pair"][[15, 3]])
    np.testing.assert_allclose(parts["age_group"], tables["age_group"][[0, 1]])
    # Empty text: the zero vector; otherwise the mean of the non-padding rows.
    np.testing.assert_allclose(parts["desc"], [[0.0, 0.0],
                                               (tables["desc"][0] + tables["desc"][2]) / 2],
                               rtol=1e-6)
    assert encoder(features).shape == [2, 2 + 2 + 3 + 1 + 2 + 2 + 2]
    dummy = inputs.dummy_features(SMALL, 2)
    assert dummy["desc"].numpy().tolist() == [[-1, -1, -1]] * 2
    assert dummy["pair"].dtype == tf.int64 and dummy["pair"].shape == [2]


def test_id_dropout_reads_a_share_of_the_ids_as_oov_buckets_in_training_only():
    ids = F.Registry((
        F.Feature("user_id", S.EVENT, K.ID, oov_buckets=2, embedding_dim=2),
        F.Feature("item_id", S.EVENT, K.ID, oov_buckets=0, embedding_dim=2),
    ))
    # user_id: vocabulary 10 + 2 OOV rows (10, 11); item_id has no OOV bucket to drop to.
    encoder = inputs.FeatureEncoder(ids, {"user_id": 12, "item_id": 10},
                                    ModelConfig(embedding_l2=0.0, id_dropout=0.25))
    n = 4000
    features = {"user_id": tf.fill([n], tf.constant(3, tf.int64)),
                "item_id": tf.fill([n], tf.constant(4, tf.int64))}
    tf.random.set_seed(0)
    user = encoder.parts(features, training=True)["user_id"].numpy()
    rows = encoder.embeddings["user_id"].embeddings.numpy()
    # Each example reads row 3 (kept), row 10 or row 11 (dropped, half each).
    which = np.array([[np.allclose(u, rows[r]) for r in (3, 10, 11)] for u in user])
    assert which.sum(axis=1).tolist() == [1] * n
    share = which.mean(axis=0)
    # Binomial sd of a 0.25 share over 4000 examples: sqrt(.25 * .75 / 4000) = 0.0068.
    assert abs(share[0] - 0.75) < 4 * 0.0068 and abs(share[1] - share[2]) < 0.04
    item = encoder.parts(features, training=True)["item_id"].numpy()
    np.testing.assert_allclose(item, np.repeat(
        encoder.embeddings["item_id"].embeddings.numpy()[[4]], n, axis=0))
    # Not in evaluation or serving.
    np.testing.assert_allclose(encoder.parts(features)["user_id"], np.repeat(rows[[3]], n, 0))


def test_text_without_a_vocabulary_size_is_refused():
    with pytest.raises(ValueError, match=r"\['desc'\]"):
        inputs.FeatureEncoder(SMALL, {"user_id": 4, "item_id": 4}, NO_L2)


def test_raw_examples_through_the_transform_graph_encode():
    registry = indexed.REGISTRY
    metadata = tft.DatasetMetadata.from_feature_spec(registry.raw_feature_spec())
    with tempfile.TemporaryDirectory() as tmp:
        with TestPipeline(runner="FnApiRunner") as p, tft_beam.Context(temp_dir=tmp):
            transform_fn = ((p | beam.Create(indexed.TRAIN), metadata)
                            | tft_beam.AnalyzeDataset(
                                functools.partial(preprocessing_fn, registry=registry)))
            _ = transform_fn | tft_beam.WriteTransformFn(tmp + "/transform")
        tft_output = tft.TFTransformOutput(tmp + "/transform")
        sizes = inputs.vocab_sizes(tft_output, registry)
        # One user, one item, 2 regions, 2 categories (+1 OOV each); text: top_k 3 + 2 OOV.
        assert sizes == {"user_id": 2, "item_id": 2, "region": 3, "category": 3, "desc": 5}
        rows = indexed.TRAIN + indexed.UNSEEN
        names = registry.example_names(include_labels=False)
        serialized = tf.constant([examples.encode(r, names, registry) for r in rows])
        raw = tf.io.parse_example(serialized, registry.raw_feature_spec(include_labels=False))
        transformed = tft_output.transform_raw_features(raw)
    assert transformed["desc"].shape == [len(rows), 4]
    assert transformed["region_x_category"].dtype == tf.int64
    encoder = inputs.FeatureEncoder(registry, sizes, NO_L2)
    # Nine embedded features of width 8, and two numerics.
    assert encoder(transformed).shape == [len(rows), 8 * 9 + 2]
