"""Tests for the ingest job: validation, dedup, labels, split and an end-to-end run.

Expected values are derived by hand from the tiny fixtures below.
"""

import dataclasses
import glob
import json
import os

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import examples, ingest
from pipelines.events import match_labels
from pipelines.examples import decode
from pipelines.options import pipeline_options
from pipelines.parse import EventParser, RowError, convert
from shoprec.core import dataset as ds
from shoprec.core import generated_shop as shop
from shoprec.core import registry as F
from shoprec.core.config import Config, IngestConfig, InputsConfig
from tests.pipelines.fixtures import write_embeddings

R = shop.REGISTRY
DATA = shop.dataset(shop.REGISTRY)
WIDTH = R.embedding_feature().width
parse_event = EventParser(DATA)

T0 = 1793714709  # 2026-11-03T14:05:09Z
EVAL_START = 1794441600  # 2026-11-12T00:00:00Z


def _pipeline():
    return test_pipeline.TestPipeline(options=pipeline_options([]))


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def _reasons(dead_letters):
    return dead_letters | "Reasons" >> beam.Map(lambda d: (d.input, d.reason, d.record))


def _event(ts, user, item, kind):
    return {"timestamp": ts, "user_id": user, "item_id": item, "event_type": kind}


# --- validation, no pipeline --------------------------------------------------

def test_numeric_ranges_are_inclusive():
    price = R.by_name["item_price"]
    assert convert(price, "0") == 0.0
    assert convert(price, "1000000") == 1e6
    for bad, reason in (("-0.01", "out_of_range"), ("1000000.5", "out_of_range"),
                        ("abc", "bad_type"), ("nan", "missing_field"), ("inf", "bad_type"),
                        ("", "missing_field")):
        with pytest.raises(RowError) as err:
            convert(price, float(bad) if bad == "nan" else bad)
        assert err.value.reason == reason, bad


def test_optional_value_gets_registry_default():
    assert convert(R.by_name["user_age"], " ") == 35.0
    assert convert(R.by_name["user_region"], None) == "unknown"


def test_parse_event_accepts_iso_and_unix_seconds():
    iso = parse_event({"timestamp": "2026-11-03T14:05:09Z", "user_id": " u1 ", "item_id": "i1",
                       "event_type": "Click"})
    unix = parse_event({"timestamp": str(T0), "user_id": "u1", "item_id": "i1",
                        "event_type": "click"})
    assert iso == unix == _event(T0, "u1", "i1", "click")


# --- labels, no pipeline ------------------------------------------------------

def _labels(events, click_window=1800, conversion_window=86400):
    examples, orphans = match_labels(events, click_window, conversion_window)
    return [(e["timestamp"], e["click"], e["conversion"]) for e in examples], orphans


def test_click_within_window_inclusive():
    assert _labels([(0, "impression"), (1800, "click")]) == ([(0, 1, 0)], [])


def test_click_outside_window_is_orphan():
    assert _labels([(0, "impression"), (1801, "click")]) == ([(0, 0, 0)], [(1801, "click")])


def test_conversion_within_and_outside_window():
    assert _labels([(0, "impression"), (10, "click"), (86410, "purchase")]) == (
        [(0, 1, 1)], [])
    assert _labels([(0, "impression"), (10, "click"), (86411, "purchase")]) == (
        [(0, 1, 0)], [(86411, "purchase")])


def test_no_conversion_without_click():
    assert _labels([(0, "impression"), (100, "purchase")]) == ([(0, 0, 0)], [(100, "purchase")])


def test_two_impressions_one_click_credits_the_latest():
    assert _labels([(100, "impression"), (200, "click"), (0, "impression")]) == (
        [(0, 0, 0), (100, 1, 0)], [])
    # A second click goes to the older impression, still within the window.
    assert _labels([(0, "impression"), (100, "impression"), (200, "click"), (300, "click")]) == (
        [(0, 1, 0), (100, 1, 0)], [])


def test_each_purchase_and_click_credited_once():
    assert _labels([(0, "impression"), (10, "click"), (20, "click"), (30, "purchase"),
                    (40, "purchase")]) == ([(0, 1, 1)], [(20, "click"), (40, "purchase")])


def test_equal_timestamps_order_impression_click_purchase():
    assert _labels([(50, "purchase"), (50, "click"), (50, "impression")]) == ([(50, 1, 1)], [])


# --- pipeline stages ----------------------------------------------------------

EVENTS_CSV = f"""timestamp,user_id,item_id,event_type
2026-11-03T14:05:09Z,u1,i1,impression
{T0 + 60},u1,i1,click
yesterday,u1,i1,impression
{T0},u1,i1,view
{T0},u1,i1
{T0},,i1,click

{T0},"u,2",i2,purchase
"""


def test_parse_events_rejects_bad_rows_and_passes_good_ones(tmp_path):
    path = _write(tmp_path / "events.csv", EVENTS_CSV)
    with _pipeline() as p:
        read = p | "Read" >> ingest.ReadTable(path, "csv", "events")
        parsed = read.main | ingest.ParseEvents(DATA)
        assert_that(parsed.main, equal_to([
            _event(T0, "u1", "i1", "impression"), _event(T0 + 60, "u1", "i1", "click"),
            _event(T0, "u,2", "i2", "purchase")]), label="Good")
        dead = (read.dead_letter, parsed.dead_letter) | beam.Flatten()
        assert_that(_reasons(dead), equal_to([
            ("events", "bad_timestamp", "yesterday,u1,i1,impression"),
            ("events", "bad_event_type", f"{T0},u1,i1,view"),
            ("events", "wrong_column_count", f"{T0},u1,i1"),
            ("events", "missing_field", f"{T0},,i1,click"),
        ]), label="Dead")


def test_missing_header_column_fails_before_running(tmp_path):
    path = _write(tmp_path / "events.csv", "timestamp,user_id,item_id\n1,u1,i1\n")
    with pytest.raises(ValueError, match="event_type"):
        beam.Pipeline(options=pipeline_options([])) | ingest.ReadTable(
            path, "csv", "events", ["timestamp", "user_id", "item_id", "event_type"])


ITEMS_CSV = """item_id,category,brand,colour,price,image_path
i1,shoes,acme,red,10.5,img/i1.png
i2,bags,bolt,blue,0,
i3,hats,acme,green,-5,img/i3.png
i4,tops,acme,red,7
i5,,acme,red,7,img/i5.png
i6,tops,acme,red,cheap,img/i6.png
i1,shoes,acme,red,99,img/i1b.png
"""

USERS_CSV = """user_id,age,region,membership
u1,30,north,gold
u2,,south,none
u3,130,east,none
"""


def _item(item_id, category, brand, colour, price, path):
    return item_id, {"item_id": item_id, "item_category": category, "item_brand": brand,
                     "item_colour": colour, "item_price": price, "image_path": path}


def test_parse_tables_reject_bad_rows_csv_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    items_path = _write(tmp_path / "items.csv", ITEMS_CSV)
    users_path = _write(tmp_path / "users.csv", USERS_CSV)
    parquet_path = str(tmp_path / "items.parquet")
    pq.write_table(pa.table({"item_id": ["p1", "p2"], "category": ["hats", None],
                             "brand": ["acme", "acme"], "colour": ["red", "red"],
                             "price": [3.0, 4.0], "image_path": [None, "x.png"]}), parquet_path)
    with _pipeline() as p:
        items_read = p | "ReadItems" >> ingest.ReadTable(items_path, "csv", "items")
        items = items_read.main | "ParseItems" >> ingest.ParseTable(DATA, F.Source.ITEM)
        assert_that(items.main, equal_to([_item("i1", "shoes", "acme", "red", 10.5, "img/i1.png"),
                                          _item("i2", "bags", "bolt", "blue", 0.0, "")]),
                    label="Items")
        dead = (items_read.dead_letter, items.dead_letter) | "FlattenItems" >> beam.Flatten()
        assert_that(dead | "ItemReasons" >> beam.Map(lambda d: (d.reason, d.record[:3])),
                    equal_to([("out_of_range", "i3,"), ("wrong_column_count", "i4,"),
                              ("missing_field", "i5,"), ("bad_type", "i6,"),
                              ("duplicate_key", '{"i')]), label="ItemDead")

        users = (p | "ReadUsers" >> ingest.ReadTable(users_path, "csv", "users")).main \
            | "ParseUsers" >> ingest.ParseTable(DATA, F.Source.USER)
        assert_that(users.main, equal_to([
            ("u1", {"user_id": "u1", "user_age": 30.0, "user_region": "north",
                    "user_membership": "gold"}),
            ("u2", {"user_id": "u2", "user_age": 35.0, "user_region": "south",
                    "user_membership": "none"})]), label="Users")
        assert_that(users.dead_letter | "UserReasons" >> beam.Map(lambda d: (d.input, d.reason)),
                    equal_to([("users", "out_of_range")]), label="UserDead")

        pitems = (p | "ReadParquet" >> ingest.ReadTable(parquet_path, "parquet", "items")).main \
            | "ParseParquet" >> ingest.ParseTable(DATA, F.Source.ITEM)
        assert_that(pitems.main, equal_to([_item("p1", "hats", "acme", "red", 3.0, "")]),
                    label="ParquetItems")
        assert_that(pitems.dead_letter | "ParquetReasons" >> beam.Map(lambda d: d.reason),
                    equal_to(["missing_field"]), label="ParquetDead")


def test_unknown_items_dropped_and_duplicates_removed():
    events = [_event(1, "u1", "i1", "impression"), _event(1, "u1", "i1", "impression"),
              _event(1, "u1", "i1", "impression"), _event(2, "u1", "i1", "click"),
              _event(3, "u9", "i1", "impression"), _event(4, "u1", "i9", "impression")]
    with _pipeline() as p:
        items = p | "Items" >> beam.Create([("i1", {"item_id": "i1"})])
        known = p | "Events" >> beam.Create(events) | ingest.DropUnknownItems(items)
        unique = known.main | ingest.DedupEvents()
        assert_that(unique.main, equal_to([
            _event(1, "u1", "i1", "impression"), _event(2, "u1", "i1", "click"),
            _event(3, "u9", "i1", "impression")]), label="Unique")
        dead = (known.dead_letter, unique.dead_letter) | beam.Flatten()
        assert_that(_reasons(dead), equal_to([
            ("events", "unknown_item", "4,u1,i9,impression"),
            ("events", "duplicate_event", "1,u1,i1,impression"),
            ("events", "duplicate_event", "1,u1,i1,impression")]), label="Dead")


def test_build_examples_join_and_split_by_time():
    events = [
        _event(T0, "u1", "i1", "impression"), _event(T0 + 100, "u1", "i1", "impression"),
        _event(T0 + 200, "u1", "i1", "click"), _event(T0 + 300, "u1", "i1", "purchase"),
        _event(T0, "u2", "i1", "click"),  # before any impression of u2/i1
        _event(EVAL_START - 10, "u2", "i1", "impression"),
        _event(EVAL_START + 5, "u2", "i1", "click"),  # label may look past the split
        _event(EVAL_START, "u1", "i1", "impression"),
    ]
    item = {"item_id": "i1", "item_category": "shoes", "item_brand": "acme",
            "item_colour": "red", "item_price": 1.0, "item_image_embedding": [0.0] * WIDTH,
            "item_has_image": 0}
    user = {"user_id": "u1", "user_age": 30.0, "user_region": "north", "user_membership": "gold"}
    u2 = {"user_id": "u2", "user_age": 35.0, "user_region": "unknown", "user_membership": "none"}

    def row(ts, person, click, conversion):
        return dict(item, **person, timestamp=ts, click=click, conversion=conversion, sampled=0)

    with _pipeline() as p:
        labelled = p | "Events" >> beam.Create(events) | ingest.BuildExamples(1800, 86400, R)
        no_history = labelled.main | "NoHistory" >> beam.Map(lambda e: (e, None))
        joined = no_history | ingest.JoinFeatures(
            p | "Items" >> beam.Create([("i1", item)]), p | "Users" >> beam.Create([("u1", user)]),
            R)
        splits = joined.main | ingest.SplitByTime(EVAL_START)
        assert_that(splits.train, equal_to([row(T0, user, 0, 0), row(T0 + 100, user, 1, 1),
                                            row(EVAL_START - 10, u2, 1, 0)]), label="Train")
        assert_that(splits.eval, equal_to([row(EVAL_START, user, 0, 0)]), label="Eval")
        assert_that(_reasons(labelled.dead_letter),
                    equal_to([("events", "orphan_click", f"{T0},u2,i1,click")]), label="Dead")


def test_attach_embeddings_joins_by_item_and_dead_letters_the_rest():
    rows = [("i1", [0.5] * WIDTH, 1), ("i2", [0.0] * WIDTH, 0), ("i2", [0.0] * WIDTH, 0),
            ("i3", [1.0] * (WIDTH - 1), 1), ("i9", [1.0] * WIDTH, 1)]
    table = [examples.encode_embedding({"item_id": i, "embedding": v, "has_image": h})
             for i, v, h in rows]
    items = [(i, {"item_id": i, "item_price": 1.0, "image_path": "x.png"})
             for i in ("i1", "i2", "i3", "i4")]
    zero = {"item_image_embedding": [0.0] * WIDTH, "item_has_image": 0}
    with _pipeline() as p:
        embeddings = p | "Embeddings" >> beam.Create(table)
        out = p | beam.Create(items) | ingest.AttachEmbeddings(embeddings, R.embedding_feature())
        assert_that(out.main, equal_to([
            ("i1", {"item_id": "i1", "item_price": 1.0, "item_image_embedding": [0.5] * WIDTH,
                    "item_has_image": 1}),
            ("i2", dict({"item_id": "i2", "item_price": 1.0}, **zero)),
            ("i3", dict({"item_id": "i3", "item_price": 1.0}, **zero)),
            ("i4", dict({"item_id": "i4", "item_price": 1.0}, **zero))]), label="Rows")
        # i3's row has the wrong width, i4 has none; i9 is not in the item table.
        assert_that(out.dead_letter | beam.Map(lambda d: (d.input, d.reason, d.record)),
                    equal_to([("embeddings", "duplicate_item", "i2"),
                              ("embeddings", "bad_embedding", "i3"),
                              ("embeddings", "missing_embedding", "i3"),
                              ("embeddings", "missing_embedding", "i4")]), label="Dead")


# --- end to end ---------------------------------------------------------------

E2E_EVENTS = f"""timestamp,user_id,item_id,event_type
2026-11-03T14:05:09Z,u1,i1,impression
{T0 + 60},u1,i1,click
{T0 + 60},u1,i1,click
{T0 + 3600},u1,i1,purchase
{EVAL_START - 10},u2,i2,impression
{EVAL_START + 5},u2,i2,click
{EVAL_START + 100},u3,i2,impression
{EVAL_START + 200},u3,i1,impression
{T0},u2,i3,impression
not-a-time,u1,i1,impression
{T0},u1,i1,view
{T0},u1,i1,impression,extra
{T0 + 500},u2,i1,click
"""

E2E_ITEMS = """item_id,category,brand,colour,price,image_path
i1,shoes,acme,red,10.5,images/i1.png
i2,bags,bolt,blue,20,images/missing.png
i3,hats,acme,green,-5,images/i1.png
i4,tops,acme,red,7
"""


def _e2e_config(tmp_path, num_shards):
    raw = tmp_path / "raw"
    _write(raw / "events.csv", E2E_EVENTS)
    _write(raw / "items.csv", E2E_ITEMS)
    _write(raw / "users.csv", USERS_CSV)
    # i1 has a photo; i3 (invalid price) was embedded too; i2 is missing.
    write_embeddings(Config(run_dir=str(tmp_path / "run")).layout.item_embeddings,
                     [("i1", [0.5] * WIDTH, 1), ("i3", [1.0] * WIDTH, 1)])
    return Config(run_dir=str(tmp_path / "run"),
                  inputs=InputsConfig(events=str(raw / "events.csv"), items="../raw/items.csv",
                                      users="../raw/users.csv", images_root=str(raw)),
                  ingest=IngestConfig(eval_start="2026-11-12T00:00:00Z", num_shards=num_shards),
                  # Most of these tiny inputs are bad on purpose: no quality gate here.
                  dataset=dataclasses.replace(DATA, quality=ds.QualitySpec(max_bad_fraction=1.0)))


def _read_examples(pattern):
    files = sorted(glob.glob(pattern))
    spec = dict(R.raw_feature_spec(), timestamp=tf.io.FixedLenFeature([], tf.int64),
                sampled=tf.io.FixedLenFeature([], tf.int64))
    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        parsed = tf.io.parse_single_example(record, spec)
        rows.append({k: (v.numpy().decode() if v.dtype == tf.string else v.numpy())
                     for k, v in parsed.items()})
    return files, sorted(rows, key=lambda r: (r["timestamp"], r["user_id"]))


def test_ingest_without_the_embed_stage_fails_clearly(tmp_path):
    config = _e2e_config(tmp_path, num_shards=1)
    for path in glob.glob(config.layout.item_embeddings + "-*"):
        os.remove(path)
    with pytest.raises(FileNotFoundError, match="run it first"):
        ingest.run(config)


def test_run_end_to_end_and_rerun_leaves_no_stale_shards(tmp_path):
    config = _e2e_config(tmp_path, num_shards=3)
    first = ingest.run(config, ["--direct_num_workers=1"])
    layout = config.layout
    patterns = layout.ingest_outputs(config.splits)
    files, _ = _read_examples(patterns["train"])
    assert len(files) == 3

    config = _e2e_config(tmp_path, num_shards=2)  # fewer shards: old ones must go
    report = ingest.run(config)
    assert report["counts"] == first["counts"]
    files, train = _read_examples(patterns["train"])
    assert [os.path.basename(f) for f in files] == [
        "train-p00000-00000-of-00001.tfrecord.gz", "train-p00001-00000-of-00001.tfrecord.gz"]
    # One shard is named as a shard too: featurize and the trainer read `train-*`.
    report = ingest.run(_e2e_config(tmp_path, num_shards=1))
    assert report["counts"] == first["counts"]
    files, train_one = _read_examples(patterns["train"])
    assert [os.path.basename(f) for f in files] == ["train-p00000-00000-of-00001.tfrecord.gz"]
    assert sorted(map(str, train_one)) == sorted(map(str, train))
    _, evals = _read_examples(patterns["eval"])
    summary = [(r["timestamp"], r["user_id"], r["item_id"], r["click"], r["conversion"],
                r["item_has_image"], r["user_age"], r["user_region"]) for r in train + evals]
    assert summary == [
        (T0, "u1", "i1", 1, 1, 1, 30.0, "north"),
        (EVAL_START - 10, "u2", "i2", 1, 0, 0, 35.0, "south"),
        (EVAL_START + 100, "u3", "i2", 0, 0, 0, 35.0, "unknown"),
        (EVAL_START + 200, "u3", "i1", 0, 0, 1, 35.0, "unknown"),
    ]
    assert train[0]["item_image_embedding"].tolist() == [0.5] * WIDTH
    assert evals[0]["item_image_embedding"].tolist() == [0.0] * WIDTH  # i2: none joined

    items = sorted((decode(r.numpy(), R) for r in tf.data.TFRecordDataset(
        patterns["items"], compression_type="GZIP")), key=lambda r: r["item_id"])
    assert [(r["item_id"], r["item_price"], r["item_has_image"]) for r in items] == [
        ("i1", 10.5, 1), ("i2", 20.0, 0)]
    assert set(items[0]) == set(R.source_names(F.Source.ITEM))
    users = sorted((decode(r.numpy(), R) for r in tf.data.TFRecordDataset(
        patterns["users"], compression_type="GZIP")), key=lambda r: r["user_id"])
    assert users == [  # u3's age is out of range
        {"user_id": "u1", "user_age": 30.0, "user_region": "north", "user_membership": "gold"},
        {"user_id": "u2", "user_age": 35.0, "user_region": "south", "user_membership": "none"}]

    with open(patterns["eval_pairs"]) as f:
        assert sorted(f.read().splitlines()) == ["u3,i1", "u3,i2", "user_id,item_id"]
    with open(patterns["dead_letter"]) as f:
        dead = sorted((d["input"], d["reason"]) for d in map(json.loads, f))
    assert dead == sorted([
        ("events", "duplicate_event"), ("events", "unknown_item"), ("events", "bad_timestamp"),
        ("events", "bad_event_type"), ("events", "wrong_column_count"),
        ("events", "orphan_click"), ("items", "out_of_range"), ("items", "wrong_column_count"),
        ("users", "out_of_range"), ("embeddings", "missing_embedding")])

    with open(layout.ingest_report) as f:
        assert json.load(f) == report
    assert report["dead_letters"] == 10
    assert report["outputs"] == patterns
    expected = {
        "rows_read/events": 13, "rows_valid/events": 10, "rows_read/items": 4,
        "rows_valid/items": 2, "rows_read/users": 3, "rows_valid/users": 2,
        "rows_read/embeddings": 2, "rows_valid/embeddings": 1, "embeddings/with_image": 1,
        "embeddings/no_image": 0, "embeddings/unmatched": 1,
        "examples/train": 2, "examples/eval": 2,
        "positives/train/click": 2, "positives/train/conversion": 1,
        "positives/eval/click": 0, "positives/eval/conversion": 0,
        "dead_letter/events/duplicate_event": 1,
        "dead_letter/events/orphan_click": 1,
        "dead_letter/embeddings/missing_embedding": 1,
    }
    assert {k: report["counts"][k] for k in expected} == expected
