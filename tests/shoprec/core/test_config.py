"""The run config's own sections: recommend's defaults and checks."""

import os

import pytest
import yaml

from shoprec.core import config as config_lib
from shoprec.core import recommend_config
from shoprec.core.sections import ConfigError

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shoprec", "configs")


def _load(tmp_path, recommend):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "recommend": recommend}))
    return config_lib.load(str(path))


def test_recommend_defaults_follow_the_tasks_and_the_registry():
    config = config_lib.load()
    rec = recommend_config.recommend_settings(config)
    # The demo blends the towers' score alone (docs/recommend.md); its towers'
    # 50 nearest come first among its sources, and a source's events default to
    # the relevance label's.
    assert (rec.k, rec.blend) == (10, (("retrieval", 1.0),))
    assert [(s.name, s.quota, s.source_kind) for s in rec.sources][0] == (
        "two_tower", 50, "two_tower")
    assert config.recommend.sources[0].events == ()
    assert rec.sources[0].events == (("click", 1.0),)
    assert (rec.relevance_label, rec.exclude_label, rec.category_feature) == (
        "click", "conversion", "item_category")
    hm = recommend_config.recommend_settings(config_lib.load(os.path.join(CONFIGS, "hm.yaml")))
    assert hm.relevance_label == "purchase" and hm.blend == (("p_purchase", 1.0),)
    assert [s.source_kind for s in hm.sources] == [
        "repurchase", "attribute", "co_occurrence", "popular", "popular", "popular"]


def test_the_faiss_section_is_read_into_its_own_settings(tmp_path):
    rec = _load(tmp_path, {"index": "faiss", "faiss": {"kind": "ivf", "nlist": 16,
                                                       "nprobe": 4}}).recommend
    assert (rec.index, rec.faiss.kind, rec.faiss.nlist, rec.faiss.nprobe) == ("faiss", "ivf", 16, 4)
    # Unset keys keep their defaults; the demo retrieves exactly.
    assert rec.faiss.hnsw_m == recommend_config.FaissConfig().hnsw_m
    assert config_lib.load().recommend.index == "exact"


def test_without_a_blend_the_first_binary_task_ranks(tmp_path):
    rec = recommend_config.recommend_settings(_load(tmp_path, {"k": 3}))
    assert rec.blend == (("p_click", 1.0),) and rec.relevance_label == "click"


def test_a_new_source_names_an_item_category_and_reads_the_relevance_events(tmp_path):
    rec = recommend_config.recommend_settings(_load(tmp_path, {"sources": [
        {"name": "fresh", "kind": "new", "quota": 10, "attribute": "item_category"}]}))
    fresh = rec.sources[0]
    assert (fresh.source_kind, fresh.attribute, fresh.days, fresh.events) == (
        "new", "item_category", 7, (("click", 1.0),))


@pytest.mark.parametrize("section, message", [
    ({"k": 5, "sources": [{"name": "popular", "quota": 3}]}, "add up to less than k = 5"),
    ({"sources": [{"name": "pop", "quota": 3}]}, r"kind must be one of"),
    ({"sources": [{"name": "popular", "quota": 10}, {"name": "popular", "quota": 10}]},
     "repeated names"),
    ({"sources": [{"name": "popular", "quota": 10, "events": {"view": 1.0}}]},
     "events maps funnel events"),
    ({"sources": [{"name": "popular", "quota": 10, "segment": "item_category"}]},
     "segment is for popular sources"),
    ({"sources": [{"name": "popular", "quota": 10, "segment": "user_age"}]},
     "segment_edges"),
    ({"sources": [{"name": "attribute", "quota": 10}]}, "name an attribute"),
    ({"sources": [{"name": "new", "quota": 10}]}, "name an attribute"),
    ({"sources": [{"name": "new", "quota": 10, "attribute": "user_region"}]},
     "name an attribute"),
    ({"sources": [{"name": "fresh", "kind": "new", "quota": 10, "attribute": "item_category",
                   "days": 0}]}, "days must be >= 1"),
    ({"sources": [{"name": "popular", "quota": 10, "attribute": "item_category"}]},
     "name an attribute"),
    ({"sources": [{"name": "x.y", "kind": "popular", "quota": 10}]}, "without dots"),
    ({"blend": {"p_nothing": 1.0}}, r"recommend.blend: \['p_nothing'\]"),
    ({"blend": {"p_click": -1.0}}, r"recommend.blend: \['p_click'\]"),
    ({"exclude_label": "price"}, "recommend.exclude_label must be a label"),
    ({"as_of": "tomorrow"}, "recommend.as_of must be eval or end"),
    ({"category_feature": "user_region"}, "recommend.category_feature must be a categorical item"),
    ({"index": "scann"}, r"recommend.index must be one of \['exact', 'faiss'\]"),
    ({"faiss": {"kind": "lsh"}}, r"recommend.faiss.kind must be one of"),
    ({"faiss": {"nprobe": 0}}, "recommend.faiss needs hnsw_m"),
    ({"faiss": {"recall_sample": 1.5}}, r"recall_sample must be in \[0, 1\]"),
    ({"faiss": {"nlist_typo": 3}}, r"recommend.faiss: unknown key\(s\) \['nlist_typo'\]"),
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


def test_the_shipped_shop_tasks_config_loads_with_its_targets_out_of_the_inputs():
    config = config_lib.load("shoprec/configs/shop_tasks.yaml")
    tasks = {t.name: t for t in config.model.tasks}
    assert sorted(tasks) == ["anomaly", "category", "click", "colour", "conversion", "interest"]
    assert tasks["interest"].condition == "has_next_click"
    assert {f.name for f in config.registry.inputs()}.isdisjoint(
        {"next_click_category", "has_next_click", "user_is_bot"})


@pytest.mark.parametrize("task, message", [
    ({"name": "category", "label": "item_category", "type": "multiclass",
      "inputs": ["item_category"]}, r"inputs \['item_category'\] must be model inputs"),
    ({"name": "category", "label": "item_category", "type": "multiclass",
      "inputs": ["click"]}, r"inputs \['click'\] must be model inputs"),
    ({"name": "bot", "label": "click", "baseline": "oracle"}, "baseline must be one of"),
    ({"name": "bot", "label": "click", "threshold": 1.5}, "threshold is for a binary task"),
])
def test_bad_task_inputs_thresholds_and_baselines_are_refused(tmp_path, task, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"tasks": [
        {"name": "click", "label": "click"}, task]}}))
    with pytest.raises(ConfigError, match=message):
        config_lib.load(str(path))


def test_the_shop_tasks_hold_out_items_for_the_attributes_and_users_for_anomaly():
    config = config_lib.load("shoprec/configs/shop_tasks.yaml")
    tasks = {t.name: t for t in config.model.tasks}
    holdouts = {t.name: t.holdout for t in config.model.tasks if t.holdout}
    assert holdouts == {"category": "item_held_out", "colour": "item_held_out",
                        "anomaly": "user_held_out"}
    assert config.registry["item_held_out"].derived_from == ("item_id",)
    assert config.registry["user_held_out"].derived_from == ("user_id",)
    # Anomaly reads behaviour, never who the user is.
    assert not {"user_id", "user_age", "user_region", "user_membership"} & set(
        tasks["anomaly"].inputs)


def _shop_with_task(tmp_path, **changes):
    with open("shoprec/configs/shop_tasks.yaml") as f:
        raw = yaml.safe_load(f)
    anomaly = next(t for t in raw["model"]["tasks"] if t["name"] == "anomaly")
    anomaly.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del anomaly[key]
    path = tmp_path / "shop.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.mark.parametrize("changes, message", [
    ({"holdout": "user_is_bot"}, "holdout must name a hold-out feature"),
    ({"holdout": "nothing"}, "holdout must name a hold-out feature"),
    # Held-out users' ids (or anything built from them) would carry the flag.
    ({"inputs": ["hist_clicks", "user_id"]}, r"holds out 'user_id' values.*\['user_id'\]"),
    ({"inputs": None}, r"holds out 'user_id' values, so it needs inputs"),
])
def test_a_holdout_must_be_a_holdout_feature_the_task_cannot_read_around(
        tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        config_lib.load(_shop_with_task(tmp_path, **changes))


def test_a_candidates_ranker_may_have_a_two_tower_source(tmp_path):
    # Its training candidates come from the last published towers (ingest).
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(
        {"dataset": {"labels": "candidates"}, "model": {"retrieval": {"enabled": True}},
         "recommend": {"blend": {"p_click": 1.0},
                       "sources": [{"name": "two_tower", "quota": 10},
                                   {"name": "popular", "quota": 10}]}}))
    config = config_lib.load(str(path))
    assert config.data.labels == "candidates"
    assert recommend_config.recommend_settings(config).source("two_tower").quota == 10


def test_tower_sources_and_the_retrieval_blend_need_the_towers(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"retrieval": {"enabled": False}},
                                    "recommend": {"blend": {"p_click": 1.0}}}))
    # No towers and no sources: nothing to recommend with, and no stage to run.
    assert recommend_config.recommend_settings(config_lib.load(str(path))).sources == ()
    for recommend in ({"blend": {"retrieval": 1.0}},
                      {"sources": [{"name": "two_tower", "quota": 10}]}):
        path.write_text(yaml.safe_dump({"model": {"retrieval": {"enabled": False}},
                                        "recommend": recommend}))
        with pytest.raises(ConfigError, match="need the two towers"):
            config_lib.load(str(path))


def test_candidate_features_name_a_configured_source(tmp_path):
    path = tmp_path / "c.yaml"
    feature = {"name": "pop_rank", "source": "candidate", "kind": "numeric",
               "signal": "pop.rank"}
    raw = {"dataset": {"features": [
        {"name": "user_id", "source": "event", "kind": "id"},
        {"name": "item_id", "source": "event", "kind": "id"},
        {"name": "click", "source": "event", "kind": "label", "event_type": "click"},
        {"name": "conversion", "source": "event", "kind": "label", "event_type": "purchase"},
        feature]},
        "embed": {"attributes": []}}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"reads source 'pop', which recommend.sources does"):
        config_lib.load(str(path))
    raw["recommend"] = {"sources": [{"name": "pop", "kind": "popular", "quota": 10}]}
    path.write_text(yaml.safe_dump(raw))
    assert config_lib.load(str(path)).registry.candidate_features()[0].signal == "pop.rank"


def test_the_lock_age_is_read_and_must_be_positive(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lock_stale_hours: 2.5\n")
    assert config_lib.load(str(path)).lock_stale_hours == 2.5
    assert config_lib.load().lock_stale_hours == 6.0  # the schedulers' deadline
    path.write_text("lock_stale_hours: 0.0\n")
    with pytest.raises(ConfigError, match="lock_stale_hours must be > 0"):
        config_lib.load(str(path))


@pytest.mark.parametrize("embed, message", [
    ({"attributes": [], "behaviour": {"enabled": False}}, "embed.attributes must name"),
    ({"attributes": ["nope"]}, r"not item columns: \['nope'\]"),
    ({"behaviour": {"min_events": 0}}, "min_events >= 1"),
    ({"behaviour": {"smoothing": 0.0}}, "smoothing > 0"),
    ({"behaviour": {"weight": -1.0}}, "weight >= 0"),
])
def test_bad_encoder_heads_are_refused(tmp_path, embed, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"embed": embed}))
    with pytest.raises(ConfigError, match=message):
        config_lib.load(str(path))


def test_a_behaviour_only_encoder_is_a_valid_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"embed": {"attributes": [], "behaviour": {
        "enabled": True, "weight": 0.5, "min_events": 5, "smoothing": 10}}}))
    behaviour = config_lib.load(str(path)).embed.behaviour
    assert behaviour == config_lib.BehaviourConfig(enabled=True, weight=0.5, min_events=5,
                                                   smoothing=10.0)
