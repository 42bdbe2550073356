"""trainer.data over shards written by the real featurize job."""

import glob
import os
import shutil

import pytest
import tensorflow as tf
import tensorflow_transform as tft

from shoprec.core import generated_shop as shop
from shoprec.core.layout import Layout
from shoprec.core.model_config import ModelConfig
from tests.trainer.synthetic import NUM_EVAL
from trainer import data

TASKS = ModelConfig().tasks


def _dataset(run_dir, split, batch, training):
    layout = Layout(run_dir)
    spec = tft.TFTransformOutput(layout.transform_dir).transformed_feature_spec()
    return data.make_dataset(layout.transformed(split) + "-*", spec, TASKS, batch,
                             training=training, seed=3, registry=shop.REGISTRY)


def test_batches_are_features_and_task_labels(featurized_dir):
    features, labels = next(iter(_dataset(featurized_dir, "train", 8, training=True)))
    assert set(features) == {f.name for f in shop.REGISTRY.inputs()}
    assert set(labels) == {"click", "conversion"}
    assert features["user_id"].dtype == tf.int64 and features["user_id"].shape == [8]
    assert features["item_image_embedding"].shape == [8, shop.REGISTRY.embedding_feature().width]
    assert labels["click"].dtype == tf.float32 and labels["click"].shape == [8]


def test_eval_reads_every_example_once(featurized_dir):
    batches = list(_dataset(featurized_dir, "eval", 10, training=False))
    # 64 examples: six full batches and a partial one, nothing dropped.
    assert [int(b[1]["click"].shape[0]) for b in batches] == [10] * 6 + [NUM_EVAL - 60]


def test_training_drops_the_partial_batch_and_is_seeded(featurized_dir):
    first = [b[0]["item_price"].numpy().tolist() for b in _dataset(featurized_dir, "train", 50,
                                                                     training=True)]
    again = [b[0]["item_price"].numpy().tolist() for b in _dataset(featurized_dir, "train", 50,
                                                                     training=True)]
    assert len(first) == 3 and all(len(b) == 50 for b in first)  # 192 examples
    assert first == again


def test_missing_inputs_fail_clearly(tmp_path, featurized_dir):
    with pytest.raises(FileNotFoundError, match="featurize"):
        data.make_dataset(str(tmp_path / "none") + "-*", {}, TASKS, 8, training=False,
                          registry=shop.REGISTRY)
    with pytest.raises(KeyError, match="item_image_embedding"):
        data.parse_spec({"click": None, "conversion": None}, TASKS, shop.REGISTRY)


def test_the_cached_input_is_the_streamed_input_read_once(featurized_dir, tmp_path):
    layout = Layout(featurized_dir)
    spec = tft.TFTransformOutput(layout.transform_dir).transformed_feature_spec()
    shards = tmp_path / "examples"
    shutil.copytree(os.path.dirname(layout.transformed("train")), shards)
    pattern = str(shards / "train-*")

    def batches(cache):
        return iter(data.make_dataset(pattern, spec, TASKS, 50, training=True, seed=3,
                                      repeat=True, registry=shop.REGISTRY, cache=cache))

    def prices(iterator, n):
        return [next(iterator)[0]["item_price"].numpy().tolist() for _ in range(n)]

    streamed = prices(batches(cache=False), 11)  # 550 of 3 x 192 examples
    cached = batches(cache=True)
    first = prices(cached, 4)  # past the first epoch: the cache is complete
    for path in glob.glob(pattern):
        os.remove(path)
    # Later epochs come from memory, in the streamed order, reshuffled each epoch.
    assert first + prices(cached, 7) == streamed
    assert streamed[:3] != streamed[4:7]
