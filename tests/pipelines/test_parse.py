"""Schema validation, column roles, funnel mapping, time range and JSON lines."""

import dataclasses

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.options import pipeline_options
from pipelines.parse import EventParser, RowError, TableParser, check_column, to_timestamp
from pipelines.read import ReadTable
from shoprec.core import dataset as ds
from shoprec.core import dataset_yaml
from shoprec.core import generated_shop as shop
from shoprec.core import registry as F

HM_SPEC = {
    "labels": "sampled",
    "events": {"columns": {"t_dat": {"type": "timestamp", "format": "%Y-%m-%d"},
                           "customer_id": "string", "article_id": "string",
                           "channel": {"type": "int", "values": [1, 2]}},
               "user_id": "customer_id", "item_id": "article_id", "timestamp": "t_dat",
               "event_type": None, "event_value": "purchase",
               "time_range": ["2020-01-01", "2020-02-01"]},
    "items": {"key": "article_id", "columns": {"article_id": "string", "type": "string"},
              "image_path": "img/{article_id[:3]}/{article_id}.jpg"},
    "features": [
        {"name": "user_id", "source": "event", "kind": "id"},
        {"name": "item_id", "source": "event", "kind": "id"},
        {"name": "item_type", "source": "item", "kind": "categorical", "column": "type"},
        {"name": "item_image_embedding", "source": "item", "kind": "embedding", "width": 2},
        {"name": "item_has_image", "source": "item", "kind": "flag"},
        {"name": "purchase", "source": "event", "kind": "label", "event_type": "purchase"},
        {"name": "online", "source": "event", "kind": "label", "event_type": "purchase",
         "column": "channel", "positive_values": [2]},
    ],
}
HM_LIKE = dataset_yaml.from_dict(HM_SPEC)


def _reason(fn, *args):
    with pytest.raises(RowError) as err:
        fn(*args)
    return err.value.reason


def test_timestamp_formats():
    assert to_timestamp("2020-01-02", "%Y-%m-%d") == 1577923200
    assert to_timestamp("1577923200000", "unix_ms") == to_timestamp("1577923200", "unix_s")
    assert to_timestamp("2020-01-02T08:00:00+08:00", "iso") == 1577923200
    assert _reason(to_timestamp, "2020-02-30", "%Y-%m-%d") == "bad_timestamp"
    assert _reason(to_timestamp, "soon", "unix_s") == "bad_timestamp"


def test_columns_are_typed_and_checked():
    channel = HM_LIKE.events.column("channel")
    assert check_column(channel, "2") == 2
    assert check_column(channel, 2.0) == 2
    assert _reason(check_column, channel, "3") == "bad_value"
    assert _reason(check_column, channel, "two") == "bad_type"
    assert _reason(check_column, channel, "") == "missing_field"
    age = ds.ColumnSpec("age", "float", required=False, min=0, max=120)
    assert check_column(age, " ") is None
    assert _reason(check_column, age, "130") == "out_of_range"


def test_purchase_only_events_keep_ids_as_strings_and_label_columns():
    parse = EventParser(HM_LIKE)
    row = {"t_dat": "2020-01-02", "customer_id": "c1", "article_id": "0108775015", "channel": "2"}
    assert parse(row) == {"timestamp": 1577923200, "user_id": "c1", "item_id": "0108775015",
                          "event_type": "purchase", "channel": "2"}
    assert _reason(parse, dict(row, t_dat="2020-02-01")) == "timestamp_out_of_range"
    assert _reason(parse, dict(row, t_dat="2019-12-31")) == "timestamp_out_of_range"


def test_items_get_their_image_path_from_the_pattern():
    parse = TableParser(HM_LIKE, F.Source.ITEM)
    assert parse({"article_id": "0108775015", "type": "Dress"}) == {
        "item_id": "0108775015", "item_type": "Dress",
        "image_path": "img/010/0108775015.jpg"}


def test_text_and_hashed_columns_stay_strings_and_derived_features_read_none():
    users = {"key": "customer_id", "columns": {
        "customer_id": "string", "postal_code": {"type": "string", "required": False},
        "club": "string"}}
    items = {"key": "article_id", "columns": {
        "article_id": "string", "type": "string",
        "detail_desc": {"type": "string", "required": False}}}
    features = HM_SPEC["features"][:3] + [
        {"name": "user_postal", "source": "user", "kind": "hashed", "column": "postal_code",
         "required": False, "default": "", "hash_buckets": 64},
        {"name": "user_club", "source": "user", "kind": "categorical", "column": "club"},
        {"name": "item_desc", "source": "item", "kind": "text", "column": "detail_desc",
         "required": False, "default": "", "max_length": 8, "top_k": 100},
        {"name": "club_x_type", "source": "derived", "kind": "cross",
         "derived_from": ["user_club", "item_type"], "hash_buckets": 64},
    ] + HM_SPEC["features"][5:]  # no image: the items have no image_path
    data = dataset_yaml.from_dict(dict(HM_SPEC, users=users, items=items, features=features))
    parse_users = TableParser(data, F.Source.USER)
    assert parse_users({"customer_id": "c1", "postal_code": " 2c29ae ", "club": "ACTIVE"}) == {
        "user_id": "c1", "user_postal": "2c29ae", "user_club": "ACTIVE"}
    assert parse_users({"customer_id": "c2", "postal_code": "", "club": "LEFT"}) == {
        "user_id": "c2", "user_postal": "", "user_club": "LEFT"}
    parse_items = TableParser(data, F.Source.ITEM)
    assert parse_items({"article_id": "01", "type": "Dress", "detail_desc": "  "}) == {
        "item_id": "01", "item_type": "Dress", "item_desc": "", "image_path": ""}
    assert parse_items({"article_id": "02", "type": "Top", "detail_desc": "Soft, cotton."})[
        "item_desc"] == "Soft, cotton."


def test_event_type_mapping_is_case_insensitive_and_strict():
    data = dataclasses.replace(shop.dataset(shop.REGISTRY), events=dataclasses.replace(
        shop.dataset(shop.REGISTRY).events, event_types=(("PV", "click"), ("buy", "purchase"))))
    parse = EventParser(data)
    row = {"timestamp": "5", "user_id": "u", "item_id": "i", "event_type": "pv"}
    assert parse(row)["event_type"] == "click"
    assert _reason(parse, dict(row, event_type="fav")) == "bad_event_type"


def test_json_lines_rows_and_malformed_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"timestamp": 5, "user_id": "u1", "item_id": "i1", "event_type": "click"}\n'
                    "{not json\n[1, 2]\n\n")
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        read = p | ReadTable(str(path), "jsonl", "events")
        assert_that(read.main | beam.Map(lambda kv: kv[1]["user_id"]), equal_to(["u1"]),
                    label="Rows")
        assert_that(read.dead_letter | beam.Map(lambda d: d.reason),
                    equal_to(["malformed_row", "malformed_row"]), label="Dead")
