"""Leak test: history and aggregate features hold only strictly earlier events, and the
future changes nothing.

On a small generated shop with known event order, every history feature of
every example is compared with a brute-force recomputation from the raw log
(events of that user strictly before the example). Then every event from a
cut-off on is changed, dropped, or joined by new ones (a robotic burst
included), and no example before the cut-off changes.
"""

import csv
import dataclasses
import os

import pytest
import tensorflow as tf

from pipelines import aggregates as A
from pipelines import generate, ingest
from shoprec.core import config as config_lib
from shoprec.core import dataset as ds
from shoprec.core import generated_shop
from shoprec.core import registry as F
from shoprec.core.timestamps import parse_timestamp

S, K = F.Source, F.Kind
INTERACTIONS = ("click", "add_to_cart", "purchase", "other")
ORDER = {stage: i for i, stage in enumerate(ds.FUNNEL)}
# Photos play no part in history, so the shop is ingested without its embedding.
REGISTRY = F.Registry(tuple(
    f for f in generated_shop.REGISTRY.features
    if f.kind != K.EMBEDDING and f.name != "item_has_image") + (
    F.Feature("hist_items", S.HISTORY, K.HISTORY, history_of="item_id", max_length=5,
              vocabulary="item_id"),
    F.Feature("hist_categories", S.HISTORY, K.HISTORY, history_of="item_category",
              max_length=3, vocabulary="item_category"),
    F.Feature("hist_impressions", S.HISTORY, K.NUMERIC, event_type="impression"),
    F.Feature("hist_clicks", S.HISTORY, K.NUMERIC, event_type="click"),
    F.Feature("hist_purchases", S.HISTORY, K.NUMERIC, event_type="purchase"),
    F.Feature("hist_item_matches", S.HISTORY, K.NUMERIC, history_of="item_id"),
    # Point-in-time aggregates (exhaustively checked in test_aggregates.py): the
    # changed future below must not reach them either, nor their global prior.
    F.Feature("agg_user_click_rate", S.AGGREGATE, K.NUMERIC, aggregate_key=("user_id",),
              event_type="click", ratio_to="impression", smoothing=5.0),
    F.Feature("agg_item_clicks_1d", S.AGGREGATE, K.NUMERIC, aggregate_key=("item_id",),
              event_type="click", window_days=1),
    F.Feature("agg_category_purchases", S.AGGREGATE, K.NUMERIC,
              aggregate_key=("item_category",), event_type="purchase"),
    F.Feature("agg_user_category_click_rate", S.AGGREGATE, K.NUMERIC,
              aggregate_key=("user_id", "item_category"), event_type="click",
              ratio_to="impression", smoothing=5.0),
))
HISTORY = [f.name for f in REGISTRY.of_source(S.HISTORY)]
LABELS = [f.name for f in REGISTRY.labels()]


def _config(run_dir):
    base = config_lib.load()
    data = dataclasses.replace(
        generated_shop.dataset(REGISTRY), history=ds.HistorySpec(bucket_s=3600),
        anomaly=ds.AnomalySpec(window_s=60, max_events=30),
        # Changed future clicks become orphans: the gate is not what this test checks.
        quality=ds.QualitySpec(max_bad_fraction=1.0))
    return dataclasses.replace(
        base, run_dir=str(run_dir), dataset=data,
        generate=dataclasses.replace(base.generate, num_users=25, num_items=12, days=4,
                                     sessions_per_user=4.0, corrupt_fraction=0.0,
                                     duplicate_fraction=0.0, missing_image_fraction=0.0),
        ingest=dataclasses.replace(base.ingest, eval_start="2026-11-03T00:00:00Z", num_shards=1))


def _events(path):
    with open(path, newline="") as f:
        return [(parse_timestamp(r["timestamp"]), r["user_id"], r["item_id"], r["event_type"])
                for r in csv.DictReader(f)]


def _write_events(path, events):
    with open(path, "w", newline="") as f:
        f.write("timestamp,user_id,item_id,event_type\n")
        f.writelines(f"{t},{u},{i},{k}\n" for t, u, i, k in events)


def _examples(config):
    spec = dict(REGISTRY.raw_feature_spec(), timestamp=tf.io.FixedLenFeature([], tf.int64))
    pattern = os.path.dirname(config.layout.examples("train")) + "/*.tfrecord.gz"
    out = []
    for record in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type="GZIP"):
        parsed = tf.io.parse_single_example(record, spec)
        row = {}
        for name, value in parsed.items():
            if isinstance(value, tf.SparseTensor):
                value = [v.decode() for v in value.values.numpy()]
            else:
                value = value.numpy()
                value = value.decode() if isinstance(value, bytes) else value
            row[name] = value
        out.append(row)
    return out


def _brute_force(example, events, category):
    """The history of one example, recomputed from the whole raw log."""
    t, user = example["timestamp"], example["user_id"]
    before = sorted((e for e in events if e[1] == user and e[0] < t),
                    key=lambda e: (e[0], ORDER[e[3]], e[3], (e[2], category[e[2]])))
    recent = [e for e in reversed(before) if e[3] in INTERACTIONS]
    items = [e[2] for e in recent][:5]
    return {"hist_items": items, "hist_categories": [category[e[2]] for e in recent][:3],
            "hist_impressions": sum(e[3] == "impression" for e in before),
            "hist_clicks": sum(e[3] == "click" for e in before),
            "hist_purchases": sum(e[3] == "purchase" for e in before),
            "hist_item_matches": items.count(example["item_id"])}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    config = _config(tmp_path_factory.mktemp("leak") / "run")
    generate.run(config)
    ingest.run(config)
    return config


def test_every_history_feature_is_strictly_earlier(shop):
    events = _events(shop.input_path(shop.inputs.events))
    with open(shop.input_path(shop.inputs.items), newline="") as f:
        category = {r["item_id"]: r["category"] for r in csv.DictReader(f)}
    examples = _examples(shop)
    assert len(examples) > 300 and any(e["hist_items"] for e in examples)
    for example in examples:
        got = {name: example[name] for name in HISTORY}
        assert got == _brute_force(example, events, category), example["timestamp"]
        earlier = {e[2] for e in events if e[1] == example["user_id"]
                   and e[0] < example["timestamp"]}
        assert set(example["hist_items"]) <= earlier


def test_changing_the_future_changes_no_earlier_example(shop, tmp_path):
    events = _events(shop.input_path(shop.inputs.events))
    cut = sorted(e[0] for e in events)[len(events) // 2]
    items = sorted({e[2] for e in events})
    changed = []
    for n, (t, user, item, kind) in enumerate(events):
        if t < cut:
            changed.append((t, user, item, kind))
        elif n % 5:  # every fifth later event is dropped, every third moved to another item
            changed.append((t, user, items[(items.index(item) + 1) % len(items)]
                            if n % 3 == 0 else item, kind))
    user = events[0][1]
    burst = cut - cut % 60 + 60  # a robotic minute: 40 impressions
    changed += [(burst + k, user, items[k % len(items)], "impression") for k in range(40)]
    changed += [(cut + 3600, "newcomer", items[0], "impression")]

    config = dataclasses.replace(shop, run_dir=str(tmp_path / "run"), inputs=dataclasses.replace(
        shop.inputs, data_dir=shop.run_dir, events=str(tmp_path / "events.csv")))
    _write_events(str(tmp_path / "events.csv"), changed)
    report = ingest.run(config)
    assert report["counts"]["dead_letter/events/robot_user"] >= 40

    def earlier(rows):
        window = shop.ingest.click_window_s + shop.ingest.conversion_window_s
        out = {}
        for row in rows:
            if row["timestamp"] < cut:
                key = (row["user_id"], row["item_id"], row["timestamp"])
                # A label looks ahead by its windows: only settled ones must match.
                skip = LABELS if row["timestamp"] + window >= cut else []
                out[key] = {k: v for k, v in row.items() if k not in skip}
        return out

    before, after = earlier(_examples(shop)), earlier(_examples(config))
    assert before and before.keys() == after.keys()
    for key in before:
        assert before[key].keys() == after[key].keys()
        for name in before[key]:
            assert before[key][name] == after[key][name], (key, name)


def test_scoring_tables_carry_the_aggregates_after_the_last_event(shop):
    from pipelines import examples as ex
    events = _events(shop.input_path(shop.inputs.events))
    with open(shop.input_path(shop.inputs.items), newline="") as f:
        category = {r["item_id"]: r["category"] for r in csv.DictReader(f)}
    purchases = {c: sum(e[3] == "purchase" and category[e[2]] == c for e in events)
                 for c in set(category.values())}
    items = ex.read_table(shop.layout.items_table + "*", REGISTRY)
    assert len(items) == len(category) and max(purchases.values()) > 0
    for row in items:
        assert row["agg_category_purchases"] == purchases[category[row["item_id"]]]
    history = ex.read_table(shop.layout.history_table + "*", REGISTRY)
    assert history and all(0.0 <= row["agg_user_click_rate"] <= 1.0 for row in history)
    # The user x category click rate's state: per category the user has events in,
    # the definition's value a second after the log's last event; others the prior.
    feature = REGISTRY["agg_user_category_click_rate"]
    after = max(e[0] for e in events) + 1
    typed = [(e[0], e[3]) for e in events]
    unseen = A.brute_force([feature], after, [], typed)[feature.name]
    for row in history:
        state = A.read_pair_state(row[REGISTRY.pair_state_name(feature)])
        mine = [e for e in events if e[1] == row["user_id"]]
        assert state["unseen"] == pytest.approx(unseen) and 0.0 < unseen < 1.0
        assert state["by_value"].keys() == {category[e[2]] for e in mine}
        for value, got in state["by_value"].items():
            want = A.brute_force([feature], after, [(e[0], e[3]) for e in mine
                                                    if category[e[2]] == value], typed)
            assert got == pytest.approx(want[feature.name]), (row["user_id"], value)
