"""``shoprec init`` → ``shoprec run`` on slices of the shared real samples (H&M, Taobao).

The slices are written to tmp_path from ``<repo>/../shared/data`` at test
time (nothing derived from the data is kept); without it, skip. The config
init writes runs every stage with no edit (one epoch, a short photo encoder
and the gate's floor at 0 are init's own flags, to keep the runs small).
"""

import csv
import os

import pytest

from tests.shoprec.app.test_init import run_everything

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))

needs_data = pytest.mark.skipif(not os.path.isdir(DATA), reason=f"no real data at {DATA}")


def _copy(source, target, keep):
    """The rows of a CSV file that ``keep`` accepts, header included."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    kept = []
    with open(source, newline="") as f, open(target, "w", newline="") as out:
        reader = csv.DictReader(f)
        writer = csv.DictWriter(out, reader.fieldnames)
        writer.writeheader()
        for row in reader:
            if keep(row):
                writer.writerow(row)
                kept.append(row)
    return kept


@needs_data
def test_taobao_slice_runs_every_stage_from_the_config_init_writes(tmp_path):
    users = set()

    def first_users(row):
        if len(users) < 40:
            users.add(row["user_id"])
        return row["user_id"] in users

    rows = _copy(os.path.join(DATA, "taobao", "user_behavior.csv"),
                 str(tmp_path / "taobao" / "user_behavior.csv"), first_users)
    assert len(rows) > 1000
    config = run_everything(tmp_path, "--events", str(tmp_path / "taobao" / "user_behavior.csv"))
    data = config.data
    assert (data.labels, data.events.timestamp, data.events.event_type) == (
        "funnel", "timestamp", "behavior_type")
    assert dict(data.events.event_types) == {"pv": "click", "cart": "add_to_cart",
                                             "fav": "other", "buy": "purchase"}
    assert data.items.from_events and config.registry.embedding_feature() is None


@needs_data
def test_hm_slice_runs_every_stage_from_the_config_init_writes(tmp_path):
    with open(os.path.join(DATA, "hm", "customers.csv"), newline="") as f:
        customers = {row["customer_id"] for _, row in zip(range(60), csv.DictReader(f))}
    hm = tmp_path / "hm"
    bought = _copy(os.path.join(DATA, "hm", "transactions.csv"), str(hm / "transactions.csv"),
                   lambda r: r["customer_id"] in customers)
    articles = {r["article_id"] for r in bought}
    _copy(os.path.join(DATA, "hm", "articles.csv"), str(hm / "articles.csv"),
          lambda r: r["article_id"] in articles)
    _copy(os.path.join(DATA, "hm", "customers.csv"), str(hm / "customers.csv"),
          lambda r: r["customer_id"] in customers)
    # The photos stay where they are: the config names a folder outside the data's.
    config = run_everything(tmp_path, "--events", str(hm / "transactions.csv"),
                            "--items", str(hm / "articles.csv"),
                            "--users", str(hm / "customers.csv"),
                            "--images", os.path.join(DATA, "hm", "images"))
    data = config.data
    assert (data.labels, dict(data.quality.max_bad_fraction_by_reason).keys()) == (
        "sampled", {"unknown_item"})
    assert data.items.image_path == "{article_id[:3]}/{article_id}.jpg"
    assert data.dedup == "quantity" and config.registry.embedding_feature() is not None
