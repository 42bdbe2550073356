"""Point-in-time aggregates: hand-derived values, the definition, and no event at or after t."""

import random

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import aggregates as A
from pipelines.options import pipeline_options
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


def _values(u_clicks, u_buy_rate, i_clicks_1d, c_buys_2d, uc_clicks):
    return {"u_clicks": u_clicks, "u_buy_rate": u_buy_rate, "i_clicks_1d": i_clicks_1d,
            "c_buys_2d": c_buys_2d, "uc_clicks": uc_clicks}


# Derived by hand. The prior p is the purchase / click rate of all days before the
# example's day: none on day 0 (p = 0), day 0 on day 1 (1 / 2), days 0-1 on day 2
# (2 / 4). Windows: i_clicks_1d is the example's day so far, c_buys_2d also the day
# before. An event at the example's own second never counts (D + 50, D + 400).
EXPECTED = [
    (_example("u1", "i1", 100), _values(0.0, (0 + 2 * 0) / (0 + 2), 0.0, 0.0, 0.0)),
    (_example("u1", "i2", D + 50), _values(1.0, (1 + 2 * 0.5) / (1 + 2), 0.0, 0.0, 0.0)),
    (_example("u2", "i1", D + 400), _values(2.0, (0 + 2 * 0.5) / (2 + 2), 1.0, 1.0, 1.0)),
    (_example("u1", "i3", 2 * D + 500), _values(3.0, (1 + 2 * 0.5) / (3 + 2), 1.0, 1.0, 2.0)),
]
# A user probe (no item) gets the user aggregates only: u2 before day 2.
PROBE = {"user_id": "u2", "timestamp": 2 * D, "_probe": 1}
PROBE_EXPECTED = dict(PROBE, u_clicks=2.0, u_buy_rate=(1 + 2 * 0.5) / (2 + 2))
# After the last event (day 3, p = 2 / 5 from days 0-2).
FINAL_USERS = [("u1", {"u_clicks": 3.0, "u_buy_rate": (1 + 2 * 0.4) / (3 + 2)}),
               ("u2", {"u_clicks": 2.0, "u_buy_rate": (2 + 2 * 0.4) / (2 + 2)})]
FINAL_ITEMS = [(i, {"item_id": i, "item_category": c, "i_clicks_1d": 0.0,
                    "c_buys_2d": 1.0 if c == "c1" else 0.0}) for i, c in CATEGORY.items()]


def _rows(expected):
    return [dict(example, **values) for example, values in expected]


def _run(pipeline, events, examples, label):
    return ((pipeline | f"{label}Examples" >> beam.Create(examples))
            | f"{label}Aggregates" >> A.AddAggregates(
                REGISTRY, pipeline | f"{label}Events" >> beam.Create(events),
                pipeline | f"{label}Items" >> beam.Create(ITEMS)))


def _close(expected):
    """equal_to, with floats compared to 1e-9 (ratios are sums of thirds and fifths)."""
    def rounded(rows):
        return [{k: round(v, 9) if isinstance(v, float) else v for k, v in r.items()}
                if isinstance(r, dict) else (r[0], {k: round(v, 9) if isinstance(v, float)
                                                    else v for k, v in r[1].items()})
                for r in rows]
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
