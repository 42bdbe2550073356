"""The model gate's comparison (trainer.gate.compare) on hand-made metrics."""

import math

import pytest

from shoprec.core.model_config import GateConfig, TaskGate
from trainer.gate import compare

GATE = GateConfig(min_auc=0.6, max_auc_drop=0.02,
                  tasks=(("conversion", TaskGate(min_auc=0.7)),))


def _m(**aucs):
    return {task: {"auc": auc, "log_loss": 0.3} for task, auc in aucs.items()}


def test_the_first_model_is_judged_by_the_absolute_minimum_alone():
    verdict = compare(_m(click=0.61, conversion=0.71), None, GATE)
    assert verdict["blessed"]
    assert verdict["tasks"]["click"] == {
        "auc": 0.61, "baseline_auc": None, "min_auc": 0.6, "max_auc_drop": 0.02, "drop": None,
        "passed": True, "reasons": []}
    # conversion's own min_auc (0.7) replaces the default; its drop limit stays 0.02.
    assert verdict["tasks"]["conversion"]["min_auc"] == 0.7
    assert verdict["tasks"]["conversion"]["max_auc_drop"] == 0.02

    refused = compare(_m(click=0.61, conversion=0.69), None, GATE)
    assert not refused["blessed"]
    assert refused["tasks"]["click"]["passed"]
    assert refused["tasks"]["conversion"]["reasons"] == ["AUC 0.6900 < min_auc 0.7"]


def test_a_drop_past_the_limit_against_the_baseline_is_refused():
    baseline = _m(click=0.80, conversion=0.75)
    # click: 0.80 - 0.785 = 0.015 <= 0.02 passes; conversion: 0.75 - 0.72 = 0.03 > 0.02.
    verdict = compare(_m(click=0.785, conversion=0.72), baseline, GATE)
    assert not verdict["blessed"]
    click, conversion = verdict["tasks"]["click"], verdict["tasks"]["conversion"]
    assert click["passed"] and click["drop"] == pytest.approx(0.015)
    assert conversion["drop"] == pytest.approx(0.03)
    assert conversion["reasons"] == [
        "AUC 0.7200 is 0.0300 below the published model's 0.7500 (max_auc_drop 0.02)"]
    # Exactly at the limit passes (0.80 - 0.78 = 0.02 up to rounding); better always passes.
    assert compare(_m(click=0.78, conversion=0.76), baseline, GATE)["blessed"]


def test_both_thresholds_fail_together_and_undefined_aucs():
    verdict = compare(_m(click=0.55), _m(click=0.9), GateConfig(min_auc=0.6, max_auc_drop=0.1))
    assert verdict["tasks"]["click"]["reasons"] == [
        "AUC 0.5500 < min_auc 0.6",
        "AUC 0.5500 is 0.3500 below the published model's 0.9000 (max_auc_drop 0.1)"]
    # No AUC for the new model (one class in the eval split): refused.
    assert not compare(_m(click=math.nan), None, GateConfig())["blessed"]
    # No AUC for the baseline: only the absolute check is left.
    verdict = compare(_m(click=0.51), _m(click=None), GateConfig())
    assert verdict["blessed"] and verdict["tasks"]["click"]["drop"] is None
