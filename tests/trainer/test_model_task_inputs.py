"""A task with inputs of its own reads only those, beside the shared architecture."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from shoprec.core.model_config import TaskConfig
from tests.trainer.synthetic import SMALL_MODEL, model_and_first_batch

OWN = ("item_price", "item_brand")


@pytest.mark.parametrize("architecture", ["shared_bottom", "mmoe"])
def test_an_attribute_task_never_sees_the_attribute(featurized_dir, architecture):
    category = TaskConfig("category", "item_category", type="multiclass", inputs=OWN)
    config = dataclasses.replace(SMALL_MODEL, architecture=architecture,
                                 tasks=SMALL_MODEL.tasks + (category,))
    model, features, labels = model_and_first_batch(featurized_dir, config)
    # Not a branch of the architecture: it has a bottom of its own.
    assert model.architecture.branches == ("click", "conversion")
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
