"""Exact evaluation over the whole eval split, in numpy.

Computed outside the distributed training loop: Keras' streaming AUC is
approximate (thresholded) and wrong under MultiWorkerMirroredStrategy
(tensorflow/tensorflow#48152), and GAUC and Recall@K need every example.

Per task, by type:

- binary: AUC, GAUC (per-user AUC weighted by the user's impressions),
  log loss, calibration (mean prediction / positive rate); with a
  ``threshold``, precision and recall at it;
- regression: RMSE, calibration (mean prediction / mean label);
- multiclass: accuracy, top-3 accuracy, NDCG@3 over the classes, macro-F1
  and log loss.

A task with a ``condition`` is evaluated only where its condition label is 1;
a task with a ``holdout`` only on its held-out rows (the keys whose labels it
never trained on).
ESMM's CVR output is evaluated like a binary task on the clicked examples
against the CTCVR label (conversion given click). Retrieval reports Recall@K
of every positive eval pair against the catalogue of distinct eval items.

:func:`evaluate_export` judges an exported model the way scoring uses it: raw
examples through its serving signature (its own transform graph), so two
models trained on different days' vocabularies are compared on the same
examples (the model gate, ``trainer.gate``).
"""

from __future__ import annotations

import math
import weakref
from typing import Dict, Iterable, Mapping, Optional

import numpy as np

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf

from shoprec.core import registry as F
from shoprec.core.errors import InputEmptyError
from shoprec.core.model_config import ModelConfig, TaskConfig
from trainer import export, metrics, retrieval as retrieval_lib
from transforms import holdout as holdout_lib


def label_columns(model_config: ModelConfig) -> tuple:
    """0/1 label columns evaluation and training need beside the task labels:
    conditions, hold-out masks, retrieval positives."""
    extra = {t.condition for t in model_config.tasks if t.condition}
    extra |= {t.holdout for t in model_config.tasks if t.holdout}
    if model_config.retrieval.enabled:
        extra.add(model_config.retrieval.positive_label)
    return tuple(sorted(extra))


def collect(model, dataset: tf.data.Dataset, user_key: str, item_key: str,
            extra_keys: Iterable[str] = ()) -> Dict[str, Dict[str, np.ndarray]]:
    """Runs ``model`` over every batch and gathers what evaluation needs.

    Args:
        model: A ``trainer.model.MultiTaskModel``.
        dataset: Finite ``(features, labels)`` batches.
        user_key: Feature grouping GAUC (the user id index).
        item_key: Feature identifying retrieval candidates (the item id index).
        extra_keys: Further input features to keep per example under
            ``keys`` by their own name (the report's slices, e.g. the item
            category index).

    Returns:
        ``{'predictions': {output: [n, ...]}, 'labels': {column: [n]},
        'keys': {'user': [n], 'item': [n], <extra key>: [n]},
        'embeddings': {'query', 'candidate'}}``; embeddings are empty without
        a retrieval task.
    """
    step = _step(model)
    parts: Dict[str, Dict[str, list]] = {"predictions": {}, "labels": {}, "keys": {},
                                         "embeddings": {}}
    for features, labels in dataset:
        out = step(features)
        for name, value in out["predictions"].items():
            parts["predictions"].setdefault(name, []).append(value.numpy())
        for name, value in labels.items():
            parts["labels"].setdefault(name, []).append(value.numpy())
        parts["keys"].setdefault("user", []).append(features[user_key].numpy())
        parts["keys"].setdefault("item", []).append(features[item_key].numpy())
        for name in extra_keys:
            parts["keys"].setdefault(name, []).append(features[name].numpy())
        for side in ("query", "candidate"):
            if side in out:
                parts["embeddings"].setdefault(side, []).append(out[side].numpy())
    return {group: {k: np.concatenate(v) for k, v in values.items()}
            for group, values in parts.items()}


# One traced step per model: evaluation runs after every epoch, and a fresh
# tf.function per call would trace the model again each time.
_STEPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _step(model):
    """The model's compiled prediction step (traced once per model, not per call)."""
    if model in _STEPS:
        return _STEPS[model]
    with_embeddings = getattr(model, "retrieval", None) is not None
    # A weak reference: the cached step must not keep its own key alive.
    owner = weakref.ref(model)

    # reduce_retracing: the last, partial batch has another size.
    @tf.function(reduce_retracing=True)
    def step(features):
        current = owner()
        out = {"predictions": current.predictions(features)}
        if with_embeddings:
            out["query"] = current.user_embedding(features)
            out["candidate"] = current.item_embedding(features)
        return out

    _STEPS[model] = step
    return step


def binary_metrics(labels, probabilities, users) -> Dict[str, float]:
    """AUC, GAUC, log loss, calibration, positive rate, mean prediction, examples."""
    labels = np.asarray(labels, np.float64)
    probabilities = np.asarray(probabilities, np.float64)
    return {
        "auc": metrics.auc(labels, probabilities),
        "gauc": metrics.gauc(labels, probabilities, users),
        "log_loss": metrics.log_loss(labels, probabilities),
        "calibration": metrics.calibration(labels, probabilities),
        "positive_rate": float(labels.mean()) if labels.size else math.nan,
        "mean_prediction": float(probabilities.mean()) if labels.size else math.nan,
        "examples": int(labels.size),
    }


def with_threshold(values: Dict[str, float], task: TaskConfig, labels, probabilities
                   ) -> Dict[str, float]:
    """``values`` plus precision and recall at the task's threshold, when it has one."""
    if task.threshold is None:
        return values
    return dict(values, threshold=float(task.threshold),
                **metrics.precision_recall(labels, probabilities, task.threshold))


def multiclass_metrics(labels, probabilities) -> Dict[str, float]:
    """Accuracy, top-3 accuracy, NDCG@3 over classes, macro-F1, log loss, examples."""
    return {"accuracy": metrics.accuracy(labels, probabilities),
            "top_3_accuracy": metrics.top_k_accuracy(labels, probabilities, 3),
            "ndcg_at_3": metrics.class_ndcg_at_k(labels, probabilities, 3),
            "macro_f1": metrics.macro_f1(labels, probabilities),
            "log_loss": metrics.multiclass_log_loss(labels, probabilities),
            "examples": int(np.asarray(labels).size)}


def task_metrics(task: TaskConfig, labels, predictions, users) -> Dict[str, float]:
    """The metrics of one task's type (see the module docstring)."""
    if task.type == "binary":
        return with_threshold(binary_metrics(labels, predictions, users), task, labels,
                              predictions)
    if task.type == "regression":
        labels = np.asarray(labels, np.float64)
        mean_label = float(labels.mean()) if labels.size else math.nan
        return {"rmse": metrics.rmse(labels, predictions),
                "calibration": (float(np.mean(predictions)) / mean_label
                                if labels.size and mean_label else math.nan),
                "mean_label": mean_label, "examples": int(labels.size)}
    return multiclass_metrics(labels, predictions)


def evaluate(model, dataset: tf.data.Dataset, model_config: ModelConfig, user_key: str,
             item_key: str) -> Dict[str, object]:
    """Every task's metrics, ESMM's CVR and retrieval Recall@K over ``dataset``.

    Args:
        model: A ``trainer.model.MultiTaskModel``.
        dataset: The eval split with task labels and :func:`label_columns`.
        model_config: The model's config (tasks, ESMM and retrieval settings).
        user_key: User id feature (GAUC groups, retrieval queries).
        item_key: Item id feature (retrieval candidates).

    Returns:
        ``{'tasks': {name: metrics}, 'retrieval': {'recall_at_<k>', 'pairs',
        'candidates'} or None, 'examples': n}``.
    """
    return evaluate_collected(collect(model, dataset, user_key, item_key), model_config)


def binary_outputs(data: Mapping[str, Mapping[str, np.ndarray]], model_config: ModelConfig
                   ) -> Dict[str, tuple]:
    """``{output: (labels, probabilities, kept rows)}`` of every binary output.

    The examples each binary output is judged on: a task's own (where its
    condition holds), and ESMM's CVR on the clicked examples against the
    CTCVR label. :func:`evaluate_collected` and the report's curves and slices
    (``trainer.diagnostics``) both take them from here.
    """
    labels, predictions = data["labels"], data["predictions"]
    n = int(data["keys"]["user"].size)
    out = {}
    for task in model_config.tasks:
        if task.type == "binary":
            keep = rows(labels, task, n)
            out[task.name] = (labels[task.name][keep], predictions[task.name][keep], keep)
    if model_config.architecture == "esmm":
        esmm = model_config.esmm
        clicked = labels[esmm.ctr_task] > 0.5
        out[esmm.cvr_output] = (labels[esmm.ctcvr_task][clicked],
                                predictions[esmm.cvr_output][clicked], clicked)
    return out


def evaluate_collected(data: Mapping[str, Mapping[str, np.ndarray]],
                       model_config: ModelConfig) -> Dict[str, object]:
    """:func:`evaluate` of what :func:`collect` gathered."""
    labels, predictions, users = data["labels"], data["predictions"], data["keys"]["user"]
    n = int(users.size)
    binary = binary_outputs(data, model_config)
    tasks: Dict[str, object] = {}
    for task in model_config.tasks:
        if task.name in binary:
            got, probabilities, keep = binary[task.name]
            tasks[task.name] = with_threshold(binary_metrics(got, probabilities, users[keep]),
                                              task, got, probabilities)
            continue
        keep = rows(labels, task, n)
        tasks[task.name] = task_metrics(task, labels[task.name][keep],
                                        predictions[task.name][keep], users[keep])
    for name in set(binary) - set(tasks):
        got, probabilities, keep = binary[name]
        tasks[name] = binary_metrics(got, probabilities, users[keep])
    result: Dict[str, object] = {"tasks": tasks, "retrieval": None, "examples": n}
    if data["embeddings"]:
        result["retrieval"] = recall(data, model_config.retrieval.positive_label,
                                     model_config.retrieval.recall_at)
    return result


def evaluate_export(model_dir: str, pattern: str, tasks: Iterable[TaskConfig],
                    registry: F.Registry, batch_size: int = 1024) -> Dict[str, Dict[str, float]]:
    """Binary tasks' metrics of an exported model on raw examples, as scoring would see them.

    Args:
        model_dir: A SavedModel written by ``trainer.export``.
        pattern: Gzip TFRecord shards of raw tf.Examples with their labels
            (ingest's eval split).
        tasks: The tasks to evaluate; only binary ones are (their labels are
            raw 0/1 columns), and only those the model has an output for (an
            older model may lack a task added since); a task with a
            ``condition`` only where it is 1, one with a ``holdout`` on its
            held-out keys only.
        registry: The run's feature registry (user key, label columns).
        batch_size: Examples per serving call.

    Returns:
        ``{task name: binary_metrics}``.

    Raises:
        InputEmptyError: no examples match ``pattern``.
    """
    serve = tf.saved_model.load(model_dir).signatures[export.SIGNATURE]
    tasks = [t for t in tasks if t.type == "binary"
             and export.output_name(t.name) in serve.structured_outputs]
    spec = {registry.user_key: tf.io.FixedLenFeature([], tf.string)}
    for column in {t.label for t in tasks} | {t.condition for t in tasks if t.condition}:
        spec[column] = tf.io.FixedLenFeature([], tf.int64)
    # A hold-out mask is no raw column: it is recomputed from its raw key.
    holdouts = {registry[t.holdout] for t in tasks if t.holdout}
    for key in {h.derived_from[0] for h in holdouts}:
        spec[key] = tf.io.FixedLenFeature([], tf.string)
    files = sorted(tf.io.gfile.glob(pattern))
    parts: Dict[str, list] = {}
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(batch_size):
        served = serve(examples=batch)
        parsed = tf.io.parse_example(batch, spec)
        for task in tasks:
            parts.setdefault(f"p/{task.name}", []).append(
                served[export.output_name(task.name)].numpy())
        for column, value in parsed.items():
            parts.setdefault(column, []).append(value.numpy())
        for h in holdouts:
            parts.setdefault(h.name, []).append(
                holdout_lib.held_out(parsed[h.derived_from[0]], h.fraction).numpy())
    if not parts:
        raise InputEmptyError(f"no eval examples at {pattern}; run `shoprec ingest` again")
    data = {k: np.concatenate(v) for k, v in parts.items()}
    users = np.unique(data[registry.user_key], return_inverse=True)[1]
    out = {}
    for task in tasks:
        keep = rows(data, task, users.size)
        out[task.name] = binary_metrics(data[task.label][keep], data[f"p/{task.name}"][keep],
                                        users[keep])
    return out


def recall(data: Mapping[str, Mapping[str, np.ndarray]], positive_label: str,
           ks: Iterable[int]) -> Dict[str, float]:
    """Recall@K of positive pairs against the distinct items of the same data."""
    ids, candidates = retrieval_lib.catalogue(data["keys"]["item"],
                                              data["embeddings"]["candidate"])
    positive = data["labels"][positive_label] > 0.5
    true_rows = np.searchsorted(ids, data["keys"]["item"][positive])
    out = metrics.recall_at_k(data["embeddings"]["query"][positive], candidates, true_rows, ks)
    out.update(pairs=int(positive.sum()), candidates=int(ids.size))
    return out


def rows(labels: Mapping[str, np.ndarray], task: TaskConfig, n: int) -> np.ndarray:
    """Boolean [n]: the examples ``task`` is judged on (its condition holds, and
    they are held out when the task has a ``holdout``)."""
    keep = _where(labels, task.condition, n)
    if task.holdout:
        keep &= labels[task.holdout] > 0.5
    return keep


def _where(labels: Mapping[str, np.ndarray], condition: Optional[str], n: int) -> np.ndarray:
    if condition is None:
        return np.ones(n, bool)
    return labels[condition] > 0.5
