"""Examples assembled from user and item parts are the bytes of the row assembler's rows.

For every pair of a small shop with history (lists, counts and match counts,
a user x category aggregate, an item aggregate, known and unknown users, with
and without a history), the assembled example
must be ``examples.encode(raw_row(...))`` byte for byte: ``raw_row`` stays the
one definition of a scoring row.
"""

import itertools

import tensorflow as tf

from pipelines import examples
from pipelines.aggregates import pair_state
from pipelines.pair_examples import PairExamples
from pipelines.rows import raw_row
from shoprec.core import generated_shop
from shoprec.core import registry as F
from tests.pipelines.fixtures import history_registry

S, K = F.Source, F.Kind
REGISTRY = history_registry(
    F.Feature("hist_category_matches", S.HISTORY, K.NUMERIC, history_of="item_category"),
    # A user x category aggregate: its value depends on both parts, like a match count.
    F.Feature("agg_user_category_buy_rate", S.AGGREGATE, K.NUMERIC,
              aggregate_key=("user_id", "item_category"), event_type="purchase",
              ratio_to="click", smoothing=2.0),
    # Served from the item table's row, like an attribute.
    F.Feature("agg_item_buys", S.AGGREGATE, K.NUMERIC, aggregate_key=("item_id",),
              event_type="purchase", log=True))
STATE = REGISTRY.pair_state_name(REGISTRY["agg_user_category_buy_rate"])
NAMES = REGISTRY.example_names(include_labels=False)
WIDTH = REGISTRY.embedding_feature().width


def _item(item_id, category, price, has_image):
    return {"item_id": item_id, "item_category": category, "item_brand": "b",
            "item_colour": "red", "item_price": price,
            "item_image_embedding": [0.5 * has_image] * WIDTH, "item_has_image": has_image,
            "agg_item_buys": price / 2}


ITEMS = [_item("i1", "c1", 10.0, 1), _item("i2", "c2", 30.5, 0), _item("i3", "c1", 0.0, 1)]
USERS = {"u1": {"user_id": "u1", "user_age": 30.0, "user_region": "north",
                "user_membership": "gold"},
         "u3": {"user_id": "u3", "user_age": 61.0, "user_region": "south",
                "user_membership": "none"}}
# u1 and u2 have a history (u2 is not in the users table: defaults), u3 none.
# Their buy rates per category: u1 has events in c1 only, u2 in c2 only.
HISTORY = {"u1": {"hist_items": ["i1", "i3", "i1"], "hist_categories": ["c1", "c1"],
                  "hist_clicks": 3.0, STATE: pair_state({"c1": 0.25}, 0.125)},
           "u2": {"hist_items": ["i2"], "hist_categories": ["c2"], "hist_clicks": 1.0,
                  STATE: pair_state({"c2": 0.5}, 0.125)}}


def test_every_pair_is_the_bytes_of_its_raw_row():
    assemble = PairExamples(REGISTRY)
    seen, rates = set(), {}
    for user_id, item in itertools.product(["u1", "u2", "u3", "u4"], ITEMS):
        user, history = USERS.get(user_id), HISTORY.get(user_id)
        part = assemble.user(user_id, user, history)
        got = assemble.example(part, item["item_id"], item, assemble.item(item))
        row = raw_row({"user_id": user_id, "item_id": item["item_id"]}, user, item, history,
                      REGISTRY)
        assert got == examples.encode(row, NAMES, REGISTRY), (user_id, item["item_id"])
        parsed = tf.io.parse_single_example(got, REGISTRY.raw_feature_spec(
            include_labels=False))
        seen.add(parsed["hist_item_matches"].numpy().item())
        rates[user_id, item["item_id"]] = parsed["agg_user_category_buy_rate"].numpy().item()
        assert parsed["agg_item_buys"].numpy().item() == item["agg_item_buys"]
    # u1's history holds i1 twice and i3 once; u2's i2 once: the match
    # counts vary per pair, so the pair part was really assembled per pair.
    assert seen == {0.0, 1.0, 2.0}
    # The buy rate is the state's for the item's category, the unseen value for
    # another, 0 without a history (u3, u4).
    assert rates == {("u1", "i1"): 0.25, ("u1", "i2"): 0.125, ("u1", "i3"): 0.25,
                     ("u2", "i1"): 0.125, ("u2", "i2"): 0.5, ("u2", "i3"): 0.125,
                     **{(u, i["item_id"]): 0.0 for u in ("u3", "u4") for i in ITEMS}}


def test_many_pairs_at_once_are_each_pairs_example():
    for registry in (REGISTRY, generated_shop.REGISTRY):
        assemble = PairExamples(registry)
        users = [assemble.user(u, USERS.get(u), HISTORY.get(u)) for u in ["u1", "u2", "u3"]]
        items = [(item["item_id"], item, assemble.item(item)) for item in ITEMS]
        user_index, item_index = [0, 0, 2, 1, 1, 1, 2], [2, 0, 1, 0, 1, 2, 2]
        got = assemble.examples(users, user_index, items, item_index)
        assert got == [assemble.example(users[u], *items[i])
                       for u, i in zip(user_index, item_index)]
        assert assemble.examples(users, [], items, []) == []


def test_without_history_an_example_is_the_item_part_then_the_user_part():
    registry = generated_shop.REGISTRY
    assemble = PairExamples(registry)
    item = ITEMS[1]
    part = assemble.user("u1", USERS["u1"], None)
    (item_run,) = assemble.item(item)
    (user_run,) = part.runs
    # Every item_* name sorts before every user_* name: two runs, no pair part.
    assert assemble.example(part, "i2", item, (item_run,)) == examples.framed(
        item_run + user_run) == examples.encode(
        raw_row({"user_id": "u1", "item_id": "i2"}, USERS["u1"], item, None, registry),
        registry.example_names(include_labels=False), registry)


def test_users_first_two_runs_too():
    # Every user name sorts before every item name here: the user run comes first.
    registry = F.Registry(features=(
        F.Feature("a_uid", S.EVENT, K.ID), F.Feature("y_iid", S.EVENT, K.ID),
        F.Feature("b_age", S.USER, K.NUMERIC), F.Feature("z_price", S.ITEM, K.NUMERIC),
        F.Feature("click", S.EVENT, K.LABEL)), user_key="a_uid", item_key="y_iid")
    assemble = PairExamples(registry)
    users = [assemble.user(u, {"a_uid": u, "b_age": age}, None)
             for u, age in (("u1", 30.0), ("u22", 41.5))]
    items = [(i, {"y_iid": i, "z_price": p}, assemble.item({"y_iid": i, "z_price": p}))
             for i, p in (("i1", 1.0), ("i333", 2.5))]
    user_index, item_index = [0, 1, 1, 0], [1, 0, 1, 0]
    names = registry.example_names(include_labels=False)
    assert assemble.examples(users, user_index, items, item_index) == [
        examples.encode(raw_row({"user_id": users[u].user_id, "item_id": items[i][0]},
                                users[u].user, items[i][1], None, registry), names, registry)
        for u, i in zip(user_index, item_index)]


def test_labelled_examples_are_ingests_bytes_of_the_raw_row():
    # Ingest's examples: the labels, timestamp and sampled flag are the event's part
    # (a timestamp's varint of one byte, two and ten: a negative one takes the slow path).
    registry = generated_shop.REGISTRY
    assemble = PairExamples(registry, labelled=True)
    encoder = examples.Encoder(registry.example_names(), registry)
    items = [{k: v for k, v in item.items() if k != "agg_item_buys"} for item in ITEMS]
    for (user_id, item), (click, conversion, ts) in itertools.product(
            itertools.product(["u1", "u3", "u4"], items),
            [(0, 0, 0), (1, 0, 127), (1, 1, 1793613600), (0, 1, 128), (0, 0, -1)]):
        event = {"user_id": user_id, "item_id": item["item_id"], "click": click,
                 "conversion": conversion, "timestamp": ts, "sampled": 0}
        got = assemble.example(assemble.user(user_id, USERS.get(user_id), None),
                               item["item_id"], item, assemble.item(item), event)
        assert got == encoder(raw_row(event, USERS.get(user_id), item, None, registry))
        parsed = tf.io.parse_single_example(got, dict(
            registry.raw_feature_spec(), timestamp=tf.io.FixedLenFeature([], tf.int64)))
        assert (parsed["click"].numpy(), parsed["timestamp"].numpy()) == (click, ts)
