"""One row assembler: ingest and scoring build the same raw example, byte for byte.

A tiny shop goes through the real ``Ingest`` composite (no files: rows made
with ``beam.Create``), its examples are checked against rows derived by hand,
and the pairs scoring would rank are built through ``Score``'s
``BuildRawExamples`` (``pipelines.pair_join``) from ingest's own side tables.
For a user whose last event is the example's impression, the history after
their last event is the history at the example, so scoring must serve exactly
the bytes ingest wrote, less the labels and metadata scoring has no use for.
"""

import dataclasses

import apache_beam as beam
import pyarrow as pa
import tensorflow as tf
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import examples, ingest, pair_join, score
from pipelines.aggregates import pair_state
from pipelines.options import pipeline_options
from pipelines.rows import raw_row
from shoprec.core import config as config_lib
from shoprec.core import generated_shop
from shoprec.core import registry as F
from tests.pipelines.fixtures import history_registry

S, K = F.Source, F.Kind
# The generated shop's features plus history. No impression count: the
# scored impression is the user's last event, and it must not change the
# history scoring reads (impressions are not interactions, so the lists keep).
REGISTRY = history_registry(
    # A user x category count: its state is the user's (history table), the value
    # the candidate's category's; the scored pairs' are the example's.
    F.Feature("agg_user_category_clicks", S.AGGREGATE, K.NUMERIC,
              aggregate_key=("user_id", "item_category"), event_type="click"))
STATE = REGISTRY.pair_state_name(REGISTRY["agg_user_category_clicks"])

CONFIG = dataclasses.replace(config_lib.load(),
                             dataset=generated_shop.dataset(REGISTRY))
WIDTH = REGISTRY.embedding_feature().width
T1 = 1793714709  # 2026-11-03T14:05:09Z, before the eval start: every example is train


def _csv(**row):
    return ",".join(row.values()), row


EVENTS = [_csv(timestamp=str(T1), user_id="u1", item_id="i1", event_type="impression"),
          _csv(timestamp=str(T1 + 10), user_id="u1", item_id="i1", event_type="click"),
          _csv(timestamp=str(T1 + 1000), user_id="u1", item_id="i2", event_type="impression"),
          _csv(timestamp=str(T1 + 1500), user_id="u1", item_id="i3", event_type="impression"),
          _csv(timestamp=str(T1 + 2000), user_id="u2", item_id="i1", event_type="impression")]
ITEMS = [_csv(item_id="i1", category="c1", brand="b1", colour="red", price="10",
              image_path="i1.png"),
         _csv(item_id="i2", category="c2", brand="b2", colour="blue", price="30",
              image_path="i2.png"),
         _csv(item_id="i3", category="c1", brand="b2", colour="red", price="20",
              image_path="i3.png")]
USERS = [_csv(user_id="u1", age="30", region="north", membership="gold")]  # u2: unknown
EMBEDDINGS = [examples.encode_embedding({"item_id": "i1", "embedding": [0.25] * WIDTH,
                                         "has_image": 1}),
              examples.encode_embedding({"item_id": "i2", "embedding": [0.0] * WIDTH,
                                         "has_image": 0}),
              examples.encode_embedding({"item_id": "i3", "embedding": [0.0] * WIDTH,
                                         "has_image": 0})]

I1 = {"item_id": "i1", "item_category": "c1", "item_brand": "b1", "item_colour": "red",
      "item_price": 10.0, "item_image_embedding": [0.25] * WIDTH, "item_has_image": 1}
I2 = {"item_id": "i2", "item_category": "c2", "item_brand": "b2", "item_colour": "blue",
      "item_price": 30.0, "item_image_embedding": [0.0] * WIDTH, "item_has_image": 0}
I3 = {"item_id": "i3", "item_category": "c1", "item_brand": "b2", "item_colour": "red",
      "item_price": 20.0, "item_image_embedding": [0.0] * WIDTH, "item_has_image": 0}
U1 = {"user_id": "u1", "user_age": 30.0, "user_region": "north", "user_membership": "gold"}
# A user the users table lacks gets the registry's defaults.
U2 = {"user_id": "u2", "user_age": 35.0, "user_region": "unknown", "user_membership": "none"}
EMPTY = {"hist_items": [], "hist_categories": [], "hist_clicks": 0.0, "hist_item_matches": 0.0}
# u1 clicked i1 (category c1) at T1 + 10, before the impression of i2 at T1 + 1000;
# i2 is not among the items in that history, so its match count is 0.
AFTER_CLICK = {"hist_items": ["i1"], "hist_categories": ["c1"], "hist_clicks": 1.0,
               "hist_item_matches": 0.0}
# u1's one click is of i1, category c1: it counts for i3 (c1) at T1 + 1500, not for
# i1 at T1 (before it) nor i2 (c2). u2 has no click.
EXPECTED = [
    dict(U1, **I1, **EMPTY, click=1, conversion=0, timestamp=T1, sampled=0,
         agg_user_category_clicks=0.0),
    dict(U1, **I2, **AFTER_CLICK, click=0, conversion=0, timestamp=T1 + 1000, sampled=0,
         agg_user_category_clicks=0.0),
    dict(U1, **I3, **AFTER_CLICK, click=0, conversion=0, timestamp=T1 + 1500, sampled=0,
         agg_user_category_clicks=1.0),
    dict(U2, **I1, **EMPTY, click=0, conversion=0, timestamp=T1 + 2000, sampled=0,
         agg_user_category_clicks=0.0),
]
# The history table after the last events: u1 has events in c1 (one click) and c2
# (none), u2 in c1 (none); another category would be unseen (0 clicks).
FINAL_STATES = {"u1": {STATE: pair_state({"c1": 1.0, "c2": 0.0}, 0.0)},
                "u2": {STATE: pair_state({"c1": 0.0}, 0.0)}}
WRITTEN = REGISTRY.example_names() + [REGISTRY.timestamp_key, REGISTRY.sampled_key]


def _pipeline():
    return test_pipeline.TestPipeline(options=pipeline_options([]))


def _ingest(p):
    return {"events": p | "Events" >> beam.Create(EVENTS),
            "items": p | "Items" >> beam.Create(ITEMS),
            "users": p | "Users" >> beam.Create(USERS),
            "embeddings": p | "Embeddings" >> beam.Create(EMBEDDINGS)} | ingest.Ingest(CONFIG)


def test_raw_row_merges_event_user_item_and_history_by_hand():
    history = {"hist_items": ["i2", "i1"], "hist_categories": ["c2", "c1"], "hist_clicks": 2.0}
    event = {"user_id": "u1", "item_id": "i1", "click": 1, "conversion": 0}
    row = raw_row(event, None, I1, history, REGISTRY)
    # No user row: the registry's defaults; i1 is once in the history list: one match.
    # No aggregate state in that history: the pair aggregate is 0.
    assert {k: row[k] for k in REGISTRY.example_names()} == dict(
        U2, user_id="u1", **I1, **history, hist_item_matches=1.0, click=1, conversion=0,
        agg_user_category_clicks=0.0)
    # No history: the empty one, no matches; the user row's attributes are kept.
    row = raw_row({"user_id": "u1", "item_id": "i2"}, U1, I2, None, REGISTRY)
    assert {k: row[k] for k in REGISTRY.example_names(include_labels=False)} == dict(
        U1, **I2, **EMPTY, agg_user_category_clicks=0.0)
    # A state: the item's category's value, or the unseen one; an example's own
    # value (ingest's, computed at its time) is kept.
    history = dict(history, **{STATE: pair_state({"c1": 4.0}, 0.5)})
    for event, item, want in ((event, I1, 4.0), ({"user_id": "u1", "item_id": "i2"}, I2, 0.5),
                              (dict(event, agg_user_category_clicks=2.0), I1, 2.0)):
        row = raw_row(event, U1, item, history, REGISTRY)
        assert row["agg_user_category_clicks"] == want and STATE not in row


def test_ingest_composite_rows_by_hand():
    with _pipeline() as p:
        out = _ingest(p)
        assert_that(out.examples["train"] | beam.Map(lambda r: {k: r[k] for k in WRITTEN}),
                    equal_to(EXPECTED), label="Train")
        assert_that(out.examples["eval"], equal_to([]), label="Eval")
        assert_that(out.dead_letter, equal_to([]), label="NoDeadLetters")
        names = REGISTRY.history_table_names()[1:]
        assert_that(out.history, equal_to([
            ("u1", {k: dict(AFTER_CLICK, **FINAL_STATES["u1"])[k] for k in names}),
            ("u2", {k: dict(EMPTY, **FINAL_STATES["u2"])[k] for k in names})]),
            label="History")


def _without_labels(serialized):
    """An ingest example as scoring would build it: no labels, no metadata."""
    example = tf.train.Example.FromString(serialized)
    for name in [f.name for f in REGISTRY.labels()] + [REGISTRY.timestamp_key,
                                                        REGISTRY.sampled_key]:
        del example.features.feature[name]
    return example.SerializeToString(deterministic=True)


def _side_table(rows, names, key, label):
    """Ingest's table as scoring reads it back: encoded as written, decoded keyed."""
    return rows | label >> beam.Map(lambda row: score._keyed_row(
        examples.encode(row, names, REGISTRY), key, REGISTRY))


def _records(rows, names, key, label):
    """Ingest's user or history table as the join reads it: (id, encoded as written)."""
    return rows | label >> beam.Map(lambda row: pa.table(
        [pa.array([row[key]], pa.string()),
         pa.array([examples.encode(row, names, REGISTRY)], pa.binary())],
        schema=pair_join.RECORDS_SCHEMA))


def test_scoring_serves_the_bytes_ingest_wrote():
    last_impressions = [("u1", "i3"), ("u2", "i1")]
    with _pipeline() as p:
        out = _ingest(p)
        trained = (out.examples["train"]
                   | "Written" >> beam.Map(lambda r: (
                       (r["user_id"], r["item_id"]),
                       _without_labels(examples.encode(r, REGISTRY.example_names(), REGISTRY))))
                   | "LastImpressions" >> beam.Filter(lambda kv: kv[0] in last_impressions))
        items = _side_table(out.items | "ItemRows" >> beam.Values(),
                            REGISTRY.source_names(S.ITEM), REGISTRY.item_key, "ReadItems")
        users = _records(out.users | "UserRows" >> beam.Values(),
                         REGISTRY.source_names(S.USER), REGISTRY.user_key, "ReadUsers")
        history = _records(
            out.history | "HistoryRows" >> beam.MapTuple(lambda u, h: dict(h, user_id=u)),
            REGISTRY.history_table_names(), REGISTRY.user_key, "ReadHistory")
        served = (p
                  | "Pairs" >> beam.Create([pair_join.pairs_table(last_impressions)])
                  | pair_join.BuildRawExamples(users, items, REGISTRY, history, buckets=2))
        # Chunks of whole users: parallel arrays of user ids, item ids and examples.
        keyed = served.examples | "KeyServed" >> beam.FlatMap(lambda c: [
            ((u, i), x) for u, i, x in zip(c.user_ids.to_pylist(), c.item_ids.to_pylist(),
                                           c.examples)])
        same = ({"ingest": trained, "score": keyed}
                | beam.CoGroupByKey()
                | beam.MapTuple(lambda k, g: (k, len(g["ingest"]) == len(g["score"]) == 1
                                              and g["ingest"] == g["score"])))
        assert_that(same, equal_to([(("u1", "i3"), True), (("u2", "i1"), True)]), label="Same")
        # The pair u1-i3 is served u1's click in c1 (ingest's example has it too).
        values = keyed | "Values" >> beam.MapTuple(lambda k, x: (k, examples.decode(
            x, REGISTRY)["agg_user_category_clicks"]))
        assert_that(values, equal_to([(("u1", "i3"), 1.0), (("u2", "i1"), 0.0)]),
                    label="Values")
        assert_that(served[score.dead_letter.DEAD_LETTER_TAG], equal_to([]), label="NoDead")
