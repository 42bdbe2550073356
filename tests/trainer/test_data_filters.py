"""trainer.data: extra label columns, training filters and one-column scans."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from shoprec.core import generated_shop as shop
from shoprec.core.layout import Layout
from shoprec.core.model_config import TaskConfig
from tests.trainer.synthetic import NUM_TRAIN
from trainer import data

CVR = (TaskConfig("cvr", "conversion", condition="click"),)


def _spec(run_dir):
    layout = Layout(run_dir)
    return layout, tft.TFTransformOutput(layout.transform_dir).transformed_feature_spec()


def test_scan_reads_one_column_of_every_example(featurized_dir):
    layout, spec = _spec(featurized_dir)
    items = data.scan_column(layout.transformed("train") + "-*", spec, "item_id")
    clicked = data.scan_column(layout.transformed("train") + "-*", spec, "item_id",
                               keep_if="click")
    assert items.shape == (NUM_TRAIN,) and items.dtype == np.int64
    # make_rows(192, seed=1), the train split, holds 41 clicks.
    assert clicked.size == 41


def test_keep_if_trains_on_clicked_examples_only(featurized_dir):
    layout, spec = _spec(featurized_dir)
    pattern = layout.transformed("train") + "-*"
    clicked = data.scan_column(pattern, spec, "item_id", keep_if="click").size
    batches = list(data.make_dataset(pattern, spec, CVR, 8, training=True, seed=1,
                                     registry=shop.REGISTRY, extra_labels=("click",),
                                     keep_if="click"))
    assert len(batches) == clicked // 8
    for features, labels in batches:
        assert set(labels) == {"cvr", "click"} and "click" not in features
        assert labels["click"].shape == [8] and np.all(labels["click"].numpy() == 1.0)


def test_a_label_that_is_an_input_stays_an_input():
    parsed = {"item_category": tf.constant([2]), "click": tf.constant([1.0])}
    tasks = (TaskConfig("category", "item_category", type="multiclass"),)
    features, labels = data.split_labels(parsed, tasks, shop.REGISTRY, extra_labels=("click",))
    assert set(features) == {"item_category"} and set(labels) == {"category", "click"}


def test_an_extra_label_may_not_shadow_a_task():
    parsed = {"click": tf.constant([1.0]), "conversion": tf.constant([0.0])}
    with pytest.raises(ValueError, match="clashes"):
        data.split_labels(parsed, (TaskConfig("click", "conversion"),), shop.REGISTRY,
                          extra_labels=("click",))
