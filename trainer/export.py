"""Exports the trained model as a SavedModel that scores raw tf.Examples.

The serving signature parses raw examples (the bytes ingest and scoring both
build with ``pipelines.examples``), applies the TFT transform graph and runs
the model, so a scorer never re-implements featurization. The TFT layer is an
attribute of the exported module, which makes the transform graph and its
vocabulary assets part of the SavedModel.

``serving_columns`` serves the same outputs from the same raw values fed as
columns, one tensor per raw feature (a list feature, e.g. a history, as its
flat values and ``<name>__lengths``): a scorer that already holds its rows
as arrays skips building and parsing tf.Examples. Both signatures apply the
one transform graph to the same values, so their outputs are identical.

With a retrieval task, two more signatures serve candidate generation:
``user_embedding`` and ``item_embedding`` take raw examples that need carry
only that side's features (a user row, an item row) and return unit-norm
embeddings whose dot product is the retrieval score.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Sequence

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf

from shoprec.core import registry as F
from shoprec.io.outputs import clear
from trainer import strategy as strategy_lib

SIGNATURE = "serving_default"
COLUMNS_SIGNATURE = "serving_columns"
USER_EMBEDDING = "user_embedding"
ITEM_EMBEDDING = "item_embedding"
INPUT_NAME = "examples"
EMBEDDING_OUTPUT = "embedding"
_EXAMPLES = tf.TensorSpec([None], tf.string, name=INPUT_NAME)


def output_name(task_name: str) -> str:
    """Signature output key holding a task's prediction."""
    return f"p_{task_name}"


def column_specs(registry: F.Registry) -> List[tf.TensorSpec]:
    """The inputs of ``serving_columns``, in name order: ``[batch]`` (or ``[batch, width]``)
    per fixed-length raw feature, a list feature's flat values and ``<name>__lengths``."""
    specs = []
    for name, spec in sorted(registry.raw_feature_spec(include_labels=False).items()):
        if isinstance(spec, tf.io.VarLenFeature):
            specs += [tf.TensorSpec([None], spec.dtype, name=name),
                      tf.TensorSpec([None], tf.int64, name=name + F.LENGTHS_SUFFIX)]
        else:
            specs.append(tf.TensorSpec([None] + list(spec.shape), spec.dtype, name=name))
    return specs


def column_features(columns: Mapping[str, tf.Tensor], registry: F.Registry
                    ) -> Dict[str, object]:
    """``serving_columns``' inputs as ``tf.io.parse_example`` gives the raw features:
    a list feature a SparseTensor ``[batch, longest]``."""
    out = {}
    for name, spec in registry.raw_feature_spec(include_labels=False).items():
        if isinstance(spec, tf.io.VarLenFeature):
            out[name] = tf.RaggedTensor.from_row_lengths(
                columns[name], columns[name + F.LENGTHS_SUFFIX]).to_sparse()
        else:
            out[name] = columns[name]
    return out


class ServingModule(tf.Module):
    """Raw serialized tf.Examples in, every output's prediction out.

    Args:
        model: A ``trainer.model.MultiTaskModel``.
        tft_output: ``tft.TFTransformOutput`` the model was trained on.
        task_names: Outputs to expose, each as ``p_<name>``: a probability
            (binary, ESMM's CVR), a value (regression) or class probabilities
            ``[batch, C]`` (multiclass).
        registry: The run's feature registry (the raw examples' parse spec).
    """

    def __init__(self, model: tf.keras.Model, tft_output, task_names: Sequence[str],
                 registry: F.Registry):
        super().__init__(name="shoprec_serving")
        self._registry = registry
        self.model = model
        # Tracked so that saving captures the transform graph and its assets.
        self.tft_layer = tft_output.transform_features_layer()
        self._task_names = tuple(task_names)
        specs = column_specs(registry)
        names = [spec.name for spec in specs]
        self.serve_columns = tf.function(
            lambda *tensors: self._serve_columns(dict(zip(names, tensors))),
            input_signature=specs)
        if getattr(model, "retrieval", None) is not None:
            # Only a model with towers gets these, so saving never traces them without.
            self.user_embedding = tf.function(self._user_embedding, input_signature=[_EXAMPLES])
            self.item_embedding = tf.function(self._item_embedding, input_signature=[_EXAMPLES])

    def _transform(self, examples: tf.Tensor, names=None) -> Dict[str, tf.Tensor]:
        # Labels (and, for one side, the other side's features) are not parsed:
        # TFT supplies placeholders for unfed inputs and prunes what depends on them.
        spec = self._registry.raw_feature_spec(include_labels=False)
        if names is not None:
            spec = {n: spec[n] for n in names}
        return self.tft_layer(tf.io.parse_example(examples, spec))

    @tf.function(input_signature=[_EXAMPLES])
    def serve(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
        """Scores a batch of serialized raw tf.Examples (labels not needed).

        Returns:
            ``{'p_<name>': float32 [batch] or [batch, C]}`` for every output.
        """
        return self._outputs(self._transform(examples))

    def _serve_columns(self, columns: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """Scores a batch of raw feature columns (:func:`column_specs`)."""
        return self._outputs(self.tft_layer(column_features(columns, self._registry)))

    def _outputs(self, transformed: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        predictions = self.model.predictions(transformed)
        return {output_name(name): tf.cast(predictions[name], tf.float32)
                for name in self._task_names}

    def _user_embedding(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
        transformed = self._transform(examples, self.model.user_features)
        return {EMBEDDING_OUTPUT: self.model.user_embedding(transformed)}

    def _item_embedding(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
        transformed = self._transform(examples, self.model.item_features)
        return {EMBEDDING_OUTPUT: self.model.item_embedding(transformed)}

    def signatures(self) -> Dict[str, object]:
        """Every signature to export, by name."""
        out = {SIGNATURE: self.serve, COLUMNS_SIGNATURE: self.serve_columns}
        if hasattr(self, "user_embedding"):
            out[USER_EMBEDDING] = self.user_embedding
            out[ITEM_EMBEDDING] = self.item_embedding
        return out


def export(model: tf.keras.Model, tft_output, task_names: Sequence[str], export_dir: str,
           *, registry: F.Registry, chief: bool = True) -> str:
    """Writes the serving SavedModel; every worker of a multi-worker run must call it.

    Args:
        model: Trained model.
        tft_output: ``tft.TFTransformOutput`` the model was trained on.
        task_names: Outputs to expose (``model.prediction_names`` for all).
        export_dir: Final SavedModel folder (replaced if it exists).
        chief: Whether this process owns ``export_dir``; other workers save
            to a temporary folder that is deleted afterwards.
        registry: The run's feature registry.

    Returns:
        ``export_dir``.
    """
    target, temporary = strategy_lib.write_dir(export_dir, chief)
    if not temporary:
        clear(target)
    module = ServingModule(model, tft_output, task_names, registry)
    try:
        tf.saved_model.save(module, target, signatures=module.signatures())
    finally:
        strategy_lib.discard_write_dir(target, temporary)
    return export_dir

