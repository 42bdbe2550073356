"""Label mode ``candidates`` through the whole ingest: every example recomputed by brute
force from the events before its cut-off, and a changed future changes no train example.

A small generated shop (no corrupt rows, so the clean log is the raw log) is
ingested with every source kind and every candidate signal; the brute force
builds each cut-off's states with plain loops over the raw log (the state
definitions themselves are checked by hand in ``test_sources.py``), then the
same ``propose`` / ``union`` / ``signals`` the jobs call.
"""

import collections
import csv
import dataclasses

import pytest

from pipelines import candidate_examples, generate, ingest, sources
from pipelines.examples import read_table
from shoprec.core import config as config_lib
from shoprec.core import dataset as ds
from shoprec.core import generated_shop
from shoprec.core import registry as F
from shoprec.core.recommend_config import SourceConfig
from shoprec.core.layout import SPLITS
from shoprec.core.timestamps import parse_timestamp

S, K = F.Source, F.Kind
DAY = 86400


def _signal(name, signal, **kw):
    return F.Feature(name, S.CANDIDATE, K.NUMERIC, signal=signal, **kw)


SIGNALS = (
    _signal("rep_rank", "rep.rank"), _signal("rep_score", "rep.score"),
    _signal("co_score", "co.score"), _signal("pop_rank", "pop.rank"),
    _signal("region_rank", "pop_region.rank"), _signal("cat_rank", "cat.rank"),
    _signal("clicks", "pair.count", event_type="click"),
    _signal("since_click", "pair.days_since", event_type="click", default=30),
    _signal("item_clicks_1d", "item.count", event_type="click", window_days=1),
    _signal("item_trend", "item.trend", event_type="click", window_days=1),
    _signal("item_age", "item.days_since_first", event_type="click", default=30))
# Photos play no part here: the shop is ingested without its embedding.
REGISTRY = F.Registry(tuple(f for f in generated_shop.REGISTRY.features
                            if f.kind != K.EMBEDDING and f.name != "item_has_image")
                      + SIGNALS)
SOURCES = (
    SourceConfig("rep", 4, "repurchase", (("click", 1.0), ("purchase", 2.0)),
                 half_life_days=1.0),
    SourceConfig("co", 3, "co_occurrence", (("click", 1.0),), basket_s=3600, max_basket=4),
    SourceConfig("pop", 3, "popular", (("click", 1.0),), days=2),
    SourceConfig("pop_region", 2, "popular", (("click", 1.0),), days=2, segment="user_region"),
    SourceConfig("cat", 2, "attribute", (("click", 1.0),), attribute="item_category"))


def _config(run_dir):
    base = config_lib.load()
    data = dataclasses.replace(
        generated_shop.dataset(REGISTRY), labels="candidates",
        candidates=ds.CandidatesSpec(every_days=1, cutoffs=2, label_days=1))
    config = dataclasses.replace(
        base, run_dir=str(run_dir), dataset=data,
        generate=dataclasses.replace(base.generate, num_users=24, num_items=10, days=5,
                                     sessions_per_user=4.0, corrupt_fraction=0.0,
                                     duplicate_fraction=0.0, missing_image_fraction=0.0),
        ingest=dataclasses.replace(base.ingest, eval_start="2026-11-04T00:00:00Z",
                                   test_start="2026-11-05T00:00:00Z", num_shards=1),
        recommend=dataclasses.replace(base.recommend, sources=SOURCES,
                                      exclude_label="conversion", exclude_days=1))
    config_lib.check(config, "test")
    return config


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _log(config):
    return [{"timestamp": parse_timestamp(r["timestamp"]), "user_id": r["user_id"],
             "item_id": r["item_id"], "event_type": r["event_type"]}
            for r in _read_csv(config.input_path(config.inputs.events))]


def _brute_force(config, events):
    """{(user, item, cut): candidate features and labels}, from plain loops over ``events``."""
    p = sources.plan(config)
    users = {r["user_id"]: {"user_region": r["region"]}
             for r in _read_csv(config.input_path(config.inputs.users))}
    category = {r["item_id"]: r["category"]
                for r in _read_csv(config.input_path(config.inputs.items))}
    labels = REGISTRY.event_labels()
    out = {}
    for cut, end in candidate_examples.windows(config):
        before = sorted((e for e in events if e["timestamp"] < cut
                         and e["event_type"] in p.event_types), key=lambda e: e["timestamp"])
        pairs = collections.defaultdict(dict)
        item_states = collections.defaultdict(dict)
        for e in before:
            pair = pairs[e["user_id"]].setdefault(e["item_id"], {})
            sources.add_pair(pair, cut, e["timestamp"], e["event_type"], p)
            sources.add_item(item_states[e["item_id"]], cut, e["timestamp"], e["event_type"], p)
        baskets = collections.defaultdict(list)
        for e in before:
            if e["event_type"] == "click":
                baskets[(e["user_id"], e["timestamp"] // 3600)].append(
                    (e["item_id"], e["timestamp"]))
        counts, together = collections.Counter(), collections.defaultdict(collections.Counter)
        for entries in baskets.values():
            items = sources.basket(entries, 4)
            for i in items:
                counts[i] += 1
                together[i].update(j for j in items if j != i)
        neighbours = {("co", cut, i): sources.neighbours(i, together[i], counts.__getitem__, 20)
                      for i in counts}
        popular = {("pop", cut, None): sorted(
            ((i, s[("s", "pop")]) for i, s in item_states.items() if s.get(("s", "pop"))),
            key=lambda kv: (-kv[1], kv[0]))[:3]}
        by_region = collections.defaultdict(collections.Counter)
        for user, items in pairs.items():
            for item, state in items.items():
                if state.get(("s", "pop_region")):
                    by_region[users[user]["user_region"]][item] += state[("s", "pop_region")]
        for region, scores in by_region.items():
            popular[("pop_region", cut, region)] = sorted(
                scores.items(), key=lambda kv: (-kv[1], kv[0]))[:2]
        members = collections.defaultdict(list)
        for item in sorted(category, key=lambda i: (-sources.popularity(item_states.get(i), p),
                                                    i)):
            members[("cat", cut, category[item])].append(
                (item, sources.popularity(item_states.get(item), p)))
        tables = sources.Tables(neighbours, popular, {k: v[:2] for k, v in members.items()},
                                {("cat", i): c for i, c in category.items()},
                                {(cut, i): s for i, s in item_states.items()})
        positives = collections.defaultdict(lambda: collections.defaultdict(set))
        for e in events:
            if cut <= e["timestamp"] and (end is None or e["timestamp"] < end):
                for label in labels:
                    if e["event_type"] == label.event_type:
                        positives[e["user_id"]][label.name].add(e["item_id"])
        for user in positives:
            mine = dict(sources.latest(pairs[user].items(), p.max_user_items))
            lists, scores = sources.propose(mine, users.get(user), cut, p, tables,
                                            skip=sources.excluded(mine, cut, p))
            for row in sources.candidate_rows(user, cut, sources.union(lists), scores, mine,
                                              tables, p):
                row.pop(sources.PROPOSED)
                row.update({label.name: int(row["item_id"] in positives[user][label.name])
                            for label in labels})
                item = row.pop("item_id")
                out[(user, item, cut)] = {k: v for k, v in row.items() if k != "user_id"}
    return out


def _examples(config):
    names = [f.name for f in SIGNALS + REGISTRY.labels()]
    out = {}
    for split in SPLITS:
        for row in read_table(config.layout.examples_pattern(split), REGISTRY):
            out[(row["user_id"], row["item_id"], row["timestamp"])] = {
                n: pytest.approx(row[n], rel=1e-5) if isinstance(row[n], float) else row[n]
                for n in names}
    return out


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    config = _config(tmp_path_factory.mktemp("candidates") / "run")
    generate.run(config)
    report = ingest.run(config)
    return config, report


def test_every_candidate_example_equals_its_brute_force_recomputation(shop):
    config, report = shop
    events = _log(config)
    assert report["counts"]["rows_valid/events"] == len(events)  # the clean log is the raw log
    got, want = _examples(config), _brute_force(config, events)
    assert len(want) > 100 and any(v["click"] for v in want.values())
    assert got.keys() == want.keys()
    for key, row in want.items():
        assert got[key] == row, key
    # Every source proposed something, and the exclusion rule removed something.
    assert all(any(v[f"{s}_rank"] for v in want.values()) for s in ("rep", "pop", "region", "cat"))
    assert any(v["co_score"] for v in want.values())
    assert report["counts"]["candidates/train/positives"] > 0


def test_changing_the_future_changes_no_train_example(shop, tmp_path):
    config, _ = shop
    events = _log(config)
    future = config.split_starts[0]  # every train label window ends by the eval start
    items = sorted({e["item_id"] for e in events})
    changed = [e for e in events if e["timestamp"] < future]
    for n, e in enumerate(e for e in events if e["timestamp"] >= future):
        if n % 4:  # every fourth later event dropped, every third moved to another item
            changed.append(dict(e, item_id=items[(items.index(e["item_id"]) + 1) % len(items)]
                                if n % 3 == 0 else e["item_id"]))
    changed += [{"timestamp": future + 60 + k, "user_id": "newcomer", "item_id": items[k],
                 "event_type": "impression"} for k in range(3)]
    path = tmp_path / "events.csv"
    with open(path, "w", newline="") as f:
        f.write("timestamp,user_id,item_id,event_type\n")
        f.writelines(f"{e['timestamp']},{e['user_id']},{e['item_id']},{e['event_type']}\n"
                     for e in sorted(changed, key=lambda e: e["timestamp"]))
    moved = dataclasses.replace(config, run_dir=str(tmp_path / "run"), inputs=dataclasses.replace(
        config.inputs, data_dir=config.run_dir, events=str(path)))
    ingest.run(moved)

    def train(examples):
        return {k: v for k, v in examples.items() if k[2] < future}

    before, after = train(_examples(config)), train(_examples(moved))
    assert before and before == after
