"""One SavedModel load per process and version; signature names without a load."""

import tensorflow as tf

from pipelines import inference


def _export(path, scale):
    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def double(self, x):
            return {"y": x * scale}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def negate(self, x):
            return {"y": -x}

    model = Model()
    tf.saved_model.save(model, str(path), signatures={"double": model.double,
                                                      "negate": model.negate})


def test_signature_names_are_read_without_loading(tmp_path):
    _export(tmp_path / "m", 2.0)
    assert inference.signature_names(str(tmp_path / "m")) == ["double", "negate"]


def test_a_model_loads_once_and_a_re_export_is_loaded_again(tmp_path):
    path = str(tmp_path / "m")
    _export(path, 2.0)
    first = inference.saved_model(path)
    assert inference.saved_model(path) is first
    assert float(first.signatures["double"](x=tf.constant([1.5]))["y"][0]) == 3.0
    # A re-export in the same folder, within the same second: a new file.
    _export(path, 3.0)
    second = inference.saved_model(path)
    assert second is not first
    assert float(second.signatures["double"](x=tf.constant([1.5]))["y"][0]) == 4.5
