"""A task with inputs of its own reads only those, beside the shared architecture."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from shoprec.core import generated_shop as shop
from shoprec.core.layout import Layout
from shoprec.core.model_config import TaskConfig
from tests.trainer.synthetic import SMALL_MODEL
from trainer import data, model as model_lib

OWN = ("item_price", "item_brand")


@pytest.mark.parametrize("architecture", ["shared_bottom", "mmoe"])
def test_an_attribute_task_never_sees_the_attribute(featurized_dir, architecture):
    category = TaskConfig("category", "item_category", type="multiclass", inputs=OWN)
    config = dataclasses.replace(SMALL_MODEL, architecture=architecture,
                                 tasks=SMALL_MODEL.tasks + (category,))
    layout = Layout(featurized_dir)
    tft_output = tft.TFTransformOutput(layout.transform_dir)
    dataset = data.make_dataset(layout.transformed("train") + "-*",
                                tft_output.transformed_feature_spec(), config.tasks, 16,
                                training=False, registry=shop.REGISTRY)
    model = model_lib.build_model(config, tft_output, 16, registry=shop.REGISTRY)
    # Not a branch of the architecture: it has a bottom of its own.
    assert model.architecture.branches == ("click", "conversion")
    features, labels = next(iter(dataset))
    base = model(features)
    changed = dict(features)
    for name in ("item_category", "item_colour", "item_id", "user_id"):
        changed[name] = tf.zeros_like(features[name])
    out = model(changed)
    # Everything but the own inputs changed: the category logits did not, the click ones did.
    np.testing.assert_array_equal(out["category"].numpy(), base["category"].numpy())
    assert not np.allclose(out["click"].numpy(), base["click"].numpy())
    priced = dict(features, item_price=features["item_price"] + 1.0)
    assert not np.allclose(model(priced)["category"].numpy(), base["category"].numpy())
    # It trains like any task: a finite joint loss with its softmax term.
    assert np.isfinite(float(model.compute_loss((features, labels))))
