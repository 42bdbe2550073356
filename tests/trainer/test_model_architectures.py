"""MultiTaskModel with each architecture, task type, conditions and retrieval,
on data written by the real featurize job."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from shoprec.core import generated_shop as shop
from shoprec.core.layout import Layout
from shoprec.core.model_config import ExpertsConfig, RetrievalConfig, TaskConfig
from tests.trainer.synthetic import SMALL_MODEL, loss_on
from trainer import data, evaluation, model as model_lib, strategy as strategy_lib
from trainer import inputs as inputs_lib

BATCH = 16
SMALL_EXPERTS = ExpertsConfig(num_experts=3, units=(8,), shared_experts=1, task_experts=1,
                              levels=2)


def _model_config(**changes):
    return dataclasses.replace(SMALL_MODEL, experts=SMALL_EXPERTS, **changes)


def _batch(run_dir, model_config, batch=BATCH, repeat=False):
    layout = Layout(run_dir)
    tft_output = tft.TFTransformOutput(layout.transform_dir)
    dataset = data.make_dataset(layout.transformed("train") + "-*",
                                tft_output.transformed_feature_spec(), model_config.tasks, batch,
                                training=True, seed=5, repeat=repeat,
                                registry=shop.REGISTRY,
                                extra_labels=evaluation.label_columns(model_config))
    return tft_output, dataset


def _unmoved(model, before):
    """Names of the trainable variables still equal to their ``before`` values."""
    return [v.name for v, b in zip(model.trainable_variables, before)
            if np.array_equal(v.numpy(), b)]


def _bce(labels, p):
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -(labels * np.log(p) + (1 - labels) * np.log(1 - p))


@pytest.mark.parametrize("architecture",
                         ["shared_bottom", "mmoe", "ple", "esmm", "soft_sharing"])
def test_every_architecture_trains(featurized_dir, architecture):
    model_config = _model_config(architecture=architecture)
    tft_output, dataset = _batch(featurized_dir, model_config, repeat=True)
    tf.keras.utils.set_random_seed(2)
    model = model_lib.build_model(model_config, tft_output, BATCH, registry=shop.REGISTRY)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
    batch = next(iter(dataset))
    before = [v.numpy().copy() for v in model.trainable_variables]
    loss_before = loss_on(model, batch)
    history = model.fit(dataset, epochs=2, steps_per_epoch=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    # On one fixed batch, so that a frozen model cannot pass by drawing easier
    # batches later: the initial loss is about 1.1-1.4 (logits near 0 give 0.69
    # a task), the base rates alone (41 clicks, 22 conversions of 192) give
    # 0.52 + 0.36 = 0.88, and 8 Adam steps at 0.01 head there.
    loss_after = loss_on(model, batch)
    assert loss_after < loss_before, (loss_before, loss_after)
    # Every weight of the architecture (experts, gates, towers, embeddings)
    # takes part in the loss, so every one of them moves.
    assert _unmoved(model, before) == []
    predictions = model.predictions(next(iter(dataset))[0])
    expected = {"click", "conversion"} | ({"cvr"} if architecture == "esmm" else set())
    assert set(predictions) == expected == set(model.prediction_names)
    assert all(v.shape == [BATCH] for v in predictions.values())


def test_esmm_ctcvr_is_the_product_and_its_losses_cover_every_impression(featurized_dir):
    model_config = _model_config(architecture="esmm")
    tft_output, dataset = _batch(featurized_dir, model_config)
    model = model_lib.build_model(model_config, tft_output, BATCH, registry=shop.REGISTRY)
    features, labels = next(iter(dataset))
    predictions = {k: v.numpy() for k, v in model.predictions(features).items()}
    np.testing.assert_array_equal(predictions["conversion"],
                                  predictions["click"] * predictions["cvr"])
    # No CVR loss: the CTR loss and the CTCVR loss of pCTR x pCVR against
    # conversion, averaged over all impressions (clicked or not).
    click, conversion = labels["click"].numpy(), labels["conversion"].numpy()
    expected = (_bce(click, predictions["click"]).mean()
                + _bce(conversion, predictions["conversion"]).mean())
    loss = model.compute_loss((features, labels)).numpy()
    assert loss == pytest.approx(expected, rel=1e-4)


def test_a_conditioned_task_learns_only_from_its_condition(featurized_dir):
    tasks = (TaskConfig("cvr", "conversion", condition="click"),)
    model_config = _model_config(tasks=tasks)
    tft_output, dataset = _batch(featurized_dir, model_config)
    model = model_lib.build_model(model_config, tft_output, BATCH, registry=shop.REGISTRY)
    features, labels = next(iter(dataset))
    assert set(labels) == {"cvr", "click"}
    clicked = labels["click"].numpy() > 0.5
    assert 0 < clicked.sum() < BATCH
    p = model.predictions(features)["cvr"].numpy()
    # Unclicked rows weigh 0; the sum is still divided by the whole batch.
    expected = _bce(labels["cvr"].numpy(), p)[clicked].sum() / BATCH
    assert model.compute_loss((features, labels)).numpy() == pytest.approx(expected, rel=1e-4)


def test_multiclass_and_regression_tasks(featurized_dir):
    tasks = (TaskConfig("click", "click"),
             TaskConfig("category", "item_category", type="multiclass", weight=0.5),
             TaskConfig("price", "item_price", type="regression", weight=0.1))
    model_config = _model_config(tasks=tasks, architecture="mmoe")
    tft_output, dataset = _batch(featurized_dir, model_config, repeat=True)
    model = model_lib.build_model(model_config, tft_output, BATCH, registry=shop.REGISTRY)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
    history = model.fit(dataset, epochs=1, steps_per_epoch=3, verbose=0)
    assert {"category_loss", "price_loss"} <= set(history.history)
    features, labels = next(iter(dataset))
    # The label is also an input: it stays among the features.
    assert "item_category" in features and labels["category"].dtype == tf.int64
    predictions = model.predictions(features)
    # 3 categories + 1 OOV bucket.
    classes = inputs_lib.vocab_sizes(tft_output, shop.REGISTRY)["item_category"]
    assert predictions["category"].shape == [BATCH, classes] == [BATCH, 4]
    np.testing.assert_allclose(predictions["category"].numpy().sum(axis=1), 1.0, rtol=1e-5)
    assert predictions["price"].shape == [BATCH]


def test_retrieval_trains_jointly_under_mirrored_strategy(featurized_dir):
    mirrored = strategy_lib.make_strategy("mirrored")
    global_batch = BATCH * mirrored.num_replicas_in_sync
    model_config = _model_config(retrieval=RetrievalConfig(
        enabled=True, embedding_dim=4, tower_units=(8,), recall_at=(5,)))
    tft_output, dataset = _batch(featurized_dir, model_config, batch=global_batch, repeat=True)
    with mirrored.scope():
        model = model_lib.build_model(model_config, tft_output, global_batch,
                                      registry=shop.REGISTRY)
        model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
    batch = next(iter(dataset))
    before = [v.numpy().copy() for v in model.trainable_variables]
    loss_before = loss_on(model, batch, mirrored)
    history = model.fit(dataset, epochs=2, steps_per_epoch=3, verbose=0)
    assert np.all(np.isfinite(history.history["retrieval_loss"]))
    # Jointly: the total loss (ranking + retrieval) falls on a fixed batch and
    # every weight moves, the two retrieval towers' included.
    loss_after = loss_on(model, batch, mirrored)
    assert loss_after < loss_before, (loss_before, loss_after)
    assert _unmoved(model, before) == []
    assert set(model.user_features) == {"user_id", "user_age", "user_region", "user_membership"}
    assert "item_image_embedding" in model.item_features and "user_id" not in model.item_features
    features, _ = next(iter(dataset))
    user = model.user_embedding({k: features[k] for k in model.user_features}).numpy()
    item = model.item_embedding({k: features[k] for k in model.item_features}).numpy()
    assert user.shape == item.shape == (global_batch, 4)
    np.testing.assert_allclose(np.linalg.norm(item, axis=1), 1.0, rtol=1e-5)


def test_config_round_trip_keeps_architecture_and_retrieval(featurized_dir):
    model_config = _model_config(architecture="ple", retrieval=RetrievalConfig(enabled=True))
    tft_output, _ = _batch(featurized_dir, model_config)
    model = model_lib.build_model(model_config, tft_output, BATCH, registry=shop.REGISTRY)
    rebuilt = model_lib.MultiTaskModel.from_config(model.get_config())
    assert rebuilt.get_config() == model.get_config()
    assert rebuilt.retrieval is not None
    plain = model_lib.build_model(SMALL_MODEL, tft_output, BATCH, registry=shop.REGISTRY)
    with pytest.raises(ValueError, match="no retrieval"):
        plain.user_embedding({})
