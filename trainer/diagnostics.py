"""Curves, slices and a popularity baseline of the final model, for the run report.

Computed by the train stage from the very arrays its ``metrics.json`` comes
from (``trainer.evaluation.binary_outputs``), and written beside it, so the
report (``shoprec report``) draws them without recomputing a number the CLI
printed. Per binary output and split:

- ROC and precision-recall points (at most :data:`CURVE_POINTS` thresholds);
- a reliability table: :data:`CALIBRATION_BINS` equal-width bins of the
  predicted probability with their mean prediction, positive rate and count;
- score histograms of positives and of negatives;
- AUC per slice with a bootstrap 95% interval (:data:`BOOTSTRAP_SAMPLES`
  resamples of the slice's examples): user activity (``new``: no train
  example; ``light`` / ``heavy``: at most / above the median train examples
  per train user), the first categorical item feature, and ``known`` vs
  ``cold`` items and users (no train example; a cold user is activity's
  ``new``);
- the same binary metrics for a popularity baseline: an example's score is
  its item's positives of that label in train.
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from trainer import evaluation, metrics

CURVE_POINTS = 200
CALIBRATION_BINS = 10
HISTOGRAM_BINS = 20
BOOTSTRAP_SAMPLES = 200
# Interval of the bootstrap: the middle 95% of the resampled AUCs.
INTERVAL = (2.5, 97.5)


def _thin(values: np.ndarray, points: int) -> np.ndarray:
    """Indices of at most ``points`` evenly spaced entries, first and last kept."""
    if values.size <= points:
        return np.arange(values.size)
    return np.unique(np.linspace(0, values.size - 1, points).round().astype(int))


def _sorted_counts(labels, scores):
    """Cumulative true / false positives at each distinct score, highest first."""
    labels = np.asarray(labels, np.float64).ravel() > 0.5
    scores = np.asarray(scores, np.float64).ravel()
    order = np.argsort(-scores, kind="stable")
    labels, scores = labels[order], scores[order]
    # The last index of each run of tied scores: a threshold admits all ties at once.
    last = np.r_[np.nonzero(np.diff(scores))[0], scores.size - 1]
    tp = np.cumsum(labels)[last]
    fp = (last + 1) - tp
    return tp.astype(np.float64), fp.astype(np.float64), scores[last]


def roc_points(labels, scores, points: int = CURVE_POINTS) -> Dict[str, list]:
    """``{'fpr', 'tpr'}`` from (0, 0) to (1, 1); empty when a class is missing."""
    tp, fp, _ = _sorted_counts(labels, scores)
    if tp.size == 0 or tp[-1] == 0 or fp[-1] == 0:
        return {"fpr": [], "tpr": []}
    fpr, tpr = np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]]
    keep = _thin(fpr, points)
    return {"fpr": fpr[keep].round(5).tolist(), "tpr": tpr[keep].round(5).tolist()}


def pr_points(labels, scores, points: int = CURVE_POINTS) -> Dict[str, list]:
    """``{'recall', 'precision'}`` over thresholds, highest score first."""
    tp, fp, _ = _sorted_counts(labels, scores)
    if tp.size == 0 or tp[-1] == 0:
        return {"recall": [], "precision": []}
    recall, precision = tp / tp[-1], tp / (tp + fp)
    keep = _thin(recall, points)
    return {"recall": recall[keep].round(5).tolist(),
            "precision": precision[keep].round(5).tolist()}


def reliability(labels, probabilities, bins: int = CALIBRATION_BINS) -> Dict[str, list]:
    """Equal-width probability bins: mean prediction, positive rate and count of each.

    An empty bin has ``None`` for its mean prediction and positive rate.
    """
    labels = np.asarray(labels, np.float64).ravel()
    probabilities = np.clip(np.asarray(probabilities, np.float64).ravel(), 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.minimum((probabilities * bins).astype(int), bins - 1)
    count = np.bincount(index, minlength=bins)
    sum_p = np.bincount(index, probabilities, minlength=bins)
    sum_y = np.bincount(index, labels, minlength=bins)
    nonempty = count > 0
    mean_p = [round(float(v), 6) if ok else None
              for v, ok in zip(sum_p / np.maximum(count, 1), nonempty)]
    rate = [round(float(v), 6) if ok else None
            for v, ok in zip(sum_y / np.maximum(count, 1), nonempty)]
    return {"edges": edges.round(6).tolist(), "mean_prediction": mean_p,
            "positive_rate": rate, "count": count.astype(int).tolist()}


def histograms(labels, probabilities, bins: int = HISTOGRAM_BINS) -> Dict[str, list]:
    """Counts of positives' and negatives' predictions over equal-width bins of [0, max]."""
    labels = np.asarray(labels, np.float64).ravel() > 0.5
    probabilities = np.asarray(probabilities, np.float64).ravel()
    top = float(probabilities.max()) if probabilities.size else 1.0
    edges = np.linspace(0.0, top if top > 0 else 1.0, bins + 1)
    positive, _ = np.histogram(probabilities[labels], edges)
    negative, _ = np.histogram(probabilities[~labels], edges)
    return {"edges": edges.round(6).tolist(), "positive": positive.tolist(),
            "negative": negative.tolist()}


def bootstrap_auc(labels, scores, rng: np.random.Generator,
                  samples: int = BOOTSTRAP_SAMPLES) -> Optional[tuple]:
    """(low, high) of the middle 95% of AUCs over resamples; None when AUC is undefined."""
    labels = np.asarray(labels, np.float64).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    values = []
    for _ in range(samples):
        pick = rng.integers(0, labels.size, labels.size)
        value = metrics.auc(labels[pick], scores[pick])
        if not math.isnan(value):
            values.append(value)
    if not values:
        return None
    low, high = np.percentile(values, INTERVAL)
    return float(low), float(high)


def slice_aucs(labels, scores, groups: np.ndarray, rng: np.random.Generator,
               order: Optional[Sequence[str]] = None) -> list:
    """One row per slice value: examples, positives, AUC and its bootstrap interval.

    Args:
        labels: 0/1 per example.
        scores: The model's probability per example.
        groups: The slice value (a string) per example.
        rng: Draws the bootstrap resamples.
        order: Slice values in the order to list them (default: sorted); a
            listed value without examples still gets a row with 0 examples.
    """
    labels = np.asarray(labels, np.float64).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    values = list(order) if order is not None else sorted(set(groups.tolist()))
    rows = []
    for value in values:
        mask = groups == value
        auc = metrics.auc(labels[mask], scores[mask]) if mask.any() else math.nan
        interval = bootstrap_auc(labels[mask], scores[mask], rng) if not math.isnan(auc) else None
        rows.append({"value": str(value), "examples": int(mask.sum()),
                     "positives": int(labels[mask].sum()),
                     "auc": None if math.isnan(auc) else auc,
                     "auc_low": interval[0] if interval else None,
                     "auc_high": interval[1] if interval else None})
    return rows


def activity(users: np.ndarray, train_users: np.ndarray) -> tuple:
    """(bucket per example: new / light / heavy, the light bucket's upper bound).

    A user's activity is their number of train examples; ``light`` is at most
    the median over users with any, ``heavy`` above it.
    """
    ids, counts = np.unique(train_users, return_counts=True)
    if ids.size == 0:
        return np.full(users.size, "new"), 0.0
    median = float(np.median(counts))
    position = np.clip(np.searchsorted(ids, users), 0, ids.size - 1)
    count = np.where(ids[position] == users, counts[position], 0)
    bucket = np.where(count == 0, "new", np.where(count <= median, "light", "heavy"))
    return bucket, median


def item_positives(items: np.ndarray, train_items: np.ndarray,
                   train_labels: np.ndarray) -> np.ndarray:
    """Each item's positives in train (0 for an item train lacks): the popularity score."""
    positive = train_items[np.asarray(train_labels, np.float64) > 0.5]
    ids, counts = np.unique(positive, return_counts=True)
    if ids.size == 0:
        return np.zeros(items.size)
    position = np.clip(np.searchsorted(ids, items), 0, ids.size - 1)
    return np.where(ids[position] == items, counts[position], 0).astype(np.float64)


def diagnose(data: Mapping[str, Mapping[str, np.ndarray]], model_config,
             train: Mapping[str, np.ndarray], category: Optional[str] = None,
             category_names: Sequence[str] = (), seed: int = 0) -> Dict[str, dict]:
    """Every binary output's curves, slices and popularity baseline on one split.

    Args:
        data: ``trainer.evaluation.collect``'s result for the split (with the
            ``category`` key when given).
        model_config: The model's config.
        train: Train-split columns: ``user``, ``item`` and every label column
            the binary outputs are judged on.
        category: Key of the categorical item feature to slice by (None: no
            category slice).
        category_names: The category vocabulary (index -> token); an index
            past its end is an out-of-vocabulary bucket, shown as ``(oov)``.
        seed: Seeds the bootstrap.

    Returns:
        ``{output: {'roc', 'pr', 'reliability', 'histogram', 'slices':
        {'activity', 'category', 'item', 'user'}, 'baselines': {'popularity': metrics}}}``
        and ``'_slices'``: how the slices are defined.
    """
    rng = np.random.default_rng(seed)
    users, items = data["keys"]["user"], data["keys"]["item"]
    bucket, median = activity(users, train["user"])
    known = np.isin(items, train["item"])
    status = np.where(known, "known", "cold")
    user_status = np.where(bucket == "new", "cold", "known")
    categories = None
    if category is not None:
        names = list(category_names)
        categories = np.array([names[i] if 0 <= i < len(names) else "(oov)"
                               for i in data["keys"][category].astype(int).tolist()])
    label_of = _label_columns(model_config)
    out: Dict[str, dict] = {}
    for name, (labels, probabilities, keep) in evaluation.binary_outputs(
            data, model_config).items():
        slices = {
            "activity": slice_aucs(labels, probabilities, bucket[keep], rng,
                                   order=("new", "light", "heavy")),
            "item": slice_aucs(labels, probabilities, status[keep], rng,
                               order=("known", "cold")),
            "user": slice_aucs(labels, probabilities, user_status[keep], rng,
                               order=("known", "cold")),
        }
        if categories is not None:
            slices["category"] = slice_aucs(labels, probabilities, categories[keep], rng)
        popularity = item_positives(items[keep], train["item"], train[label_of[name]])
        out[name] = {
            "roc": roc_points(labels, probabilities),
            "pr": pr_points(labels, probabilities),
            "reliability": reliability(labels, probabilities),
            "histogram": histograms(labels, probabilities),
            "slices": slices,
            "baselines": {"popularity": {"auc": metrics.auc(labels, popularity),
                                         "gauc": metrics.gauc(labels, popularity, users[keep])}},
        }
    out["_slices"] = {"activity_light_max_train_examples": median, "category": category}
    return out


def _label_columns(model_config) -> Dict[str, str]:
    """The label column each binary output's popularity baseline counts."""
    out = {t.name: t.label for t in model_config.tasks}
    if model_config.architecture == "esmm":
        esmm = model_config.esmm
        out[esmm.cvr_output] = next(t.label for t in model_config.tasks
                                    if t.name == esmm.ctcvr_task)
    return out
