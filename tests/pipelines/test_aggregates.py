"""Point-in-time aggregates: hand-derived values, the definition, and no event at or after t."""

import random

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import aggregates as A
from pipelines import keyed
from pipelines.options import pipeline_options
from pipelines.rows import raw_row
from shoprec.core import registry as F

S, K = F.Source, F.Kind
D = A.DAY_S
AGGREGATES = (
    F.Feature("u_clicks", S.AGGREGATE, K.NUMERIC, aggregate_key=("user_id",),
              event_type="click"),
    F.Feature("u_buy_rate", S.AGGREGATE, K.NUMERIC, aggregate_key=("user_id",),
              event_type="purchase", ratio_to="click", smoothing=2.0),
    F.Feature("i_clicks_1d", S.AGGREGATE, K.NUMERIC, aggregate_key=("item_id",),
              event_type="click", window_days=1),
    F.Feature("c_buys_2d", S.AGGREGATE, K.NUMERIC, aggregate_key=("item_category",),
              event_type="purchase", window_days=2),
    F.Feature("uc_clicks", S.AGGREGATE, K.NUMERIC, aggregate_key=("user_id", "item_category"),
              event_type="click"),
    F.Feature("uc_buy_rate", S.AGGREGATE, K.NUMERIC, aggregate_key=("user_id", "item_category"),
              event_type="purchase", ratio_to="click", smoothing=2.0),
)
REGISTRY = F.Registry((
    F.Feature("user_id", S.EVENT, K.ID),
    F.Feature("item_id", S.EVENT, K.ID),
    F.Feature("item_category", S.ITEM, K.CATEGORICAL),
) + AGGREGATES)
CATEGORY = {"i1": "c1", "i2": "c2", "i3": "c1", "i4": "c2"}
ITEMS = [(i, {"item_id": i, "item_category": c}) for i, c in CATEGORY.items()]


def _event(ts, user, item, kind):
    return {"timestamp": ts, "user_id": user, "item_id": item, "event_type": kind}


EVENTS = [
    _event(100, "u1", "i1", "click"), _event(200, "u1", "i1", "purchase"),
    _event(300, "u2", "i2", "click"),
    _event(D + 50, "u1", "i2", "click"), _event(D + 50, "u2", "i1", "click"),
    _event(D + 400, "u2", "i1", "purchase"),
    _event(2 * D + 10, "u1", "i3", "click"),
    _event(3 * D + 5, "u2", "i3", "purchase"),
]


def _example(user, item, ts):
    return {"user_id": user, "item_id": item, "timestamp": ts}


def _values(u_clicks, u_buy_rate, i_clicks_1d, c_buys_2d, uc_clicks, uc_buy_rate):
    return {"u_clicks": u_clicks, "u_buy_rate": u_buy_rate, "i_clicks_1d": i_clicks_1d,
            "c_buys_2d": c_buys_2d, "uc_clicks": uc_clicks, "uc_buy_rate": uc_buy_rate}


# Derived by hand. The prior p is the purchase / click rate of all days before the
# example's day: none on day 0 (p = 0), day 0 on day 1 (1 / 2), days 0-1 on day 2
# (2 / 4). Windows: i_clicks_1d is the example's day so far, c_buys_2d also the day
# before. An event at the example's own second never counts (D + 50, D + 400).
# uc_buy_rate: the user's purchases / clicks in the item's category (u1 in c2 has
# nothing before D + 50; u2 in c1 one click at D + 50; u1 in c1 clicks at 100 and
# 2D + 10, a purchase at 200).
EXPECTED = [
    (_example("u1", "i1", 100), _values(0.0, (0 + 2 * 0) / (0 + 2), 0.0, 0.0, 0.0, 0.0)),
    (_example("u1", "i2", D + 50), _values(1.0, (1 + 2 * 0.5) / (1 + 2), 0.0, 0.0, 0.0,
                                           (0 + 2 * 0.5) / (0 + 2))),
    (_example("u2", "i1", D + 400), _values(2.0, (0 + 2 * 0.5) / (2 + 2), 1.0, 1.0, 1.0,
                                            (0 + 2 * 0.5) / (1 + 2))),
    (_example("u1", "i3", 2 * D + 500), _values(3.0, (1 + 2 * 0.5) / (3 + 2), 1.0, 1.0, 2.0,
                                                (1 + 2 * 0.5) / (2 + 2))),
]
# A user probe (no item) gets the user aggregates only: u2 before day 2.
PROBE = {"user_id": "u2", "timestamp": 2 * D, "_probe": 1}
PROBE_EXPECTED = dict(PROBE, u_clicks=2.0, u_buy_rate=(1 + 2 * 0.5) / (2 + 2))
# After the last event (day 3, p = 2 / 5 from days 0-2). The pair aggregates'
# states: per category the user has events in (u1: clicks c1 2, c2 1, a purchase in
# c1; u2: clicks c1 1, c2 1, purchases in c1 2), and for any other category no event
# (a count of 0, the ratio's prior 2 * 0.4 / 2).
FINAL_USERS = [
    ("u1", {"u_clicks": 3.0, "u_buy_rate": (1 + 2 * 0.4) / (3 + 2),
            "uc_clicks__by_value": {"by_value": {"c1": 2.0, "c2": 1.0}, "unseen": 0.0},
            "uc_buy_rate__by_value": {"by_value": {"c1": (1 + 2 * 0.4) / (2 + 2),
                                                   "c2": (0 + 2 * 0.4) / (1 + 2)},
                                      "unseen": 0.4}}),
    ("u2", {"u_clicks": 2.0, "u_buy_rate": (2 + 2 * 0.4) / (2 + 2),
            "uc_clicks__by_value": {"by_value": {"c1": 1.0, "c2": 1.0}, "unseen": 0.0},
            "uc_buy_rate__by_value": {"by_value": {"c1": (2 + 2 * 0.4) / (1 + 2),
                                                   "c2": (0 + 2 * 0.4) / (1 + 2)},
                                      "unseen": 0.4}})]
FINAL_ITEMS = [(i, {"item_id": i, "item_category": c, "i_clicks_1d": 0.0,
                    "c_buys_2d": 1.0 if c == "c1" else 0.0}) for i, c in CATEGORY.items()]


def _rows(expected):
    return [dict(example, **values) for example, values in expected]


def _run(pipeline, events, examples, label):
    return ((pipeline | f"{label}Examples" >> beam.Create(examples))
            | f"{label}Aggregates" >> A.AddAggregates(
                REGISTRY, pipeline | f"{label}Events" >> beam.Create(events),
                pipeline | f"{label}Items" >> beam.Create(ITEMS)))


def _round(value):
    """Floats to 9 places, inside mappings too; a pair aggregate's state decoded first."""
    if isinstance(value, str) and value.startswith("{"):
        value = A.read_pair_state(value)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return round(value, 9) if isinstance(value, float) else value


def _close(expected):
    """equal_to, with floats compared to 1e-9 (ratios are sums of thirds and fifths)."""
    def rounded(rows):
        return [_round(r) if isinstance(r, dict) else (r[0], _round(r[1])) for r in rows]
    want = rounded(expected)

    def check(actual):
        equal_to(want)(rounded(actual))
    return check


def test_hand_derived_values_and_final_state():
    with test_pipeline.TestPipeline(options=pipeline_options(None)) as p:
        out = _run(p, EVENTS, [e for e, _ in EXPECTED] + [PROBE], "Hand")
        assert_that(out.main, _close(_rows(EXPECTED) + [PROBE_EXPECTED]), label="Main")
        assert_that(out.users, _close(FINAL_USERS), label="Users")
        assert_that(out.items, _close(FINAL_ITEMS), label="Items")


def test_scoring_serves_what_an_example_after_the_last_event_would_get():
    """Every (user, item) of the log's users: the raw row scoring builds from the final
    tables of the hand run equals the aggregates of an example a second after the log's
    last event (pair aggregates looked up per category; c3, which nobody has events in,
    from the state's unseen value). A user the log lacks is served 0 (no history row)."""
    after = max(e["timestamp"] for e in EVENTS) + 1
    items = ITEMS + [("i5", {"item_id": "i5", "item_category": "c3"})]
    pairs = [(u, i) for u in ("u1", "u2") for i, _ in items]
    names = [f.name for f in AGGREGATES]
    with test_pipeline.TestPipeline(options=pipeline_options(None)) as p:
        events, table = p | "Events" >> beam.Create(EVENTS), p | "Items" >> beam.Create(items)
        final = ((p | "Hand" >> beam.Create([e for e, _ in EXPECTED]))
                 | "Final" >> A.AddAggregates(REGISTRY, events, table))
        later = ((p | "After" >> beam.Create([_example(u, i, after) for u, i in pairs]))
                 | "Later" >> A.AddAggregates(REGISTRY, events, table))

        def served(example, users, table):
            user, item = example["user_id"], example["item_id"]
            history = A.with_user_aggregates({}, users[user], REGISTRY)
            row = raw_row({"user_id": user, "item_id": item}, None, table[item], history,
                          REGISTRY)
            assert set(row) == set(REGISTRY.example_names())  # no state column left
            return (user, item), _round({n: row[n] for n in names}) == _round(
                {n: example[n] for n in names})

        same = later.main | beam.Map(served, users=beam.pvalue.AsDict(final.users),
                                     table=beam.pvalue.AsDict(final.items))
        assert_that(same, equal_to([(pair, True) for pair in pairs]))
    row = raw_row({"user_id": "u9", "item_id": "i1"}, None, dict(ITEMS)["i1"], None, REGISTRY)
    assert (row["uc_clicks"], row["uc_buy_rate"], row["u_buy_rate"]) == (0.0, 0.0, 0.0)


def _brute(example, events):
    item = example.get("item_id")
    out = {}
    for key, features in A.key_groups(AGGREGATES).items():
        def key_of(user, item_id):
            return tuple(user if n == "user_id" else item_id if n == "item_id"
                         else CATEGORY[item_id] for n in key)
        if item is None and key != ("user_id",):
            continue
        mine = key_of(example["user_id"], item)
        key_events = [(e["timestamp"], e["event_type"]) for e in events
                      if key_of(e["user_id"], e["item_id"]) == mine]
        out.update(A.brute_force(features, example["timestamp"], key_events,
                                 [(e["timestamp"], e["event_type"]) for e in events]))
    return dict(example, **out)


def test_the_definition_gives_the_hand_values():
    for got, want in zip([_brute(e, EVENTS) for e, _ in EXPECTED], _rows(EXPECTED)):
        assert got.keys() == want.keys()
        assert all(got[k] == pytest.approx(want[k]) for k in want), want


def test_streaming_equals_the_definition_on_a_random_log():
    rng = random.Random(7)
    kinds = ("click", "click", "click", "add_to_cart", "purchase")
    events = [_event(rng.randrange(0, 6 * D), f"u{rng.randrange(4)}", f"i{rng.randrange(1, 5)}",
                     rng.choice(kinds)) for _ in range(120)]
    examples = [_example(e["user_id"], e["item_id"], e["timestamp"]) for e in events[::3]]
    examples = list({tuple(sorted(e.items())): e for e in examples}.values())
    with test_pipeline.TestPipeline(options=pipeline_options(None)) as p:
        out = _run(p, events, examples, "Random")
        assert_that(out.main, _close([_brute(e, events) for e in examples]))


def test_no_event_at_or_after_an_example_changes_it():
    """Exhaustive on the hand log: drop each event in turn, or add one at each example's
    own second (same user and item), and every example at or before it is unchanged."""
    expected = _rows(EXPECTED)
    variants = [(EVENTS[:j] + EVENTS[j + 1:], EVENTS[j]["timestamp"])
                for j in range(len(EVENTS))]
    variants += [(EVENTS + [_event(e["timestamp"], e["user_id"], e["item_id"], kind)],
                  e["timestamp"]) for e, _ in EXPECTED for kind in ("click", "purchase")]
    with test_pipeline.TestPipeline(options=pipeline_options(None)) as p:
        for n, (events, cut) in enumerate(variants):
            out = _run(p, events, [e for e, _ in EXPECTED], f"V{n}")
            settled = (out.main | f"V{n}Settled" >> beam.Filter(
                lambda r, cut=cut: r["timestamp"] <= cut))
            assert_that(settled, _close([r for r in expected if r["timestamp"] <= cut]),
                        label=f"V{n}Check")
    # Every variant constrains an example: the check above cannot pass vacuously.
    assert all(any(r["timestamp"] <= cut for r in expected) for _, cut in variants[1:])


def _skewed_log(bot_events):
    """Ten people clicking the one item everyone buys (i1) on three days, and a bot
    with ``bot_events`` events on i1 and i2 inside 40 seconds of one day."""
    people = [_event(d * D + 100 * u, f"u{u}", "i1", kind) for d in range(3)
              for u in range(10) for kind in ("click", "purchase")]
    bot = [_event(D + 5000 + k % 40, "bot", f"i{1 + k % 2}", ("click", "purchase")[k % 3 == 0])
           for k in range(bot_events)]
    return people + bot


def test_a_bot_and_an_item_everyone_buys_are_never_one_group():
    """An example per event: the streamed values equal the definition, and no grouping
    step lists more of one key than its seconds (40 for the bot's day) or days, though
    the bot has 1,200 events and examples and i1 1,260: a group listing the bot's day
    of events and examples would hold 2,400."""
    events = _skewed_log(1200)
    examples = [_example(e["user_id"], e["item_id"], e["timestamp"]) for e in events]
    pipeline = beam.Pipeline(options=pipeline_options(None))
    out = _run(pipeline, events, examples, "Skewed")
    assert_that(out.main, _close([_brute(e, events) for e in examples]))
    held = keyed.largest_held(pipeline.run())
    assert held["aggregates/seconds_of_day"] <= 2 * 40
    assert held["aggregates/days_of_key"] <= 2 * 4
