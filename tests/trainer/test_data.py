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


def test_the_in_memory_input_permutes_every_example_each_epoch(featurized_dir, tmp_path):
    layout = Layout(featurized_dir)
    spec = tft.TFTransformOutput(layout.transform_dir).transformed_feature_spec()
    shards = tmp_path / "examples"
    shutil.copytree(os.path.dirname(layout.transformed("train")), shards)
    pattern = str(shards / "train-*")

    def batches(cache, seed=3):
        return iter(data.make_dataset(pattern, spec, TASKS, 64, training=True, seed=seed,
                                      repeat=True, registry=shop.REGISTRY, cache=cache))

    def epochs(iterator, n):
        # 192 examples: three batches of 64 an epoch, nothing dropped at the seams.
        values = [v for _ in range(3 * n) for v in next(iterator)[0]["item_price"].numpy()]
        return [values[i * 192:(i + 1) * 192] for i in range(n)]

    streamed = epochs(batches(cache=False), 1)[0]
    cached, again, other = batches(True), batches(True), batches(True, seed=4)
    # Parsed when built: the files are not read again.
    for path in glob.glob(pattern):
        os.remove(path)
    first, second = epochs(cached, 2)
    assert sorted(first) == sorted(second) == sorted(streamed)  # every example once an epoch
    assert first != second  # a fresh permutation each epoch
    assert epochs(again, 2) == [first, second]  # the same order under the same seed
    assert epochs(other, 1)[0] != first
