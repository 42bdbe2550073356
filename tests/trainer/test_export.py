"""Serving parity: raw examples through the SavedModel vs transformed examples
through the model, for the same rows."""

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from pipelines import examples
from shoprec.core import generated_shop as shop
from shoprec.core.layout import Layout
from tests.trainer.synthetic import NUM_EVAL, SMALL_MODEL, make_rows
from trainer import data, export, model as model_lib

TASKS = SMALL_MODEL.tasks


def test_raw_and_transformed_paths_agree(featurized_dir, tmp_path):
    layout = Layout(featurized_dir)
    tft_output = tft.TFTransformOutput(layout.transform_dir)
    tf.keras.utils.set_random_seed(11)
    model = model_lib.build_model(SMALL_MODEL, tft_output, 16, registry=shop.REGISTRY)
    # A few steps move the outputs away from their near-0.5 initial values.
    model.compile(optimizer=tf.keras.optimizers.Adam(0.05))
    model.fit(data.make_dataset(layout.transformed("train") + "-*",
                                tft_output.transformed_feature_spec(), TASKS, 16, training=True,
                                seed=1, registry=shop.REGISTRY),
              epochs=1, verbose=0)
    export_dir = export.export(model, tft_output, [t.name for t in TASKS], str(tmp_path / "model"),
                               registry=shop.REGISTRY)

    # Transformed eval rows as featurize wrote them, through the model itself.
    dataset = data.make_dataset(layout.transformed("eval") + "-*",
                                tft_output.transformed_feature_spec(), TASKS, 16, training=False,
                                registry=shop.REGISTRY)
    direct = {t.name: [] for t in TASKS}
    prices = []
    for features, _ in dataset:
        logits = model(features)
        prices.append(features["item_price"].numpy())
        for t in TASKS:
            direct[t.name].append(tf.sigmoid(logits[t.name]).numpy())

    # The same rows as raw examples without labels, through the signature.
    rows = make_rows(NUM_EVAL, seed=2)  # what the fixture wrote as raw eval examples
    names = shop.REGISTRY.example_names(include_labels=False)
    raw = [examples.encode(r, names, shop.REGISTRY) for r in rows]
    serve = tf.saved_model.load(export_dir).signatures[export.SIGNATURE]
    served = serve(examples=tf.constant(raw))

    # Featurize may reorder rows; prices are distinct and their transform is
    # monotone, so sorting both sides by price aligns them.
    direct_order = np.argsort(np.concatenate(prices))
    raw_order = np.argsort([r["item_price"] for r in rows])
    assert len(direct_order) == len(raw_order) == NUM_EVAL
    for t in TASKS:
        assert np.std(np.concatenate(direct[t.name])) > 0.01  # parity is not trivial
        np.testing.assert_allclose(served[export.output_name(t.name)].numpy()[raw_order],
                                   np.concatenate(direct[t.name])[direct_order], atol=1e-5)


def test_the_columns_signature_serves_what_the_examples_signature_serves(featurized_dir,
                                                                         tmp_path):
    layout = Layout(featurized_dir)
    tft_output = tft.TFTransformOutput(layout.transform_dir)
    tf.keras.utils.set_random_seed(3)
    model = model_lib.build_model(SMALL_MODEL, tft_output, 16, registry=shop.REGISTRY)
    export_dir = export.export(model, tft_output, [t.name for t in TASKS], str(tmp_path / "m"),
                               registry=shop.REGISTRY)
    signatures = tf.saved_model.load(export_dir).signatures
    rows = make_rows(NUM_EVAL, seed=2)
    names = shop.REGISTRY.example_names(include_labels=False)
    by_examples = signatures[export.SIGNATURE](examples=tf.constant(
        [examples.encode(r, names, shop.REGISTRY) for r in rows]))
    # One tensor per raw feature: the photo embedding [N, width], the rest [N].
    columns = {spec.name: tf.constant([r[spec.name] for r in rows], spec.dtype)
               for spec in export.column_specs(shop.REGISTRY)}
    assert columns["item_image_embedding"].shape == (NUM_EVAL, 32)
    by_columns = signatures[export.COLUMNS_SIGNATURE](**columns)
    assert by_columns.keys() == by_examples.keys() == {"p_click", "p_conversion"}
    for name in by_examples:
        np.testing.assert_array_equal(by_columns[name].numpy(), by_examples[name].numpy())
