"""trainer.weighting: uncertainty and DWA task weights, alone, in the model and distributed."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from shoprec.core import generated_shop as shop
from shoprec.core.layout import Layout
from shoprec.core.model_config import TaskConfig
from tests.trainer.synthetic import SMALL_MODEL, loss_on, make_config, served_eval_metrics
from trainer import data, model as model_lib, strategy as strategy_lib, train, weighting

PER_REPLICA = 8


def _inputs(run_dir, global_batch, repeat=False):
    layout = Layout(run_dir)
    tft_output = tft.TFTransformOutput(layout.transform_dir)
    dataset = data.make_dataset(layout.transformed("train") + "-*",
                                tft_output.transformed_feature_spec(), SMALL_MODEL.tasks,
                                global_batch, training=True, seed=5, repeat=repeat,
                                registry=shop.REGISTRY)
    return tft_output, dataset


def _bce(labels, logits):
    p = 1.0 / (1.0 + np.exp(-logits))
    return -(labels * np.log(p) + (1 - labels) * np.log(1 - p))


def test_uncertainty_loss_and_gradients_follow_kendall_et_al():
    tasks = (TaskConfig("click", "click"), TaskConfig("price", "item_price", weight=0.5,
                                                       type="regression"))
    layer = weighting.TaskWeighting(tasks, "uncertainty")
    layer.log_variance.assign([0.2, 0.4])
    losses = {"click": tf.constant(0.8), "price": tf.constant(2.0)}
    with tf.GradientTape() as tape:
        total = layer(losses)
    grad = tape.gradient(total, layer.log_variance).numpy()
    # click: exp(-0.2) * 0.8 + 0.2 = 0.854985; price, weight 0.5, regression
    # form: 0.5 * 0.5 * (exp(-0.4) * 2 + 0.4) = 0.435160.
    assert float(total) == pytest.approx(0.854985 + 0.435160, abs=1e-5)
    # d/ds: 1 - exp(-s) L, times 0.25 for the weighted regression task.
    np.testing.assert_allclose(grad, [1 - np.exp(-0.2) * 0.8, 0.25 * (1 - np.exp(-0.4) * 2)],
                               rtol=1e-5)
    report = layer.report()
    assert report["click"] == pytest.approx({"weight": np.exp(-0.2), "log_variance": 0.2})
    assert report["price"]["weight"] == pytest.approx(0.25 * np.exp(-0.4))


def test_uncertainty_in_the_model_on_a_tiny_batch(featurized_dir):
    tft_output, dataset = _inputs(featurized_dir, 4)
    config = dataclasses.replace(SMALL_MODEL, loss_weighting="uncertainty")
    model = model_lib.build_model(config, tft_output, 4, registry=shop.REGISTRY)
    s = np.array([0.3, -0.5], np.float32)
    model.task_weighting.log_variance.assign(s)
    features, labels = batch = next(iter(dataset))
    raw = model(features)
    task_losses = np.array([_bce(labels[t].numpy(), raw[t].numpy().astype(np.float64)).mean()
                            for t in ("click", "conversion")])
    with tf.GradientTape() as tape:
        total = model.compute_loss(batch)
    grad = tape.gradient(total, model.task_weighting.log_variance).numpy()
    assert float(total) == pytest.approx(float(np.sum(np.exp(-s) * task_losses + s)), rel=1e-5)
    np.testing.assert_allclose(grad, 1 - np.exp(-s) * task_losses, rtol=1e-4)


def test_dwa_weights_equal_the_formula():
    # r = (0.5, 0.9), T = 2: exp(0.25) = 1.284025, exp(0.45) = 1.568312.
    np.testing.assert_allclose(weighting.dwa_weights([0.5, 0.9], [1.0, 1.0], 2.0),
                               2 * np.array([1.284025, 1.568312]) / 2.852337, rtol=1e-6)
    tasks = (TaskConfig("a", "click"), TaskConfig("b", "conversion"), TaskConfig("c", "click"))
    layer = weighting.TaskWeighting(tasks, "dwa", temperature=0.5)
    history = [{"a": 1.0, "b": 2.0, "c": 4.0}, {"a": 0.5, "b": 2.0, "c": 4.4},
               {"a": 0.5, "b": 1.0, "c": 4.4}]
    layer.end_epoch(history[0])
    # Equal weights for the first two epochs.
    np.testing.assert_array_equal(layer.dwa_lambda.numpy(), [1.0, 1.0, 1.0])
    layer.end_epoch(history[1])
    # r = (0.5, 1.0, 1.1), T = 0.5: exp(2 r) = (2.718282, 7.389056, 9.025013), sum 19.132351.
    np.testing.assert_allclose(layer.dwa_lambda.numpy(),
                               3 * np.array([2.718282, 7.389056, 9.025013]) / 19.132351,
                               rtol=1e-5)
    layer.end_epoch(history[2])
    # r = (1.0, 0.5, 1.0): exp(2 r) = (7.389056, 2.718282, 7.389056), sum 17.496394.
    expected = 3 * np.array([7.389056, 2.718282, 7.389056]) / 17.496394
    np.testing.assert_allclose(layer.dwa_lambda.numpy(), expected, rtol=1e-5)
    total = layer({"a": tf.constant(1.0), "b": tf.constant(2.0), "c": tf.constant(3.0)})
    assert float(total) == pytest.approx(float(expected @ [1.0, 2.0, 3.0]), rel=1e-5)


@pytest.mark.parametrize("method", ["uncertainty", "dwa"])
def test_mirrored_loss_equals_single_device_loss(featurized_dir, method):
    """The log-variance term counts once over replicas, as a single device counts it."""
    mirrored = strategy_lib.make_strategy("mirrored")
    global_batch = PER_REPLICA * mirrored.num_replicas_in_sync
    tft_output, dataset = _inputs(featurized_dir, global_batch)
    batch = next(iter(dataset))
    config = dataclasses.replace(SMALL_MODEL, loss_weighting=method)
    with mirrored.scope():
        distributed = model_lib.build_model(config, tft_output, global_batch,
                                            registry=shop.REGISTRY)
    single = model_lib.build_model(config, tft_output, global_batch, registry=shop.REGISTRY)
    if method == "uncertainty":
        single.task_weighting.log_variance.assign([0.7, -0.4])
    else:
        single.task_weighting.dwa_lambda.assign([1.3, 0.7])
    distributed.set_weights(single.get_weights())
    assert loss_on(distributed, batch, mirrored) == pytest.approx(loss_on(single, batch),
                                                                  rel=1e-5)


def _train_mirrored(run_dir, method, epochs=3):
    mirrored = strategy_lib.make_strategy("mirrored")
    global_batch = PER_REPLICA * mirrored.num_replicas_in_sync
    tft_output, dataset = _inputs(run_dir, global_batch, repeat=True)
    config = dataclasses.replace(SMALL_MODEL, loss_weighting=method)
    tf.keras.utils.set_random_seed(1)
    with mirrored.scope():
        model = model_lib.build_model(config, tft_output, global_batch, registry=shop.REGISTRY)
        model.compile(optimizer=tf.keras.optimizers.Adam(0.05))
    callbacks = ([weighting.DynamicWeightAverage(model.task_weighting)]
                 if method == "dwa" else [])
    history = model.fit(dataset, epochs=epochs, steps_per_epoch=3, verbose=0,
                        callbacks=callbacks)
    return model, history.history


def test_uncertainty_learns_its_log_variances_under_mirrored(featurized_dir):
    model, history = _train_mirrored(featurized_dir, "uncertainty")
    assert np.all(np.isfinite(history["loss"]))
    s = model.task_weighting.log_variance.numpy()
    # From 0, each s_i moves by ~lr a step (Adam), towards log L_i: both losses
    # are below 1 (base rates give 0.52 and 0.36), so both s_i fall.
    assert np.all(s < -0.05), s


def test_dwa_sets_the_weights_from_the_last_two_epochs_under_mirrored(featurized_dir):
    model, history = _train_mirrored(featurized_dir, "dwa", epochs=3)
    losses = np.array([history["click_loss"], history["conversion_loss"]])
    expected = weighting.dwa_weights(losses[:, 2], losses[:, 1], 2.0)
    np.testing.assert_allclose(model.task_weighting.dwa_lambda.numpy(), expected, rtol=1e-5)
    assert not np.allclose(expected, 1.0)


def _copied_run(featurized_dir, tmp_path, epochs, **model):
    """A config training on a copy of the featurized run, its model section changed."""
    run_dir = tmp_path / "run"
    shutil.copytree(featurized_dir, run_dir)
    config = make_config(str(run_dir), per_replica_batch_size=16, epochs=epochs,
                         learning_rate=0.03)
    return dataclasses.replace(config, model=dataclasses.replace(config.model, **model))


def test_train_records_the_weights_per_epoch(featurized_dir, tmp_path):
    config = _copied_run(featurized_dir, tmp_path, epochs=3, loss_weighting="dwa")
    result = train.run(config, strategy_name="mirrored")
    with open(config.layout.metrics_file) as f:
        record = json.load(f)["training"]
    assert record["loss_weighting"] == "dwa"
    weights = [[epoch[t]["weight"] for t in ("click", "conversion")]
               for epoch in record["loss_weights"]]
    losses = np.array([record["losses"]["click_loss"], record["losses"]["conversion_loss"]])
    # Epochs 0 and 1 train with equal weights; epoch 2 with those of epochs 0 -> 1.
    assert weights[:2] == [[1.0, 1.0], [1.0, 1.0]]
    np.testing.assert_allclose(weights[2], weighting.dwa_weights(losses[:, 1], losses[:, 0],
                                                                 2.0), rtol=1e-5)
    assert result["training"]["loss_weights"] == record["loss_weights"]
    # tensorboard is installed (setup.py), so the chief writes the scalars.
    events = tf.io.gfile.glob(f"{record['tensorboard_dir']}/eval/events.*")
    tags = {v.tag for path in events for e in tf.compat.v1.train.summary_iterator(path)
            for v in e.summary.value}
    assert {"click/loss_weight", "conversion/loss_weight", "click/auc"} <= tags


def test_soft_sharing_with_uncertainty_trains_and_exports(featurized_dir, tmp_path):
    config = _copied_run(featurized_dir, tmp_path, epochs=2, architecture="soft_sharing",
                         soft_sharing_lambda=0.1, loss_weighting="uncertainty")
    result = train.run(config, strategy_name="mirrored")
    record = result["training"]
    assert record["architecture"] == "soft_sharing"
    assert len(record["loss_weights"]) == 2
    for epoch in record["loss_weights"]:
        for values in epoch.values():
            assert values["weight"] == pytest.approx(np.exp(-values["log_variance"]))
    assert record["loss_weights"][1]["click"]["log_variance"] != 0.0
    # The exported model scores the raw eval rows as training's evaluation did.
    served = served_eval_metrics(config.layout.model_dir)
    for task in ("click", "conversion"):
        assert result["tasks"][task]["auc"] == pytest.approx(served[task]["auc"], abs=1e-12)
