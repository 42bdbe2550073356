"""The model gate: bless the trained model against the published one, then publish it.

After ``shoprec train``, ``shoprec push`` evaluates the new model and the
published one (the baseline, ``models/CURRENT``) on the same examples —
today's raw eval split, each model through its own serving signature and
transform graph (``trainer.evaluation.evaluate_export``), so models trained
on different days' vocabularies are judged alike — and compares every binary
task's AUC with the ``gate`` thresholds (:func:`compare`): at least
``min_auc``, and at most ``max_auc_drop`` below the baseline's. The first
model has no baseline and is judged by ``min_auc`` alone.

Blessed (or ``--force_bless``): published as a new version
(``shoprec.io.models.publish``) and made current. Not blessed: nothing is
published, the verdict is written to ``push/report.json`` and the stage
raises :class:`~shoprec.core.errors.ModelNotBlessedError`; scoring and
recommending go on with the version that was current.
"""

from __future__ import annotations

import json
import math
from typing import Any, Dict, Mapping, Optional

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf

from shoprec.core import layout as layout_lib
from shoprec.core.config import Config
from shoprec.core.errors import ModelNotBlessedError
from shoprec.core.model_config import GateConfig
from shoprec.io import models
from shoprec.io.outputs import clear, require_success, write_report, write_success
from trainer import evaluation


def _auc(metrics: Optional[Mapping[str, Any]]) -> Optional[float]:
    value = None if metrics is None else metrics.get("auc")
    return None if value is None or not math.isfinite(value) else float(value)


def compare(candidate: Mapping[str, Mapping[str, Any]],
            baseline: Optional[Mapping[str, Mapping[str, Any]]],
            gate: GateConfig) -> Dict[str, Any]:
    """Judges each task's eval AUC against the gate's thresholds.

    Args:
        candidate: ``{task: metrics with 'auc'}`` of the new model.
        baseline: The same for the published model on the same examples, or
            None when none is published (absolute thresholds only).
        gate: The thresholds.

    Returns:
        ``{'blessed': every task passed, 'tasks': {task: {'auc',
        'baseline_auc', 'min_auc', 'max_auc_drop', 'drop' (baseline - new,
        None without a baseline), 'passed', 'reasons': [why it failed]}}}``.
        An undefined AUC (one class among the examples) fails its task; an
        undefined baseline AUC leaves only the absolute check.
    """
    tasks: Dict[str, Any] = {}
    for name in sorted(candidate):
        min_auc, max_drop = gate.thresholds(name)
        auc = _auc(candidate[name])
        base = _auc(baseline.get(name)) if baseline is not None else None
        drop = None if auc is None or base is None else base - auc
        reasons = []
        if auc is None:
            reasons.append("AUC undefined (one class among the eval examples)")
        elif auc < min_auc:
            reasons.append(f"AUC {auc:.4f} < min_auc {min_auc}")
        # A tiny tolerance: a drop equal to the limit, up to float rounding, passes.
        if drop is not None and drop > max_drop + 1e-12:
            reasons.append(f"AUC {auc:.4f} is {drop:.4f} below the published model's "
                           f"{base:.4f} (max_auc_drop {max_drop})")
        tasks[name] = {"auc": auc, "baseline_auc": base, "min_auc": min_auc,
                       "max_auc_drop": max_drop, "drop": drop, "passed": not reasons,
                       "reasons": reasons}
    return {"blessed": all(t["passed"] for t in tasks.values()), "tasks": tasks}


def run(config: Config, force_bless: bool = False) -> Dict[str, Any]:
    """The ``push`` stage: evaluate both models, judge, publish when blessed.

    Args:
        config: Run config: reads ``train/`` (model, checkpoint, metrics),
            ``featurize/transform`` and ingest's raw eval split; writes
            ``push/report.json`` and, when blessed, a version under
            ``layout.models_root``.
        force_bless: Publish even when the gate says no (tensorflow/tfx#4390);
            the verdict records that it was forced.

    Returns:
        The report: ``{'status': 'blessed' | 'forced', 'version',
        'baseline_version', 'verdict', 'candidate', 'baseline', 'eval_examples'}``.

    Raises:
        StageOrderError: train or ingest has not finished.
        ModelNotBlessedError: the gate refused the model (report attached).
    """
    layout = config.layout
    require_success(layout.ingest_dir, "ingest")
    require_success(layout.train_dir, "train")
    clear(layout.push_dir)
    eval_pattern = layout.examples_pattern("eval")
    tasks, registry = config.model.tasks, config.registry
    baseline_version = models.current_version(layout)
    candidate = evaluation.evaluate_export(layout.model_dir, eval_pattern, tasks, registry)
    baseline = None
    if baseline_version is not None:
        _, baseline_dir = models.require_current(layout)
        baseline = evaluation.evaluate_export(baseline_dir, eval_pattern, tasks, registry)
    verdict = compare(candidate, baseline, config.gate)
    report: Dict[str, Any] = {
        "status": "blessed" if verdict["blessed"] else ("forced" if force_bless
                                                        else "not_blessed"),
        "version": None, "baseline_version": baseline_version, "verdict": verdict,
        "candidate": candidate, "baseline": baseline, "eval_examples": eval_pattern,
        "models_dir": layout.models_root}
    if report["status"] == "not_blessed":
        write_report(layout.push_report, report)
        failed = "; ".join(f"{name}: {', '.join(t['reasons'])}"
                           for name, t in verdict["tasks"].items() if not t["passed"])
        kept = (f"version {baseline_version} stays current" if baseline_version
                else "no model is published yet")
        raise ModelNotBlessedError(
            f"the model gate did not bless the new model ({failed}); nothing was published "
            f"and {kept} (see {layout.push_report}); `shoprec push --force_bless` publishes "
            "it anyway", report=report)
    version = models.new_version()
    report["version"] = version
    with tf.io.gfile.GFile(layout.metrics_file) as f:
        metrics = json.load(f)
    models.publish(layout, version,
                   {layout_lib.VERSION_MODEL: layout.model_dir,
                    layout_lib.VERSION_CHECKPOINT: layout.checkpoint_dir,
                    layout_lib.VERSION_TRANSFORM: layout.transform_dir},
                   {layout_lib.VERSION_METRICS: metrics, layout_lib.VERSION_VERDICT: report})
    write_report(layout.push_report, report)
    write_success(layout.push_dir, "push")
    return report
