"""The run config's own sections: recommend's defaults and checks."""

import os

import pytest
import yaml

from shoprec.core import config as config_lib
from shoprec.core.sections import ConfigError

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shoprec", "configs")


def _load(tmp_path, recommend):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "recommend": recommend}))
    return config_lib.load(str(path))


def test_recommend_defaults_follow_the_tasks_and_the_registry():
    config = config_lib.load()
    rec = config_lib.recommend_settings(config)
    # The demo blends the towers' score alone (docs/recommend.md).
    assert (rec.k, rec.candidates, rec.blend) == (10, 50, (("retrieval", 1.0),))
    assert (rec.relevance_label, rec.exclude_label, rec.category_feature) == (
        "click", "conversion", "item_category")
    hm = config_lib.recommend_settings(config_lib.load(os.path.join(CONFIGS, "hm.yaml")))
    assert hm.relevance_label == "purchase" and hm.blend == (("retrieval", 1.0),
                                                             ("p_purchase", 1.0))


def test_without_a_blend_the_first_binary_task_ranks(tmp_path):
    rec = config_lib.recommend_settings(_load(tmp_path, {"k": 3}))
    assert rec.blend == (("p_click", 1.0),) and rec.relevance_label == "click"


@pytest.mark.parametrize("section, message", [
    ({"k": 5, "candidates": 3}, "candidates >= k"),
    ({"blend": {"p_nothing": 1.0}}, r"recommend.blend: \['p_nothing'\]"),
    ({"blend": {"p_click": -1.0}}, r"recommend.blend: \['p_click'\]"),
    ({"exclude_label": "price"}, "recommend.exclude_label must be a label"),
    ({"as_of": "tomorrow"}, "recommend.as_of must be eval or end"),
    ({"category_feature": "user_region"}, "recommend.category_feature must be a categorical item"),
])
def test_bad_recommend_settings_are_refused(tmp_path, section, message):
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, section)


def test_a_dated_run_is_the_date_partition_of_the_run_root(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"run_root": "/data/runs", "inputs": {
        "data_dir": "/exports/dt={date}", "events": "events/*.csv"}}))
    day = config_lib.load(str(path), date="2026-12-01")
    assert day.run_dir == "/data/runs/dt=2026-12-01" and day.date == "2026-12-01"
    assert day.input_path(day.inputs.events) == "/exports/dt=2026-12-01/events/*.csv"
    # An explicit run folder wins; the date still fills the input paths.
    there = config_lib.load(str(path), run_dir="/tmp/x", date="2026-12-01")
    assert there.run_dir == "/tmp/x"
    assert there.input_path(there.inputs.users) == "/exports/dt=2026-12-01/raw/users.csv"
    # Without a run_root, the file's run_dir is the root.
    assert config_lib.load(date="2026-12-02").run_dir == "runs/demo/dt=2026-12-02"
    with pytest.raises(ConfigError, match="pass --date"):
        config_lib.load(str(path)).input_path("events/*.csv")
    with pytest.raises(ConfigError, match="not a date"):
        config_lib.load(str(path), date="2026-13-01")
    with pytest.raises(ConfigError, match="unknown key"):
        path.write_text("layout_roots: []\n")  # set by the stage runner, never in a file
        config_lib.load(str(path))
