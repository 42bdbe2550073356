"""Roles of an event log's columns, on hand-made tables, and the cases the data cannot decide."""

import pytest

from shoprec.core import infer
from shoprec.core.infer import Hints, Undecided
from shoprec.core.profile import profiles


def _table(columns, rows):
    return profiles(columns, [dict(zip(columns, r)) for r in rows])


EVENTS = _table(["when", "visitor", "sku", "what", "price"],
                [(f"2024-03-0{1 + i % 5}", f"v{i % 7}", f"s{i % 11}",
                  ["view", "cart", "buy"][i % 3], "9.5") for i in range(60)])


def test_timestamp_role_and_its_evidence():
    column, fmt, why = infer.timestamp_role(EVENTS, Hints())
    assert (column, fmt) == ("when", "%Y-%m-%d")
    assert why == "100.0% of 60 values parse as %Y-%m-%d"
    # A second time column: the one named like a time wins; two such are undecided.
    two = _table(["ts", "shipped"], [("1700000000", "1700000500")] * 3)
    assert infer.timestamp_role(two, Hints())[0] == "ts"
    both = _table(["created_at", "updated_at"], [("1700000000", "1700000500")] * 3)
    with pytest.raises(Undecided, match=r"2 columns parse as timestamps \(created_at, "
                                        r"updated_at\); pass --timestamp_col COLUMN"):
        infer.timestamp_role(both, Hints())
    assert infer.timestamp_role(both, Hints(timestamp_col="updated_at"))[:2] == (
        "updated_at", "unix_s")


def test_ids_by_the_side_tables_keys_else_by_name():
    items = _table(["code", "colour"], [(f"s{i}", "red") for i in range(11)])
    column, key, share, why = infer.id_role("item", EVENTS, items, "items.csv", ["when"], None)
    assert (column, key, share) == ("sku", "code", 1.0)
    assert why == "100.0% of its values are items.csv's code values"
    assert infer.id_role("user", EVENTS, None, "", ["when", "sku"], None)[:2] == ("visitor", None)
    # Half the events' items in the catalogue: found, with the share.
    half = _table(["code"], [(f"s{i}",) for i in range(0, 11, 2)])
    assert infer.id_role("item", EVENTS, half, "items.csv", ["when"], None)[2] == pytest.approx(
        sum(i % 11 % 2 == 0 for i in range(60)) / 60)


def test_two_plausible_user_ids_are_undecided():
    two = _table(["user_id", "customer_id", "item_id"],
                 [(f"u{i}", f"c{i}", f"i{i}") for i in range(5)])
    with pytest.raises(Undecided) as err:
        infer.id_role("user", two, None, "", [], None)
    assert str(err.value) == ("events: two plausible user ids, user_id and customer_id; pass "
                              "--user_col COLUMN")
    assert infer.id_role("user", two, None, "", [], "customer_id")[0] == "customer_id"
    with pytest.raises(Undecided, match="--user_col nobody: the events have no such column"):
        infer.id_role("user", two, None, "", [], "nobody")


def test_event_values_map_to_the_funnel():
    column, mapping, value, why = infer.event_role(EVENTS, ["when", "visitor", "sku"], Hints())
    assert column == "what" and value is None
    assert dict(mapping) == {"view": "click", "cart": "add_to_cart", "buy": "purchase"}
    assert why == "3 values: view→click, cart→add_to_cart, buy→purchase"
    # No event column at all: a purchase log.
    plain = _table(["t", "u", "i"], [("1700000000", "u1", "i1")] * 3)
    assert infer.event_role(plain, ["t", "u", "i"], Hints())[:3] == (None, (), "purchase")
    assert infer.event_role(plain, [], Hints(event_value="view"))[2] == "click"


def test_unknown_event_values_are_undecided_until_mapped():
    log = _table(["action"], [(v,) for v in ["pv"] * 6 + ["zap"] * 3 + ["buy"]])
    with pytest.raises(Undecided) as err:
        infer.event_role(log, [], Hints())
    assert str(err.value) == ("events.action: values 'zap' (30.0%) are no known event type; "
                              "pass --event_map click=pv,purchase=buy,other=zap")
    hints = Hints(event_map=infer.parse_event_map("cart=zap"))
    assert dict(infer.event_role(log, [], hints)[1]) == {
        "pv": "click", "zap": "add_to_cart", "buy": "purchase"}
    with pytest.raises(Undecided, match="expected STAGE=VALUE"):
        infer.parse_event_map("basket")


def test_label_modes():
    assert infer.label_mode({"impression": 500, "click": 40, "purchase": 25})[:2] == (
        "impressions", ("click", "purchase"))
    assert infer.label_mode({"impression": 500, "click": 40, "purchase": 3})[:2] == (
        "impressions", ("click",))
    assert infer.label_mode({"click": 900, "add_to_cart": 30, "purchase": 20, "other": 5})[:2] \
        == ("funnel", ("add_to_cart", "purchase"))
    assert infer.label_mode({"purchase": 900})[:2] == ("sampled", ("purchase",))
    with pytest.raises(Undecided, match="too few events of any funnel step"):
        infer.label_mode({"purchase": 19})
