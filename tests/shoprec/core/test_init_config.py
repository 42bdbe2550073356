"""A whole config proposed from hand-made tables: what it decides, and that shoprec loads it."""

import yaml

from shoprec.core import commented_yaml, config as config_lib
from shoprec.core.infer import Hints
from shoprec.core.init_config import Settings, Table, propose

START = 1_700_006_400  # 2023-11-15T00:00:00Z
COLOURS = ["red", "blue", "green", "black"]


def _shop():
    """A views → carts → orders log of 40 users and 30 items over ten days, with tables."""
    rows = []
    for i in range(1500):
        kind = "order" if i % 25 == 0 else "basket" if i % 10 == 0 else "view"
        rows.append({"ts": str(START + i * 576), "shopper": f"s{i % 40}",
                     "sku": f"p{(i * 7) % 30:03d}", "kind": kind})
    items = [{"sku": f"p{k:03d}", "colour": COLOURS[k % 4], "colour_no": str(k % 4),
              "price": f"{1.5 + k * k / 10:.2f}", "photo": f"img/p{k:03d}.jpg"} for k in range(30)]
    users = [{"shopper": f"s{u}", "age": str(20 + u), "tier": ["gold", "", "basic"][u % 3]}
             for u in range(40)]

    def table(path, data):
        return Table(path, tuple(data[0]), tuple(data), True)

    return table("log.csv", rows), table("items.csv", items), table("users.csv", users)


SETTINGS = Settings(name="shop", run_dir="runs/shop", data_dir="/data/shop", format="csv",
                    images=("img", tuple(f"p{k:03d}.jpg" for k in range(30))), epochs=3)


def test_the_proposal_decides_roles_funnel_features_and_split():
    events, items, users = _shop()
    proposal = propose(events, items, users, Hints(), SETTINGS)
    data = proposal.config["dataset"]
    assert data["labels"] == "funnel"
    assert {k: data["events"][k] for k in ("user_id", "item_id", "timestamp", "event_type")} == {
        "user_id": "shopper", "item_id": "sku", "timestamp": "ts", "event_type": "kind"}
    assert data["events"]["event_types"] == {"view": "click", "basket": "add_to_cart",
                                             "order": "purchase"}
    assert data["events"]["columns"]["ts"] == {"type": "timestamp", "format": "unix_s"}
    # The photo column's paths start with the photo folder: relative to its parent.
    assert (data["items"]["image_path"], proposal.config["inputs"]["images_root"]) == (
        "photo", ".")
    features = {f["name"]: f for f in data["features"]}
    # The colour code is left out for the colour's name; the tier has blanks.
    assert "item_colour_no" not in features and features["item_colour"]["kind"] == "categorical"
    assert features["user_tier"] == {"name": "user_tier", "source": "user", "column": "tier",
                                     "required": False, "kind": "categorical",
                                     "embedding_dim": 4, "default": "missing"}
    assert features["item_price"]["kind"] == "numeric"
    # Tastes by age group and by tier and colour: derived in preprocessing_fn.
    assert features["user_age_bucket"]["derived_from"] == ["user_age"]
    assert features["user_tier_x_item_colour"]["derived_from"] == ["user_tier", "item_colour"]
    assert [f["name"] for f in data["features"] if f["kind"] == "label"] == ["cart", "purchase"]
    assert "item_image_embedding" in features
    assert proposal.config["embed"]["attributes"] == ["colour"]
    # 1,500 events 576 s apart: 10 days; 80% of them precede 2023-11-23.
    assert proposal.config["ingest"]["eval_start"] == "2023-11-23"
    assert proposal.config["training"]["epochs"] == 3
    assert proposal.config["model"]["retrieval"]["positive_label"] == "cart"
    assert "dataset.events.timestamp" in proposal.notes


def test_the_written_text_loads_as_a_run_config(tmp_path):
    events, items, users = _shop()
    proposal = propose(events, items, users, Hints(), SETTINGS)
    text = commented_yaml.render(proposal.config, proposal.notes, ["a header"])
    assert yaml.safe_load(text) == proposal.config
    assert "  labels: funnel  # views followed by cart and purchase" in text
    path = tmp_path / "shop.yaml"
    path.write_text(text)
    config = config_lib.load(str(path))
    assert config.input_path(config.inputs.events) == "/data/shop/log.csv"
    # 120 carts over 30 items: 4 a item, embeddings of 8.
    assert config.registry.by_name["item_id"].embedding_dim == 8
    assert [t.name for t in config.model.tasks] == ["cart", "purchase"]


def test_a_purchase_log_without_tables_samples_negatives():
    rows = tuple({"day": f"2024-01-{1 + i % 28:02d}", "client": f"c{i % 50}",
                  "product": f"p{i % 90}"} for i in range(1200))
    proposal = propose(Table("orders.csv", ("day", "client", "product"), rows, True), None,
                       None, Hints(), SETTINGS)
    data = proposal.config["dataset"]
    assert (data["labels"], data["events"]["event_value"]) == ("sampled", "purchase")
    assert data["items"] == {"from_events": True}
    assert data["negatives"]["per_positive"] == 4
    assert not [f for f in data["features"] if f["source"] == "aggregate"]
    assert proposal.config["recommend"]["as_of"] == "eval"
    assert [(s["name"], s["quota"]) for s in proposal.config["recommend"]["sources"]] == [
        ("two_tower", 50), ("repurchase", 20), ("co_occurrence", 20), ("popular", 30)]
