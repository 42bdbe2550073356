"""The comparison's variants and judged metrics for the shipped configs."""

import dataclasses

import pytest

from benchmarks import architectures as A
from shoprec.core import config as config_lib


def _load(name):
    return config_lib.load(f"shoprec/configs/{name}.yaml")


def test_taobao_variants_and_metrics():
    base = _load("taobao")
    got = A.shop_variants(base)
    multi = [f"{a} / {w}" for a in ("shared_bottom", "mmoe", "ple", "soft_sharing")
             for w in ("fixed", "uncertainty", "dwa")]
    assert list(got) == multi + ["single cart", "single buy"]
    assert (got["ple / dwa"].model.architecture, got["ple / dwa"].model.loss_weighting) == (
        "ple", "dwa")
    assert [t.name for t in got["ple / dwa"].model.tasks] == ["cart", "buy"]
    alone = got["single buy"].model
    assert ([t.name for t in alone.tasks], alone.architecture, alone.loss_weighting) == (
        ["buy"], "shared_bottom", "fixed")
    assert A.judged_metrics(base) == (("cart", "auc"), ("buy", "auc"))


def test_shop_metrics_follow_task_types():
    assert A.judged_metrics(_load("shop_tasks")) == (
        ("click", "auc"), ("conversion", "auc"), ("interest", "accuracy"),
        ("category", "accuracy"), ("colour", "accuracy"), ("anomaly", "auc"))


def test_regression_task_has_no_judged_metric():
    base = _load("taobao")
    tasks = (dataclasses.replace(base.model.tasks[0], type="regression"),)
    base = dataclasses.replace(base, model=dataclasses.replace(base.model, tasks=tasks))
    with pytest.raises(ValueError, match="cart: no comparison metric for type regression"):
        A.judged_metrics(base)
