"""Data set descriptions: parsing, checks, the committed real-data configs and --data."""

import os

import pytest
import yaml

from shoprec.core import config as config_lib
from shoprec.core import dataset_yaml
from shoprec.core import generated_shop as shop
from shoprec.core import registry as F
from shoprec.core.sections import ConfigError

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shoprec", "configs")

MINIMAL = {
    "labels": "funnel",
    "events": {"columns": {"u": "string", "i": "string", "t": {"type": "timestamp",
                                                               "format": "unix_ms"},
                           "kind": "string", "cat": "string"},
               "user_id": "u", "item_id": "i", "timestamp": "t", "event_type": "kind",
               "event_types": {"view": "click", "buy": "purchase"}},
    "items": {"from_events": True},
    "features": [
        {"name": "user_id", "source": "event", "kind": "id"},
        {"name": "item_id", "source": "event", "kind": "id"},
        {"name": "item_category", "source": "item", "kind": "categorical", "column": "cat"},
        {"name": "buy", "source": "event", "kind": "label", "event_type": "purchase"},
    ],
}


def test_minimal_description_parses_into_a_registry():
    data = dataset_yaml.from_dict(MINIMAL)
    assert data.funnel_of == {"view": "click", "buy": "purchase"}
    assert data.events.column("t").format == "unix_ms"
    assert data.event_columns_kept() == ("cat",)
    assert [f.name for f in data.registry.labels()] == ["buy"]


@pytest.mark.parametrize("change, message", [
    ({"labels": "guess"}, "labels must be one of"),
    ({"colour": 1}, "unknown key"),
    ({"events": dict(MINIMAL["events"], user_id="nope")}, "user_id column 'nope'"),
    ({"events": dict(MINIMAL["events"], event_types={"view": "glance"})}, "must map to"),
    ({"features": MINIMAL["features"][:3]
      + [{"name": "cart", "source": "event", "kind": "label", "event_type": "add_to_cart"}]},
     "never map to"),
    ({"features": [{"name": "user_id", "source": "event", "kind": "id", "colour": 1}]},
     "features\\[0\\]"),
    ({"features": MINIMAL["features"] + [
        {"name": "x", "source": "derived", "kind": "cross",
         "derived_from": ["item_category", "nope"], "hash_buckets": 8}]},
     "features: registry: cross feature x must cross"),
    ({"features": MINIMAL["features"] + [
        {"name": "b", "source": "derived", "kind": "bucketized",
         "derived_from": ["item_category"], "num_buckets": 4}]},
     "must bucketize one NUMERIC"),
    ({"features": MINIMAL["features"] + [
        {"name": "a", "source": "aggregate", "kind": "numeric", "event_type": "glance",
         "aggregate_key": ["item_id"]}]}, "aggregate a counts"),
    ({"features": MINIMAL["features"] + [
        {"name": "a", "source": "aggregate", "kind": "numeric", "event_type": "click",
         "aggregate_key": ["user_id", "item_category"]}]}, "served from the history table"),
    ({"features": MINIMAL["features"] + [
        {"name": "a", "source": "aggregate", "kind": "numeric", "event_type": "click",
         "aggregate_key": ["user_id"]}]}, "needs history features"),
])
def test_misfits_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        dataset_yaml.from_dict(dict(MINIMAL, **change))


def test_derived_features_parse_from_yaml_lists_and_read_no_column():
    cross = {"name": "user_x_category", "source": "derived", "kind": "cross",
             "derived_from": ["user_id", "item_category"], "hash_buckets": 64}
    data = dataset_yaml.from_dict(dict(MINIMAL, features=MINIMAL["features"] + [cross]))
    feature = data.registry["user_x_category"]
    assert feature.derived_from == ("user_id", "item_category") and feature.index_size == 64
    assert data.event_columns_kept() == ("cat",)  # no column read for the cross
    assert "user_x_category" not in data.registry.example_names()


def test_hm_declares_text_hashed_cross_and_bucketized_features(tmp_path):
    config = config_lib.load(os.path.join(CONFIGS, "hm.yaml"), run_dir=str(tmp_path),
                             data_dir="/data/x")
    R = config.registry
    new = {f.name: f.kind.value for f in R.features
           if f.kind in (F.Kind.HASHED, F.Kind.TEXT, F.Kind.CROSS, F.Kind.BUCKETIZED)}
    assert new == {"user_postal_code": "hashed", "item_product_code": "hashed",
                   "item_prod_name": "text", "item_detail_desc": "text",
                   "user_age_bucket": "bucketized", "user_club_x_index_group": "cross"}
    # Blank descriptions and postal codes are kept, as empty strings.
    assert R["item_detail_desc"].default == "" and R["user_postal_code"].default == ""
    assert R["user_club_x_index_group"].derived_from == ("user_club_status", "item_index_group")
    assert R["user_age_bucket"].num_buckets == 10
    assert not {"user_age_bucket", "user_club_x_index_group"} & set(R.example_names())


def test_generated_description_matches_the_default_registry():
    data = shop.dataset(shop.REGISTRY)
    assert data.registry == shop.REGISTRY
    assert [c.name for c in data.items.columns] == [
        "item_id", "category", "brand", "colour", "price", "image_path"]


@pytest.mark.parametrize("name, labels, image", [("hm", ["purchase", "online"], True),
                                                 ("taobao", ["cart", "buy"], False)])
def test_committed_real_data_configs_load_with_only_a_data_path(name, labels, image, tmp_path):
    path = os.path.join(CONFIGS, f"{name}.yaml")
    with open(path) as f:
        assert "data_dir" not in (yaml.safe_load(f).get("inputs") or {})
    config = config_lib.load(path, run_dir=str(tmp_path), data_dir="/data/x")
    assert [f.name for f in config.registry.labels()] == labels
    assert (config.registry.embedding_feature() is not None) == image
    assert config.input_path(config.inputs.events).startswith("/data/x/")
    assert config.split_starts[1] is not None  # a test split
    assert config.registry.history_lists()


def test_relative_data_dir_resolves_against_the_run_folder():
    config = config_lib.load(None, run_dir="/runs/a", data_dir="incoming")
    assert config.input_path("events.csv") == "/runs/a/incoming/events.csv"
    assert config_lib.load(None, run_dir="/runs/a").input_path("raw/e.csv") == "/runs/a/raw/e.csv"


def test_config_rejects_tasks_naming_labels_the_data_set_lacks(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"dataset": MINIMAL}))
    with pytest.raises(ConfigError, match="registry labels are \\['buy'\\]"):
        config_lib.load(str(bad))
