"""Tests for the synthetic-shop generator."""

import csv
import dataclasses
import filecmp
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from pipelines import generate
from shoprec.core import config as config_lib
from shoprec.core.timestamps import parse_timestamp
from trainer import metrics


def _config(run_dir, fmt="csv", **overrides):
    base = config_lib.load()
    # No cold start unless a test asks: the pinned figures below are of the shop without.
    gen = dataclasses.replace(base.generate, num_users=50, num_items=20, corrupt_fraction=0.0,
                              duplicate_fraction=0.0, missing_image_fraction=0.0,
                              new_item_fraction=0.0, new_user_fraction=0.0)
    return dataclasses.replace(base, run_dir=str(run_dir),
                               generate=dataclasses.replace(gen, **overrides),
                               inputs=dataclasses.replace(base.inputs, format=fmt))


def _lines(path):
    with open(path) as f:
        return f.read().splitlines()[1:]


def _truth(cfg):
    with open(cfg.path(cfg.inputs.truth), newline="") as f:
        return list(csv.DictReader(f))


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path):
    summaries = [generate.run(_config(tmp_path / name, seed=seed))
                 for name, seed in (("a", 3), ("b", 3), ("c", 4))]
    assert summaries[0] == {**summaries[1], "paths": summaries[0]["paths"]}
    for name in ("events.csv", "truth.csv", "users.csv", "items.csv", "images/i00007.png"):
        assert filecmp.cmp(tmp_path / "a" / "raw" / name, tmp_path / "b" / "raw" / name,
                           shallow=False), name
    assert not filecmp.cmp(tmp_path / "a" / "raw" / "events.csv",
                           tmp_path / "c" / "raw" / "events.csv", shallow=False)


def test_catalogue_columns(tmp_path):
    cfg = _config(tmp_path, num_users=300)
    generate.run(cfg)
    with open(cfg.path(cfg.inputs.users), newline="") as f:
        users = list(csv.DictReader(f))
    with open(cfg.path(cfg.inputs.items), newline="") as f:
        items = list(csv.DictReader(f))
    assert [u["user_id"] for u in users] == [f"u{i:06d}" for i in range(300)]
    ages = [int(u["age"]) for u in users if u["age"]]
    # Ages go missing with probability 0.02 (6 expected of 300); the seed draws 7.
    assert 300 - len(ages) == 7 and min(ages) >= 18 and max(ages) <= 75
    assert {u["region"] for u in users} <= set(generate.REGIONS)
    assert {u["membership"] for u in users} == set(generate.MEMBERSHIPS)
    assert [i["item_id"] for i in items] == [f"i{i:05d}" for i in range(20)]
    assert all(float(i["price"]) > 0 for i in items)
    assert {i["colour"] for i in items} <= set(generate.COLOURS)
    assert all(i["image_path"] == f"images/{i['item_id']}.png" for i in items)


def test_clicks_and_purchases_follow_within_windows(tmp_path):
    cfg = _config(tmp_path, num_users=80)
    summary = generate.run(cfg)
    seen = {"impression": {}, "click": {}}
    parent = {"click": ("impression", cfg.ingest.click_window_s),
              "purchase": ("click", cfg.ingest.conversion_window_s)}
    counts = {"impression": 0, "click": 0, "purchase": 0}
    last = {}
    for line in _lines(cfg.path(cfg.inputs.events)):
        stamp, user, item, kind = line.split(",")
        ts = parse_timestamp(stamp)
        assert ts >= last.get(user, 0), "a user's events are written in time order"
        last[user] = ts
        counts[kind] += 1
        if kind in parent:
            before, window = parent[kind]
            prior = seen[before].get((user, item), [])
            assert any(0 < ts - t <= window for t in prior), line
        if kind in seen:
            seen[kind].setdefault((user, item), []).append(ts)
    assert counts == {"impression": summary["impressions"], "click": summary["clicks"],
                      "purchase": summary["purchases"]}
    truth = _truth(cfg)
    assert sum(int(r["click"]) for r in truth) == summary["clicks"]
    assert sum(int(r["conversion"]) for r in truth) == summary["purchases"]
    for row in truth:
        assert 0 < float(row["p_conversion"]) <= float(row["p_click"]) < 1


def test_bad_rows_are_counted_and_kept_out_of_truth(tmp_path):
    cfg = _config(tmp_path, num_users=100, corrupt_fraction=0.03, duplicate_fraction=0.03)
    summary = generate.run(cfg)
    lines = _lines(cfg.path(cfg.inputs.events))
    assert len(lines) == summary["event_rows"]
    kinds = {k: 0 for k in generate.CORRUPT_KINDS}
    clean, duplicates = [], 0
    for n, line in enumerate(lines):
        fields = line.split(",")
        if len(fields) != 4:
            kinds["wrong_columns"] += 1
        elif fields[0] == "not-a-time":
            kinds["bad_timestamp"] += 1
        elif fields[2] == "i99999x":
            kinds["unknown_item"] += 1
        elif n and line == lines[n - 1]:
            duplicates += 1
        else:
            clean.append(fields)
    assert all(v > 0 for v in kinds.values())
    assert kinds == summary["corrupt_by_kind"]
    assert sum(kinds.values()) == summary["corrupt_rows"]
    assert duplicates == summary["duplicate_rows"] > 0
    truth = [[r["timestamp"], r["user_id"], r["item_id"]] for r in _truth(cfg)]
    assert truth == [f[:3] for f in clean if f[3] == "impression"]
    assert len(truth) == summary["truth_rows"] < summary["impressions"]


def test_images_decode_and_faults_are_as_reported(tmp_path):
    cfg = _config(tmp_path, num_items=60, image_size=32, missing_image_fraction=0.25)
    summary = generate.run(cfg)
    root = cfg.path(cfg.inputs.images_root)
    bad = {item: kind for kind, ids in summary["bad_images"].items() for item in ids}
    assert len(bad) == (summary["missing_images"] + summary["corrupt_images"]
                        + summary["empty_images"]) > 0
    assert len(set(bad.values())) >= 3
    for n in range(60):
        item = f"i{n:05d}"
        path = os.path.join(root, "images", f"{item}.png")
        kind = bad.get(item)
        if kind == "missing":
            assert not os.path.exists(path)
            continue
        with open(path, "rb") as f:
            data = f.read()
        if kind == "empty":
            assert data == b""
        elif kind in ("random_bytes", "truncated"):
            # Random bytes lack the PNG signature; a truncated PNG has it but not its data.
            reason = {"random_bytes": "Unknown image file format",
                      "truncated": "Invalid PNG data"}[kind]
            with pytest.raises(tf.errors.InvalidArgumentError, match=reason):
                tf.io.decode_png(data, channels=3).numpy()
        else:
            assert tf.io.decode_png(data, channels=3).shape == (32, 32, 3)


def test_parquet_holds_the_csv_rows(tmp_path):
    overrides = dict(corrupt_fraction=0.05, duplicate_fraction=0.02)
    generate.run(_config(tmp_path / "csv", **overrides))
    generate.run(_config(tmp_path / "pq", fmt="parquet", **overrides))
    for name, columns in (("events.csv", generate.EVENT_COLUMNS),
                          ("users.csv", ("user_id", "age", "region", "membership"))):
        expected = []
        for line in _lines(tmp_path / "csv" / "raw" / name):
            fields = [v or None for v in line.split(",")]
            if len(fields) == len(columns) - 1:  # the dropped field is item_id
                fields.insert(2, None)
            expected.append(dict(zip(columns, fields)))
        assert pq.read_table(tmp_path / "pq" / "raw" / name).to_pylist() == expected


def oracle_auc(truth_csv, start_ts):
    """{task: AUC of the true probabilities} from ``start_ts`` on."""
    return {task: metrics.auc(labels, p)
            for task, (labels, p) in generate.read_truth(truth_csv, start_ts).items()}


def test_oracle_auc_and_rates_are_exact_for_the_seed(tmp_path):
    cfg = _config(tmp_path, num_users=600, num_items=120)
    summary = generate.run(cfg)
    # Each label is one Bernoulli draw of its truth.csv probability, so a count
    # lies within 4 sd (sqrt of sum p(1 - p)) of the sum of its probabilities:
    # 2201 against 2153.9 +- 4 * 39.2 clicks, 651 against 613.3 +- 4 * 23.3 buys.
    truth = _truth(cfg)
    for label, prob in (("click", "p_click"), ("conversion", "p_conversion")):
        p = np.array([float(r[prob]) for r in truth])
        drawn = sum(int(r[label]) for r in truth)
        assert abs(drawn - p.sum()) <= 4 * np.sqrt(np.sum(p * (1 - p))), (label, drawn, p.sum())
    # The generator is seeded (byte-identical reruns above), so its figures for
    # the packaged seed are exact: 2201 / 23912 = 9.2% clicks, 651 / 2201 = 29.6%
    # of clicks buy. A changed preference model or RNG stream changes them.
    assert (summary["impressions"], summary["clicks"], summary["purchases"]) == (23912, 2201, 651)
    result = oracle_auc(cfg.path(cfg.inputs.truth), cfg.eval_start_ts)
    assert result == pytest.approx({"click": 0.8408838012933819,
                                    "conversion": 0.879557676069304}, abs=1e-12)
    whole = oracle_auc(cfg.path(cfg.inputs.truth), 0)
    assert whole == pytest.approx({"click": 0.8399679457821784,
                                   "conversion": 0.8642653318110368}, abs=1e-12)


def test_a_later_day_keeps_the_earlier_days_users_items_and_photos(tmp_path):
    # Day 1: 50 of a 60-user pool, 20 of 25 items; day 2, a day later: all of them.
    day1 = _config(tmp_path / "d1", pool_users=60, pool_items=25, missing_image_fraction=0.2)
    day2 = _config(tmp_path / "d2", num_users=60, num_items=25, pool_users=60, pool_items=25,
                   missing_image_fraction=0.2, start_date="2026-11-02")
    first, second = generate.run(day1), generate.run(day2)
    for table, n1, n2 in (("users.csv", 50, 60), ("items.csv", 20, 25)):
        old, new = _lines(day1.path(f"raw/{table}")), _lines(day2.path(f"raw/{table}"))
        assert (len(old), len(new)) == (n1, n2)
        assert new[:n1] == old, table  # the same rows, attributes and all; then new ones
    # The same photos, broken ones included, for the first 20 items.
    assert [i for i in first["bad_images"]["missing"]] == [
        i for i in second["bad_images"]["missing"] if int(i[1:]) < 20]
    for i in range(20):
        path = f"raw/images/i{i:05d}.png"
        if os.path.exists(day1.path(path)):
            assert filecmp.cmp(day1.path(path), day2.path(path), shallow=False), path
    # Day 2's events start a day later and reach the new users and items.
    events = list(csv.DictReader(open(day2.path(day2.inputs.events))))
    assert min(parse_timestamp(e["timestamp"]) for e in events) >= parse_timestamp(
        "2026-11-02T00:00:00Z")
    assert {e["user_id"] for e in events} & {f"u{u:06d}" for u in range(50, 60)}
    assert {e["item_id"] for e in events} & {f"i{i:05d}" for i in range(20, 25)}
    # Without a pool, the shop is what it always was: the pool is the generated size.
    plain = _config(tmp_path / "p")
    same = _config(tmp_path / "q", pool_users=50, pool_items=20)
    generate.run(plain), generate.run(same)
    for name in ("users.csv", "items.csv", "events.csv"):
        assert filecmp.cmp(plain.path(f"raw/{name}"), same.path(f"raw/{name}"), shallow=False)
    with pytest.raises(ValueError, match="pool_users 40 .* must be at least num_users 50"):
        generate.run(_config(tmp_path / "bad", pool_users=40))


def _events_by_user(cfg):
    out = {}
    for line in _lines(cfg.path(cfg.inputs.events)):
        stamp, user, item, kind = line.split(",")
        out.setdefault(user, []).append((parse_timestamp(stamp), item, kind))
    return out


def test_bots_act_at_night_in_bursts_and_click_without_views(tmp_path):
    plain = _config(tmp_path / "people", num_users=200)
    cfg = _config(tmp_path / "bots", num_users=200, bot_fraction=0.1)
    generate.run(plain)
    summary = generate.run(cfg)
    with open(cfg.path(cfg.inputs.users), newline="") as f:
        users = list(csv.DictReader(f))
    bots = {u["user_id"] for u in users if u["is_bot"] == "1"}
    # 0.1 of 200 users: 20 expected, sd sqrt(200 * 0.09) = 4.2; the seed draws 25.
    assert len(bots) == 25 and {u["is_bot"] for u in users} == {"0", "1"}
    # Without bots the users table keeps its columns.
    assert _lines(plain.path(plain.inputs.users))[0].count(",") == 3
    people, with_bots = _events_by_user(plain), _events_by_user(cfg)
    # People's events are those of the shop without bots, row for row.
    assert all(with_bots[u] == people[u] for u in people if u not in bots)
    bot_events = [e for u in bots for e in with_bots.get(u, [])]
    assert sum(kind == "impression" for _, _, kind in bot_events) == summary["bot_impressions"]
    # Every bot event falls between 01:00 and 05:00 UTC (clicks a few seconds later).
    assert {(ts % 86400) // 3600 for ts, _, _ in bot_events} <= {1, 2, 3, 4, 5}
    # Viewless clicks: some bot clicks have no impression of their item in the
    # click window before them (others land on an item shown shortly before).
    window = cfg.ingest.click_window_s
    unviewed = sum(
        1 for u in bots for ts, item, kind in with_bots.get(u, []) if kind == "click"
        and not any(k == "impression" and i == item and ts - window <= t <= ts
                    for t, i, k in with_bots[u]))
    assert 0 < unviewed <= summary["viewless_clicks"]
    # Fast bots crowd a day's sessions into a minute: far more events per minute than people.
    def busiest(events):
        per_minute = {}
        for ts, _, _ in events:
            per_minute[ts // 60] = per_minute.get(ts // 60, 0) + 1
        return max(per_minute.values())
    bot_peaks = sorted(busiest(with_bots[u]) for u in bots if u in with_bots)
    people_peak = max(busiest(e) for u, e in people.items())
    # Fast bots (about half) peak far above any person; the slow ones do not,
    # so a rule on events per minute cannot catch them.
    caught = sum(p > 2 * people_peak for p in bot_peaks)
    assert 0.25 * len(bot_peaks) < caught < 0.75 * len(bot_peaks)


def test_the_rejection_sampler_shows_no_item_before_its_launch(tmp_path, monkeypatch):
    # Catalogues above _MAX_GUMBEL_ITEMS are sampled by rejection: lowered here
    # so the 60-item shop takes that path.
    monkeypatch.setattr(generate, "_MAX_GUMBEL_ITEMS", 16)
    cfg = _config(tmp_path, num_users=300, num_items=60, new_item_fraction=0.3)
    generate.run(cfg)
    launch = generate._cold_start(cfg.generate, parse_timestamp(cfg.generate.start_date),
                                  cfg.generate.impressions_per_session)[0]
    shown = [(parse_timestamp(t), int(i[1:])) for t, _, i, kind in
             (line.split(",") for line in _lines(cfg.path(cfg.inputs.events)))
             if kind == "impression"]
    assert shown and all(t >= launch[i] for t, i in shown)
    # Some impressions are of launched items, so the test is not vacuous.
    assert any(launch[i] > launch.min() for _, i in shown)


def test_cold_items_and_users_are_counted_exactly_for_the_seed(tmp_path):
    cfg = _config(tmp_path, num_users=300, num_items=60, new_item_fraction=0.3,
                  new_user_fraction=0.3)
    summary = generate.run(cfg)
    start, eval_start = parse_timestamp(cfg.generate.start_date), cfg.eval_start_ts
    launch, arrival = generate._cold_start(cfg.generate, start,
                                           cfg.generate.impressions_per_session)
    events = [(parse_timestamp(t), u, i, kind) for t, u, i, kind in
              (line.split(",") for line in _lines(cfg.path(cfg.inputs.events)))]
    first_item, first_user = {}, {}
    for t, u, i, kind in events:
        first_item[i] = min(first_item.get(i, t), t)
        first_user[u] = min(first_user.get(u, t), t)
        # Nothing is shown before its launch; no user acts before arriving.
        if kind == "impression":
            assert t >= launch[int(i[1:])], (i, t)
        assert t >= arrival[int(u[1:])], (u, t)
    # A new user's first session starts at their arrival (its first impression
    # a few seconds later), so every new user is seen, within a minute of it.
    for u in np.flatnonzero(arrival[:300] > start):
        assert 0 < first_user[f"u{u:06d}"] - arrival[u] <= 8 * 5, u
    # Counted by hand from the events file against the summary, then pinned:
    # the generator is seeded, so a changed stream changes these.
    cold_items = sum(t >= eval_start for t in first_item.values())
    cold_users = sum(t >= eval_start for t in first_user.values())
    new_items, new_users = int((launch[:60] > start).sum()), int((arrival[:300] > start).sum())
    assert (summary["cold_items"], summary["cold_users"]) == (cold_items, cold_users)
    assert (summary["new_items"], summary["new_users"]) == (new_items, new_users)
    # 16 of the 52 items past the first 8 (on sale from day one, so a session can
    # show 8) are launched during the 14 days, 6 first seen in the eval window;
    # 99 of 300 users arrive during them, 23 first seen in the eval window.
    assert (new_items, new_users, cold_items, cold_users) == (16, 99, 6, 23)
    assert not (launch[:8] > start).any()
    # An item launched in the eval window is cold, or never shown at all.
    for i in np.flatnonzero(launch[:60] >= eval_start):
        assert first_item.get(f"i{i:05d}", eval_start) >= eval_start, i
    with pytest.raises(ValueError, match="new_item_fraction must be in"):
        generate.run(_config(tmp_path / "bad", new_item_fraction=1.0))
