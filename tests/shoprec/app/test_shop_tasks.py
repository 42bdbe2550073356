"""The shipped four-task shop config, end to end on a small generated shop.

Every stage through ``cli.main`` as a user runs them (generate, embed,
ingest, featurize, train, push, score), on ``configs/shop_tasks.yaml`` with
only its sizes made small: one SavedModel with every task's output, and
scores carrying them all.
"""

import glob
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from shoprec.app import cli
from shoprec.core import config as config_lib
from pipelines import generate

SHIPPED = "shoprec/configs/shop_tasks.yaml"


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("shop_tasks")
    with open(SHIPPED) as f:
        data = yaml.safe_load(f)
    data["run_dir"] = str(root / "run")
    data["generate"].update(num_users=120, num_items=24, sessions_per_user=4.0,
                            bot_fraction=0.1)
    data["embed"].update(min_steps=30, epochs=1)
    data["ingest"]["num_shards"] = 2
    data["model"].update(bottom_units=[16], tower_units=[8])
    data["training"].update(epochs=1, per_replica_batch_size=128)
    data["gate"]["min_auc"] = 0.0  # one epoch on a tiny shop: the gate is not tested here
    path = root / "shop_tasks.yaml"
    path.write_text(yaml.safe_dump(data))
    for stage in ("generate", "embed", "ingest", "featurize", "train", "push", "score"):
        assert cli.main([stage, "--config", str(path)]) == 0, stage
    return config_lib.load(str(path))


def test_every_task_is_trained_evaluated_and_scored(shop):
    with open(shop.layout.metrics_file) as f:
        metrics = json.load(f)
    tasks = metrics["tasks"]
    assert sorted(tasks) == ["anomaly", "category", "click", "colour", "conversion", "interest"]
    for name in ("interest", "category", "colour"):
        assert {"accuracy", "top_3_accuracy", "ndcg_at_3", "macro_f1"} <= set(tasks[name])
        assert tasks[name]["top_3_accuracy"] >= tasks[name]["accuracy"]
    assert {"auc", "precision", "recall", "threshold"} <= set(tasks["anomaly"])
    # Interest is masked: only eval examples with a later click on another item.
    assert 0 < tasks["interest"]["examples"] < tasks["click"]["examples"]
    # Anomaly and the attributes are judged on held-out users and items only,
    # and the rule's baseline on the very eval examples the anomaly task is.
    rule = metrics["baselines"]["anomaly"]
    assert 0 < rule["examples"] == tasks["anomaly"]["examples"] < metrics["eval_examples"]
    assert 0.0 <= rule["auc"] <= 1.0 and 0.0 <= tasks["anomaly"]["auc"] <= 1.0
    assert 0 < tasks["category"]["examples"] == tasks["colour"]["examples"] < (
        metrics["eval_examples"])

    rows = pq.read_table(glob.glob(shop.layout.scores + "*.parquet")).to_pylist()
    assert rows
    categories = set(generate.CATEGORIES)
    for row in rows[:50]:
        assert 0 < row["p_click"] < 1 and 0 < row["p_anomaly"] < 1
        for name in ("interest", "category", "colour"):
            # Class probabilities over the label's vocabulary + OOV: they sum to 1.
            assert np.sum(row[f"p_{name}"]) == pytest.approx(1.0, abs=1e-5)
            assert row[f"{name}_class"] == int(np.argmax(row[f"p_{name}"]))
        assert row["interest_class_name"] in categories | {""}
        assert row["category_class_name"] in categories | {""}


def test_the_encoder_holds_out_the_attribute_tasks_held_out_items(shop):
    from transforms import holdout
    with open(shop.layout.embed_report) as f:
        encoder = json.load(f)["encoder"]
    # The encoder's held-out items are the category and colour tasks' held-out items.
    items = [r["item_id"] for r in _csv(shop.input_path(shop.inputs.items))]
    held = holdout.held_out(items, shop.registry["item_held_out"].fraction).numpy()
    assert encoder["held_out_by"] == "task holdout"
    # Items without a usable photo are not in the encoder's catalogue.
    assert 0 < encoder["held_out_items"] <= int(held.sum())
    assert encoder["held_out_items"] + encoder["train_items"] == encoder["items"]


def _csv(path):
    import csv
    with open(path) as f:
        return list(csv.DictReader(f))


def test_flagged_bots_pass_ingest_and_the_interest_target_is_never_an_input(shop):
    with open(shop.layout.ingest_report) as f:
        report = json.load(f)
    counts = report["counts"]
    # pass_flagged: the rule flags bots but drops none of their events.
    assert counts.get("anomaly/passed_events", 0) > 0
    assert counts.get("dead_letter/events/robot_user", 0) == 0
    assert counts["positives/train/user_is_bot"] > 0
    registry = shop.registry
    inputs = {f.name for f in registry.inputs()}
    assert {"next_click_category", "has_next_click", "user_is_bot"}.isdisjoint(inputs)
    (category, colour) = [t for t in shop.model.tasks if t.name in ("category", "colour")]
    assert "item_category" not in category.inputs and "item_colour" not in colour.inputs
    assert "item_id" not in category.inputs
