"""Evaluation metrics, computed in numpy over the whole eval split.

Computing them outside the distributed training loop keeps them exact:
streaming Keras AUC is approximate (thresholded) and is wrong under
MultiWorkerMirroredStrategy (tensorflow/tensorflow#48152).
"""

from __future__ import annotations

import math
from typing import Dict, Iterable

import numpy as np

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf

from shoprec.config import TaskConfig

# Same clipping Keras applies, so log loss here matches training's loss.
_EPSILON = 1e-7


def auc(labels, scores) -> float:
    """Area under the ROC curve via the rank-sum (Mann-Whitney U) statistic.

    Tied scores get the average of the ranks they span, i.e. a tied
    positive/negative pair counts one half.

    Args:
        labels: 0/1 array.
        scores: Array of the same length; any monotone score works.

    Returns:
        AUC in [0, 1], or nan when only one class is present.
    """
    labels = np.asarray(labels, dtype=np.float64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    positives = labels > 0.5
    n_pos = int(positives.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # 1-based rank of each distinct score = ranks before it + mean of the ones it spans.
    average_rank = np.cumsum(counts) - counts + (counts + 1) / 2.0
    ranks = average_rank[inverse]
    rank_sum = ranks[positives].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(labels, probs) -> float:
    """Mean binary cross-entropy of probabilities (clipped away from 0 and 1).

    Returns:
        The mean loss, or nan for empty input.
    """
    labels = np.asarray(labels, dtype=np.float64).ravel()
    probs = np.clip(np.asarray(probs, dtype=np.float64).ravel(), _EPSILON, 1.0 - _EPSILON)
    if labels.shape != probs.shape:
        raise ValueError(f"labels {labels.shape} and probs {probs.shape} differ in shape")
    if labels.size == 0:
        return math.nan
    return float(-np.mean(labels * np.log(probs) + (1.0 - labels) * np.log(1.0 - probs)))


def predict(model, dataset: tf.data.Dataset, task_names: Iterable[str]):
    """Runs ``model`` over every batch of ``(features, labels)``.

    Returns:
        ({task: labels}, {task: probabilities}) as 1-D numpy arrays, aligned.
    """
    task_names = tuple(task_names)

    @tf.function
    def probabilities(features):
        logits = model(features, training=False)
        return {name: tf.sigmoid(logits[name]) for name in task_names}

    labels = {name: [] for name in task_names}
    probs = {name: [] for name in task_names}
    for features, batch_labels in dataset:
        batch_probs = probabilities(features)
        for name in task_names:
            labels[name].append(batch_labels[name].numpy())
            probs[name].append(batch_probs[name].numpy())
    return ({n: _concat(labels[n]) for n in task_names},
            {n: _concat(probs[n]) for n in task_names})


def _concat(parts: list) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros([0], np.float32)


def evaluate(model, dataset: tf.data.Dataset, tasks: Iterable[TaskConfig]) -> Dict[str, object]:
    """Per-task AUC, log loss, positive rate and mean prediction over ``dataset``.

    Args:
        model: Maps transformed features to ``{task name: logit}``.
        dataset: Finite ``(features, {task name: label})`` batches, e.g. the
            eval split from ``trainer.data.make_dataset(training=False)``.
        tasks: Tasks to report.

    Returns:
        ``{task: {'auc', 'log_loss', 'positive_rate', 'mean_prediction'},
        'examples': n}``; rates are nan when there are no examples.
    """
    names = [t.name for t in tasks]
    labels, probs = predict(model, dataset, names)
    result: Dict[str, object] = {}
    for name in names:
        y, p = labels[name], probs[name]
        result[name] = {
            "auc": auc(y, p),
            "log_loss": log_loss(y, p),
            "positive_rate": float(np.mean(y)) if y.size else math.nan,
            "mean_prediction": float(np.mean(p)) if p.size else math.nan,
        }
    result["examples"] = int(labels[names[0]].size) if names else 0
    return result
