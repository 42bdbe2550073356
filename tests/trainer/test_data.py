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


def _copied_train_split(featurized_dir, tmp_path):
    """(transformed spec, shard pattern) of a copy of the fixture's train split: tests may delete it."""
    layout = Layout(featurized_dir)
    spec = tft.TFTransformOutput(layout.transform_dir).transformed_feature_spec()
    shards = tmp_path / "examples"
    shutil.copytree(os.path.dirname(layout.transformed("train")), shards)
    return spec, str(shards / "train-*")


def test_the_in_memory_input_yields_the_streamed_batches(featurized_dir, tmp_path):
    spec, pattern = _copied_train_split(featurized_dir, tmp_path)
    assert len(glob.glob(pattern)) > 1  # the interleave of shards is part of the order

    def batches(cache, seed=3, batch=64):
        return iter(data.make_dataset(pattern, spec, TASKS, batch, training=True, seed=seed,
                                      repeat=True, registry=shop.REGISTRY, cache=cache))

    def epochs(iterator, n, steps=3):
        # 192 examples: three batches of 64 an epoch, nothing dropped at the seams.
        return [[(b[0]["item_price"].numpy().tolist(), b[1]["click"].numpy().tolist())
                 for b in (next(iterator) for _ in range(steps))] for _ in range(n)]

    streamed = epochs(batches(cache=False), 2)
    odd = epochs(batches(cache=False, batch=50), 2, steps=3)
    cached, odd_cached, other = batches(True), batches(True, batch=50), batches(True, seed=4)
    # Parsed when built: the files are not read again.
    for path in glob.glob(pattern):
        os.remove(path)
    # Every batch equal, features and labels, epoch after epoch (each epoch a
    # fresh order), also when the batch does not divide the split.
    assert epochs(cached, 2) == streamed
    assert epochs(odd_cached, 2, steps=3) == odd
    assert streamed[0] != streamed[1]
    assert epochs(other, 1) != streamed[:1]


def test_small_training_splits_are_held_in_memory(featurized_dir, tmp_path):
    spec, pattern = _copied_train_split(featurized_dir, tmp_path)
    train = data.make_dataset(pattern, spec, TASKS, 64, training=True, seed=3,
                              registry=shop.REGISTRY)
    evaluation = data.make_dataset(pattern, spec, TASKS, 64, training=False,
                                   registry=shop.REGISTRY)
    for path in glob.glob(pattern):
        os.remove(path)
    assert len(list(train)) == 3  # held: the files are gone
    with pytest.raises(tf.errors.NotFoundError):
        list(evaluation)  # evaluation streams
