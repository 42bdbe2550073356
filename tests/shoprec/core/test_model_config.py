"""Model and training settings of the run config: parsing, defaults and checks."""

import dataclasses
import json

import pytest
import yaml

from shoprec.core import config as config_lib
from shoprec.core.model_config import (ExpertsConfig, ModelConfig, RetrievalConfig, TaskConfig,
                                       model_config_from_dict)
from shoprec.core.sections import ConfigError


def _load(tmp_path, model=None, training=None):
    data = {"run_dir": str(tmp_path / "run")}
    if model is not None:
        data["model"] = model
    if training is not None:
        data["training"] = training
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return config_lib.load(str(path))


def test_demo_config_keeps_the_spine_defaults():
    config = config_lib.load()
    assert config.model.architecture == "shared_bottom"
    assert [t.type for t in config.model.tasks] == ["binary", "binary"]
    # `shoprec recommend` picks its candidates with the two towers.
    assert config.model.retrieval.enabled
    assert config.training.backup_and_restore and config.training.early_stopping.task is None


def test_nested_settings_parse(tmp_path):
    config = _load(tmp_path, model={
        "architecture": "ple",
        "experts": {"units": [32, 16], "levels": 3, "shared_experts": 1},
        "retrieval": {"enabled": True, "recall_at": [5, 20], "sampling_bias_correction": False},
        "tasks": [{"name": "click", "label": "click"},
                  {"name": "cvr", "label": "conversion", "condition": "click", "weight": 2.0},
                  {"name": "category", "label": "item_category", "type": "multiclass"},
                  {"name": "price", "label": "item_price", "type": "regression"}],
    }, training={"early_stopping": {"task": "click", "metric": "gauc", "patience": 3},
                 "train_filter": "click", "backup_and_restore": False})
    model = config.model
    assert model.experts == ExpertsConfig(num_experts=4, units=(32, 16),
                                                     shared_experts=1, task_experts=1, levels=3)
    assert model.retrieval.recall_at == (5, 20) and not model.retrieval.sampling_bias_correction
    assert model.tasks[1] == TaskConfig("cvr", "conversion", 2.0, condition="click")
    assert config.training.early_stopping.metric == "gauc"
    assert config.training.train_filter == "click" and not config.training.backup_and_restore


def test_model_config_round_trips_through_json():
    model = dataclasses.replace(ModelConfig(), architecture="esmm",
                                retrieval=RetrievalConfig(enabled=True))
    as_json = json.loads(json.dumps(dataclasses.asdict(model)))
    assert model_config_from_dict(as_json) == model


@pytest.mark.parametrize("model, training, message", [
    ({"architecture": "wide_deep"}, None, "architecture"),
    ({"architecture": "soft_sharing", "soft_sharing_lambda": -0.1}, None, "soft_sharing_lambda"),
    ({"soft_sharing_lambda": "big"}, None, "soft_sharing_lambda"),
    ({"loss_weighting": "gradnorm"}, None, "loss_weighting"),
    ({"loss_weighting": "dwa", "dwa_temperature": 0}, None, "dwa_temperature"),
    ({"architecture": "esmm", "tasks": [{"name": "click", "label": "click"}]}, None,
     "esmm.ctcvr_task"),
    ({"architecture": "esmm", "esmm": {"cvr_output": "click"}}, None, "cvr_output"),
    ({"tasks": [{"name": "click", "label": "click", "type": "ordinal"}]}, None, "type"),
    ({"tasks": [{"name": "c", "label": "item_category"}]}, None, "binary task's label"),
    ({"tasks": [{"name": "click", "label": "click", "condition": "item_id"}]}, None,
     "condition"),
    ({"retrieval": {"enabled": True, "positive_label": "user_id"}}, None, "positive_label"),
    (None, {"early_stopping": {"task": "nope"}}, "early_stopping.task"),
    (None, {"early_stopping": {"task": "click", "metric": "rmse"}}, "early_stopping.metric"),
    (None, {"train_filter": "item_id"}, "train_filter"),
])
def test_inconsistent_settings_fail(tmp_path, model, training, message):
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, model, training)


def test_scores_cannot_be_ranked_by_a_multiclass_task(tmp_path):
    tasks = [{"name": "click", "label": "click"},
             {"name": "category", "label": "item_category", "type": "multiclass"}]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "model": {"tasks": tasks},
                                    "scoring": {"rank_by": "p_category"}}))
    with pytest.raises(ConfigError, match=r"rank_by .*\['p_click'\]"):
        config_lib.load(str(path))
    path.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "model": {"tasks": tasks},
                                    "scoring": {"rank_by": "p_click"}}))
    assert config_lib.load(str(path)).scoring.rank_by == "p_click"


def _load_with(tmp_path, **sections):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), **sections}))
    return config_lib.load(str(path))


def test_the_gate_section_and_its_per_task_overrides(tmp_path):
    assert config_lib.load().gate.thresholds("click") == (0.5, 0.01)
    config = _load_with(tmp_path, gate={"min_auc": 0.6, "max_auc_drop": 0.02,
                                        "tasks": {"conversion": {"min_auc": 0.7}}})
    assert config.gate.thresholds("click") == (0.6, 0.02)
    assert config.gate.thresholds("conversion") == (0.7, 0.02)


@pytest.mark.parametrize("gate, message", [
    ({"tasks": {"clicks": {"min_auc": 0.6}}}, r"gate.tasks \['clicks'\]: the gate judges "
                                              r"binary tasks only"),
    ({"min_auc": 1.5}, r"min_auc and max_auc_drop must lie in \[0, 1\]"),
    ({"tasks": {"click": {"max_auc_drop": -0.1}}}, r"gate.tasks.click: min_auc"),
    ({"tasks": {"click": {"auc": 0.6}}}, r"unknown key\(s\) \['auc'\]"),
    ({"min_aucs": 0.6}, r"unknown key\(s\) \['min_aucs'\]"),
])
def test_bad_gate_settings_are_refused(tmp_path, gate, message):
    with pytest.raises(ConfigError, match=message):
        _load_with(tmp_path, gate=gate)


def test_models_dir_resolves_against_the_run_folder(tmp_path):
    assert config_lib.load(run_dir="/runs/dt=2026-12-02").layout.models_root == (
        "/runs/dt=2026-12-02/models")
    config = _load_with(tmp_path, models_dir="../models")
    assert config.layout.models_root == str(tmp_path / "run" / ".." / "models")
    assert _load_with(tmp_path, models_dir="gs://b/models").layout.models_root == "gs://b/models"
    with pytest.raises(ConfigError, match="training.warm_start must be one of"):
        _load_with(tmp_path, training={"warm_start": "yesterday"})
