"""Tests for trainer.behaviour: purchase-only targets, the masked loss, the held-out report."""

import math

import numpy as np
import pytest
import tensorflow as tf

from trainer import behaviour as B
from trainer import image_encoder as E


def test_purchase_only_log_gives_z_scored_log_counts_of_teachers():
    counts = {"a": {"purchase": 3}, "b": {"purchase": 1}, "c": {"purchase": 7}}
    got = B.targets(counts, ["a", "b", "c", "d"], min_events=2, smoothing=5.0)
    assert got.columns == ["purchase_log1p_z"]
    # Teachers a and c (>= 2 purchases): log1p 3 = 2 ln 2 and log1p 7 = 3 ln 2,
    # mean 2.5 ln 2, population std 0.5 ln 2, so a is -1 and c is +1.
    np.testing.assert_allclose(got.values[:, 0], [-1.0, 0.0, 1.0, 0.0], atol=1e-6)
    np.testing.assert_array_equal(got.weight, [1, 0, 1, 0])
    mean, std = got.priors["purchase"]
    assert mean == pytest.approx(2.5 * math.log(2)) and std == pytest.approx(0.5 * math.log(2))


def test_masked_mse_ignores_non_teachers_whatever_their_targets():
    # Rows: two teachers, then non-teachers whose targets are wild (inf, NaN,
    # 1e6): any leak into the loss would make it inf, NaN or enormous.
    y_true = tf.constant([[1.0, 2.0, 1.0],
                          [0.0, -1.0, 1.0],
                          [np.inf, 1e6, 0.0],
                          [np.nan, 3.0, 0.0]])
    y_pred = tf.constant([[0.0, 0.0], [2.0, -1.0], [0.0, 0.0], [-5.0, 5.0]])
    # Teacher 1: mean((1-0)^2, (2-0)^2) = 2.5; teacher 2: mean(4, 0) = 2.
    # Their sum over the batch of 4 items: 4.5 / 4 = 1.125.
    assert float(B.masked_mse(y_true, y_pred)) == pytest.approx(1.125)
    # A batch without teachers costs nothing.
    assert float(B.masked_mse(y_true[2:], y_pred[2:])) == 0.0


def test_regression_report_scores_the_mean_zero():
    truth = np.array([[1.0], [2.0], [3.0], [4.0]])
    report = B.regression_report(truth, np.full((4, 1), 2.5), ["t"])
    assert report["t"]["r2"] == 0.0 and report["t"]["mean_baseline_r2"] == 0.0
    # Predictions 2x + 1: perfectly correlated (r 1), but SSE = sum (x + 1)^2 = 54
    # over SST = 5, so R^2 = 1 - 54 / 5 = -9.8.
    report = B.regression_report(truth, 2 * truth + 1, ["t"])
    assert report["t"]["pearson"] == pytest.approx(1.0)
    assert report["t"]["r2"] == pytest.approx(-9.8)


def test_behaviour_only_encoder_learns_brightness_of_teachers(tmp_path):
    # The target is each image's brightness; a third of the items are no
    # teachers, with targets that would teach the opposite if they leaked.
    rng = np.random.default_rng(0)
    brightness = rng.uniform(0.1, 0.9, 240).astype(np.float32)
    images = np.clip(brightness[:, None, None, None] + rng.normal(0, 0.05, (240, 8, 8, 3)),
                     0, 1).astype(np.float32)
    weight = (np.arange(240) % 3 != 0).astype(np.float32)
    values = np.where(weight > 0, brightness, -brightness)[:, None].astype(np.float32)
    targets = B.Targets(["brightness"], values, weight, {})
    config = E.EncoderConfig(filters=(8,), embedding_dim=8, dropout=0.0, epochs=1,
                             min_steps=150, batch_size=32, learning_rate=5e-3,
                             holdout_fraction=0.25, seed=3)
    model, report = E.train_encoder(images, {}, config, {}, behaviour=targets,
                                    behaviour_weight=2.0)
    behaviour = report["behaviour"]
    held_out = E.split_items(240, 0.25, 3)[1]
    assert report["heads"] == {} and behaviour["weight"] == 2.0
    assert behaviour["held_out_teachers"] == int(weight[held_out].sum())
    assert behaviour["train_teachers"] == int(weight.sum()) - behaviour["held_out_teachers"]
    # Brightness is a linear function of the mean pixel: far above the mean's R^2 0.
    assert behaviour["targets"]["brightness"]["pearson"] > 0.9
    assert behaviour["targets"]["brightness"]["r2"] > 0.7
    export_dir = E.export(model, str(tmp_path / "encoder"), {}, report)
    predicted = tf.saved_model.load(export_dir).signatures["predict"](
        images=tf.constant(images[:4]))
    assert predicted[E.BEHAVIOUR].shape == (4, 1)
    assert E.embed(export_dir, images[:4]).shape == (4, 8)


def test_without_a_training_teacher_the_encoder_learns_its_attributes_alone():
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 1, (40, 4, 4, 3)).astype(np.float32)
    labels = {"kind": (np.arange(40) % 2).astype(np.int64)}
    # Teachers only among the held-out items: the training split has none.
    held_out = np.arange(40) < 10
    targets = B.Targets(["click_logodds"], np.ones((40, 1), np.float32),
                        held_out.astype(np.float32), {})
    config = E.EncoderConfig(filters=(4,), embedding_dim=4, epochs=1, min_steps=2, seed=0)
    model, report = E.train_encoder(images, labels, config, {"kind": 2}, held_out=held_out,
                                    behaviour=targets)
    assert report["behaviour"] == {
        "skipped": "no training item has embed.behaviour.min_events events"}
    assert set(model.output) == {"kind"} and "kind" in report["heads"]
    with pytest.raises(ValueError, match="nothing to learn"):
        E.train_encoder(images, {}, config, {}, held_out=held_out, behaviour=targets)
