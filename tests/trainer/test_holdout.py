"""A task's hold-out rows: zero training loss, and the only rows it is evaluated on.

Hand-derived values throughout; the model-level test trains on the real
featurized fixture with the hold-out column put beside the labels.
"""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from shoprec.core import registry as F
from shoprec.core.layout import CSV_SUFFIX, Layout
from shoprec.core.model_config import ModelConfig, TaskConfig
from tests.trainer.synthetic import SMALL_MODEL, model_and_first_batch
from trainer import baselines, evaluation, heads, model as model_lib
from transforms import holdout

LN2 = float(np.log(2.0))


def test_held_out_and_unconditioned_rows_weigh_zero():
    task = TaskConfig("t", "y", condition="c", holdout="h")
    labels = {"c": tf.constant([1.0, 1.0, 0.0, 1.0]), "h": tf.constant([0.0, 1.0, 0.0, 1.0])}
    assert model_lib.train_weight(task, labels).numpy().tolist() == [1.0, 0.0, 0.0, 0.0]
    only = TaskConfig("t", "y", holdout="h")
    assert model_lib.train_weight(only, labels).numpy().tolist() == [1.0, 0.0, 1.0, 0.0]
    assert model_lib.train_weight(TaskConfig("t", "y"), labels) is None


def test_a_held_out_row_adds_no_loss():
    task = TaskConfig("anomaly", "bot", holdout="h")
    labels = {"anomaly": tf.constant([1.0, 0.0, 1.0, 1.0]),
              "h": tf.constant([0.0, 1.0, 0.0, 1.0])}
    logits = tf.constant([0.0, 2.0, -1.0, 1.0])
    got = heads.Objective(task).per_example_loss(
        labels["anomaly"], logits, sample_weight=model_lib.train_weight(task, labels))
    # Log loss of label 1: log(1 + e^-z): z = 0 -> ln 2, z = -1 -> ln(1 + e);
    # rows 1 and 3 are held out.
    np.testing.assert_allclose(got.numpy(), [LN2, 0.0, np.log1p(np.e), 0.0], rtol=1e-6)


def _model_and_batch(featurized_dir, held_out):
    own = ("item_price", "item_brand")
    task = TaskConfig("brand_click", "click", inputs=own, holdout="h")
    config = dataclasses.replace(SMALL_MODEL, tasks=SMALL_MODEL.tasks + (task,))
    model, features, labels = model_and_first_batch(featurized_dir, config)
    return model, features, dict(labels, h=tf.constant(held_out, tf.float32))


def _own_gradients(model, features, labels):
    with tf.GradientTape() as tape:
        loss = model.compute_loss((features, labels))
    own = [v for v in model.trainable_variables if "brand_click" in v.name]
    assert own, "the task has variables of its own"
    return loss, [g for g in tape.gradient(loss, own)]


def test_every_row_held_out_leaves_the_tasks_own_weights_untrained(featurized_dir):
    model, features, labels = _model_and_batch(featurized_dir, [1.0] * 16)
    _, grads = _own_gradients(model, features, labels)
    assert all(g is None or not np.any(g.numpy()) for g in grads)
    # The same rows, half of them held out: the task trains on the other half.
    labels = dict(labels, h=tf.constant([0.0, 1.0] * 8))
    _, grads = _own_gradients(model, features, labels)
    assert any(g is not None and np.any(g.numpy()) for g in grads)


def test_the_joint_loss_counts_the_task_on_kept_rows_only(featurized_dir):
    half = [0.0, 1.0] * 8
    model, features, labels = _model_and_batch(featurized_dir, half)
    total = float(model.compute_loss((features, labels)))
    logits = model(features)["brand_click"]
    per_example = tf.nn.sigmoid_cross_entropy_with_logits(
        tf.cast(labels["brand_click"], tf.float32), logits).numpy()
    every = dict(labels, h=tf.ones(16))
    without = float(model.compute_loss((features, every)))
    # Fixed weights: the difference is the task's loss over the 8 kept rows / 16,
    # plus nothing else (the shared tasks and the L2 do not depend on the mask).
    expected = per_example[::2].sum() / 16
    assert total - without == pytest.approx(expected, rel=1e-4)


class _Fixed:
    """p = sigmoid(x) for the one binary task."""

    retrieval = None

    def predictions(self, features):
        return {"bot": tf.sigmoid(features["x"])}


def test_a_held_out_task_is_evaluated_on_its_held_out_rows_only():
    x = np.array([-2.0, -1.0, 1.0, 3.0, 0.0, 2.0], np.float32)
    bot = np.array([0, 1, 0, 1, 1, 0], np.float32)
    h = np.array([1, 1, 0, 0, 1, 0], np.float32)
    features = {"x": x, "user_id": np.arange(6), "item_id": np.arange(6)}
    dataset = tf.data.Dataset.from_tensor_slices((features, {"bot": bot, "h": h})).batch(4)
    config = ModelConfig(tasks=(TaskConfig("bot", "bot", holdout="h", threshold=0.5),))
    assert evaluation.label_columns(config) == ("h",)
    got = evaluation.evaluate(_Fixed(), dataset, config, "user_id", "item_id")["tasks"]["bot"]
    # Held-out rows 0, 1, 4: x = -2 (0), -1 (1), 0 (1). Both positives outrank
    # the negative: AUC 1 (over all six rows it would be 5/9). s(x) >= 0.5
    # only at x = 0: precision 1, recall 1/2.
    assert got["examples"] == 3 and got["auc"] == 1.0
    assert (got["precision"], got["recall"]) == pytest.approx((1.0, 0.5))


def test_the_rule_baseline_is_scored_on_the_tasks_held_out_users(tmp_path):
    users = [f"user-{i}" for i in range(40)]
    held = holdout.held_out(users, 0.5).numpy() > 0.5
    assert 0 < held.sum() < len(users)
    registry = F.Registry((
        F.Feature("user_id", F.Source.EVENT, F.Kind.ID),
        F.Feature("item_id", F.Source.EVENT, F.Kind.ID),
        F.Feature("bot", F.Source.USER, F.Kind.LABEL, column="is_bot"),
        F.Feature("user_held_out", F.Source.DERIVED, F.Kind.HOLDOUT,
                  derived_from=("user_id",), fraction=0.5),
    ))
    layout = Layout(str(tmp_path))
    # Every 4th user is a bot; the rule scores a user by its index, so its AUC
    # over any set of users follows from which of them are bots.
    is_bot = np.arange(40) % 4 == 0
    tf.io.gfile.makedirs(layout.anomaly_table.rsplit("/", 1)[0])
    with open(layout.anomaly_table + CSV_SUFFIX, "w") as f:
        f.write("user_id,events,max_events_per_window,robotic_windows,robotic_from,score\n")
        for i, u in enumerate(users):
            f.write(f"{u},1,1,0,,{(39 - i if is_bot[i] else i) / 40}\n")
    tf.io.gfile.makedirs(layout.examples("eval").rsplit("/", 1)[0])
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(layout.examples("eval") + "-00000-of-00001", options) as w:
        for i, u in enumerate(users):
            w.write(tf.train.Example(features=tf.train.Features(feature={
                "user_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[u.encode()])),
                "timestamp": tf.train.Feature(int64_list=tf.train.Int64List(value=[0])),
                "bot": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(is_bot[i])])),
            })).SerializeToString())
    tasks = [TaskConfig("anomaly", "bot", baseline="anomaly_rule", holdout="user_held_out")]
    got = baselines.evaluate(layout, registry, tasks)["anomaly"]
    assert got["examples"] == int(held.sum())
    # The rule's AUC over the held-out users, counted pair by pair here.
    score = np.where(is_bot, (39 - np.arange(40)) / 40, np.arange(40) / 40)[held]
    pos, neg = score[is_bot[held]], score[~is_bot[held]]
    pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]
    assert got["auc"] == pytest.approx(np.mean(pairs))
    everyone = baselines.evaluate(layout, registry, [dataclasses.replace(tasks[0],
                                                                         holdout=None)])
    assert everyone["anomaly"]["examples"] == 40
