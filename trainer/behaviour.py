"""The image encoder's behaviour target: what shoppers do with an item, per item.

Labelled attributes cannot teach the encoder what shoppers react to that no
label names (in the generated shop, an item's fill pattern). So besides them
it regresses, from the photo, a per-item summary of the shop's behaviour
counted on the train window (``pipelines.behaviour_counts``):

* a log with impressions: per later funnel stage s (click, purchase, ...),
  the smoothed log-odds of s given an impression,
  ``logit((n_s + m * prior_s) / (n_impression + m))``, with ``prior_s`` the
  catalogue-wide ``sum n_s / sum n_impression`` and ``m`` the smoothing;
* a log without impressions (H&M: purchases only): per stage present, the
  ``log1p(n_s)`` z-scored over the teachers.

Teachers are the items with at least ``min_events`` impressions (events, in a
log without impressions); the others get loss weight 0. The loss is the mean
squared error of the teachers of a batch, over the batch (:func:`masked_mse`).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from shoprec.core.dataset import FUNNEL
from shoprec.io import tables

IMPRESSION = "impression"
# Stages a target may have a column for: 'other' is no funnel step.
STAGES = tuple(s for s in FUNNEL if s != "other")
# Rates are clipped this far inside (0, 1): a log with more clicks than
# impressions for an item would otherwise have no log-odds.
RATE_EPSILON = 1e-6

Counts = Mapping[str, Mapping[str, int]]


@dataclasses.dataclass
class Targets:
    """The behaviour head's targets for a catalogue.

    Attributes:
        columns: Target names, e.g. ``click_logodds`` or ``purchase_log1p_z``.
        values: float32 [N, C]; 0 for non-teachers.
        weight: float32 [N]: 1 for teachers, 0 for the rest.
        priors: Per stage, the catalogue-wide rate (log-odds targets) or the
            (mean, std) of ``log1p`` over the teachers (z-scored targets).
    """

    columns: List[str]
    values: np.ndarray
    weight: np.ndarray
    priors: Dict[str, object]


def read_counts(path: str) -> Dict[str, Dict[str, int]]:
    """The count job's table (``item_id`` and one column per funnel stage) as {item: {stage: n}}.

    Raises:
        ValueError: a line of the table is no row (the job wrote it, so
            that is a damaged file, not a data problem).
    """
    counts: Dict[str, Dict[str, int]] = {}
    for row in tables.read_rows(path, "csv"):
        if isinstance(row, tables.BadRow):
            raise ValueError(f"{path}: {row.reason}: {row.detail}")
        values = row[1]
        counts[str(values["item_id"])] = {s: int(values[s]) for s in FUNNEL}
    return counts


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, RATE_EPSILON, 1 - RATE_EPSILON)
    return np.log(p) - np.log1p(-p)


def targets(counts: Counts, ids: Sequence[str], min_events: int, smoothing: float) -> Targets:
    """The behaviour targets of catalogue items ``ids`` from their train-window counts.

    Args:
        counts: {item id: {funnel stage: events}} over every item of the log
            (items outside ``ids`` count towards the catalogue-wide rates).
        ids: Catalogue item ids, the targets' row order.
        min_events: Fewest impressions (events, without impressions) of a teacher.
        smoothing: ``m``, pseudo-impressions at the catalogue-wide rate.

    Returns:
        The targets; no columns when the log has no stage to learn.
    """
    totals = {s: sum(c.get(s, 0) for c in counts.values()) for s in STAGES}
    rows = [counts.get(str(i), {}) for i in ids]
    n = np.array([[r.get(s, 0) for s in STAGES] for r in rows], np.float64).reshape(-1, len(STAGES))
    column = {s: n[:, k] for k, s in enumerate(STAGES)}
    if totals[IMPRESSION] > 0:
        stages = [s for s in STAGES if s != IMPRESSION and totals[s] > 0]
        shown = column[IMPRESSION]
        weight = (shown >= min_events).astype(np.float32)
        priors = {s: totals[s] / totals[IMPRESSION] for s in stages}
        values = [_logit((column[s] + smoothing * priors[s]) / (shown + smoothing))
                  for s in stages]
        names = [f"{s}_logodds" for s in stages]
    else:
        stages = [s for s in STAGES if totals[s] > 0]
        events = sum(column[s] for s in stages) if stages else np.zeros(len(rows))
        weight = (events >= min_events).astype(np.float32)
        teachers = weight > 0
        priors, values = {}, []
        for s in stages:
            logs = np.log1p(column[s])
            mean = float(logs[teachers].mean()) if teachers.any() else 0.0
            std = float(logs[teachers].std()) if teachers.any() else 0.0
            # A stage every teacher has equally often carries nothing: all zeros.
            values.append((logs - mean) / std if std > 0 else logs * 0.0)
            priors[s] = (mean, std)
        names = [f"{s}_log1p_z" for s in stages]
    matrix = (np.stack(values, axis=1) if values else np.zeros((len(rows), 0)))
    matrix = np.where(weight[:, None] > 0, matrix, 0.0).astype(np.float32)
    return Targets(names, matrix, weight, priors)


def masked_mse(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Squared error of a batch's teachers, per batch item: non-teachers add 0.

    Divided by the batch size, not the teacher count, so the head weighs in
    proportion to the teachers' share: on H&M, where one article in 15 is a
    teacher, the teachers' mean (a handful a batch) drowned the attribute
    heads (held-out product type accuracy 0.376 without the head, 0.254
    with it).

    Args:
        y_true: [B, C + 1]: the C targets, then each item's weight (0 or 1).
        y_pred: [B, C].

    Returns:
        ``sum_b w_b * mean_c (y_bc - p_bc)^2 / B``. A non-teacher's target
        and prediction never enter.
    """
    y_true = tf.cast(y_true, y_pred.dtype)
    target, weight = y_true[:, :-1], y_true[:, -1]
    # Where a non-teacher's target is inf or NaN, w * error would be NaN.
    error = tf.where(weight[:, None] > 0, tf.square(target - y_pred), tf.zeros_like(y_pred))
    per_item = tf.reduce_mean(error, axis=1) * weight
    return tf.reduce_sum(per_item) / tf.cast(tf.shape(per_item)[0], per_item.dtype)


def regression_report(truth: np.ndarray, predicted: np.ndarray,
                      columns: Sequence[str]) -> Dict[str, Dict[str, float]]:
    """Per target column: Pearson r and R^2 of ``predicted`` on held-out teachers.

    R^2 is ``1 - SSE / SST`` with SST around the held-out mean: predicting
    that mean scores 0 (``mean_baseline_r2``), anything worse is negative.
    """
    report = {}
    for k, name in enumerate(columns):
        y, p = truth[:, k].astype(np.float64), predicted[:, k].astype(np.float64)
        sst = float(np.sum((y - y.mean()) ** 2))
        spread = float(np.std(y) * np.std(p))
        report[name] = {
            "pearson": float(np.mean((y - y.mean()) * (p - p.mean())) / spread) if spread else 0.0,
            "r2": 1.0 - float(np.sum((y - p) ** 2)) / sst if sst else 0.0,
            "mean_baseline_r2": 0.0}
    return report


def usable_columns(behaviour: Optional[Targets], train: np.ndarray
                   ) -> Tuple[List[str], Optional[str]]:
    """(columns the head learns, why none when there is a ``behaviour`` but no head).

    A log without a countable stage, or a catalogue whose training items all
    have too few events (a tiny or new shop), leaves the head nothing to learn:
    the encoder then trains on its attributes alone rather than failing.
    """
    if behaviour is None:
        return [], None
    if not behaviour.columns:
        return [], "the train window has no funnel events to learn from"
    if not (behaviour.weight[train] > 0).any():
        return [], "no training item has embed.behaviour.min_events events"
    return list(behaviour.columns), None


def standardize(behaviour: Targets, train: np.ndarray) -> Targets:
    """Targets z-scored per column over the training teachers (some: :func:`usable_columns`)."""
    teachers = train[behaviour.weight[train] > 0]
    mean = behaviour.values[teachers].mean(axis=0)
    std = behaviour.values[teachers].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    values = np.where(behaviour.weight[:, None] > 0, (behaviour.values - mean) / std, 0.0)
    return Targets(behaviour.columns, values.astype(np.float32), behaviour.weight,
                   {"mean": mean.tolist(), "std": std.tolist()})


def held_out_report(scaled: Targets, predicted: np.ndarray, train: np.ndarray,
                    held_out: np.ndarray, weight: float) -> dict:
    """The behaviour head on held-out teachers: per column Pearson r and R^2.

    Args:
        scaled: The standardized targets (:func:`standardize`) of every item.
        predicted: The head's outputs [len(held_out), C], in ``held_out`` order.
        train: Training item indices.
        held_out: Held-out item indices.
        weight: The head's loss weight (recorded).
    """
    teachers = held_out[scaled.weight[held_out] > 0]
    report = {"columns": scaled.columns, "weight": weight,
              "train_teachers": int(np.sum(scaled.weight[train] > 0)),
              "held_out_teachers": int(len(teachers)),
              "standardized_by": scaled.priors}
    index = {int(i): k for k, i in enumerate(held_out)}
    rows = [index[int(i)] for i in teachers]
    if len(teachers) > 1:
        report["targets"] = regression_report(scaled.values[teachers], predicted[rows],
                                              scaled.columns)
    return report
