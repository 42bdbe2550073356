"""Baselines a task's eval metrics are reported beside, scored on the same examples.

``anomaly_rule``: ingest's robot rule (``pipelines.anomaly``). Its score for
an example is the user's anomaly-table ``score`` (busiest window /
max_events, over the user's whole log: the rule at its most informed), which
gives the AUC; its decision is the one ingest applies, robotic from the
first window over the limit on (``robotic_from`` <= the example's time),
which gives precision and recall. Both are read from ingest's outputs and
the raw eval examples, the examples the model's eval metrics are over (a
task with a ``holdout``: its held-out users' examples only).
"""

from __future__ import annotations

import csv
from typing import Dict, Iterable, Tuple

import numpy as np

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf

from shoprec.core import registry as F
from shoprec.core.errors import InputEmptyError
from shoprec.core.layout import CSV_SUFFIX, Layout
from shoprec.core.model_config import TaskConfig
from trainer import metrics
from transforms import holdout as holdout_lib


def read_anomaly_table(path: str) -> Dict[str, Tuple[float, float]]:
    """``{user_id: (score, robotic_from or inf)}`` from ingest's per-user anomaly CSV."""
    with tf.io.gfile.GFile(path) as f:
        return {row["user_id"]: (float(row["score"]),
                                 float(row["robotic_from"]) if row["robotic_from"] else np.inf)
                for row in csv.DictReader(f)}


def rule_metrics(labels, times, rule: Tuple[np.ndarray, np.ndarray]) -> Dict[str, float]:
    """AUC of the rule's score and precision / recall of its decision.

    Args:
        labels: 0/1 per example.
        times: Unix seconds per example.
        rule: (score, robotic_from) per example, from the example's user.
    """
    score, robotic_from = rule
    flagged = (np.asarray(robotic_from) <= np.asarray(times)).astype(np.float64)
    return {"auc": metrics.auc(labels, score), **metrics.precision_recall(labels, flagged, 0.5),
            "flagged_rate": float(flagged.mean()) if flagged.size else float("nan"),
            "examples": int(np.asarray(labels).size)}


def evaluate(layout: Layout, registry: F.Registry, tasks: Iterable[TaskConfig],
             split: str = "eval") -> Dict[str, Dict[str, float]]:
    """``{task: the baseline's metrics}`` for every task that names a baseline.

    Raises:
        InputEmptyError: no raw examples of ``split``.
    """
    tasks = [t for t in tasks if t.baseline == "anomaly_rule"]
    if not tasks:
        return {}
    table = read_anomaly_table(layout.anomaly_table + CSV_SUFFIX)
    spec = {registry.user_key: tf.io.FixedLenFeature([], tf.string),
            registry.timestamp_key: tf.io.FixedLenFeature([], tf.int64)}
    spec.update({t.label: tf.io.FixedLenFeature([], tf.int64) for t in tasks})
    holdouts = {registry[t.holdout] for t in tasks if t.holdout}
    spec.update({h.derived_from[0]: tf.io.FixedLenFeature([], tf.string) for h in holdouts})
    files = sorted(tf.io.gfile.glob(layout.examples(split) + "-*"))
    parts: Dict[str, list] = {name: [] for name in spec}
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096):
        parsed = tf.io.parse_example(batch, spec)
        for name, value in parsed.items():
            parts[name].append(value.numpy())
        for h in holdouts:
            parts.setdefault(h.name, []).append(
                holdout_lib.held_out(parsed[h.derived_from[0]], h.fraction).numpy())
    if not files or not parts[registry.user_key]:
        raise InputEmptyError(f"no {split} examples at {layout.examples(split)}-*")
    data = {k: np.concatenate(v) for k, v in parts.items()}
    # A user the table lacks logged nothing the rule saw: score 0, never flagged.
    looked_up = [table.get(u.decode(), (0.0, np.inf)) for u in data[registry.user_key]]
    rule = (np.array([s for s, _ in looked_up]), np.array([r for _, r in looked_up]))
    out = {}
    for t in tasks:
        # The task's own eval rows: its held-out keys when it has a holdout.
        keep = (data[t.holdout] > 0.5 if t.holdout
                else np.ones(data[registry.user_key].size, bool))
        out[t.name] = dict(rule_metrics(data[t.label][keep], data[registry.timestamp_key][keep],
                                        (rule[0][keep], rule[1][keep])), baseline=t.baseline)
    return out
