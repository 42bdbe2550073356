"""Corrupted copies of real rows (H&M, Taobao) give exactly the expected dead letters.

The copies are built in tmp_path from ``<repo>/../shared/data`` at test time;
nothing derived from that data is kept in the repository. Without it, skip.
"""

import collections
import csv
import os

import pytest

from pipelines import ingest, report as report_lib
from shoprec.core import config as config_lib
from shoprec.core.timestamps import parse_timestamp
from tests.pipelines.fixtures import write_embeddings

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))
CONFIGS = os.path.join(REPO, "shoprec", "configs")

needs_data = pytest.mark.skipif(not os.path.isdir(DATA), reason=f"no real data at {DATA}")


def _lines(path, limit=None):
    with open(path, newline="") as f:
        header = next(f)
        rows = []
        for line in f:
            rows.append(line.rstrip("\r\n"))
            if limit and len(rows) >= limit:
                break
    return header, rows


def _write(path, header, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write(header)
        f.writelines(row + "\n" for row in rows)


def _truncated(line):
    # Cut inside the third field: two commas left, so the row has three columns.
    second = line.index(",", line.index(",") + 1)
    return line[:second + 3]


def _dead(counts):
    return {k.split("/", 2)[2]: v for k, v in counts.items()
            if k.startswith("dead_letter/events/") and v}


@needs_data
def test_taobao_corrupted_copy_yields_exact_dead_letters_and_passes(tmp_path):
    config = config_lib.load(os.path.join(CONFIGS, "taobao.yaml"), run_dir=str(tmp_path / "run"),
                             data_dir=str(tmp_path / "data"))
    start, end = (parse_timestamp(t) for t in config.data.events.time_range)
    header, rows = _lines(os.path.join(DATA, "taobao", "user_behavior.csv"), limit=12000)
    base = [r for r in rows if start <= int(r.rsplit(",", 1)[1]) < end][:10000]
    assert len(base) == 10000

    def with_field(line, index, value):
        cells = line.split(",")
        cells[index] = value
        return ",".join(cells)

    minute = 1511600000 - 1511600000 % 60
    bad = ([_truncated(r) for r in base[100:105]]                                # 5
           + [with_field(r, 4, "2017-11-26 10:00") for r in base[200:204]]       # 4
           + [with_field(r, 4, "1500000000") for r in base[300:302]]             # 2
           + [with_field(r, 3, "click") for r in base[400:402]]                  # 2
           + base[500:503]                                                       # 3
           + [f"999999999,{7000000 + k},1,pv,{minute + k}" for k in range(40)])  # robot
    _write(str(tmp_path / "data" / "user_behavior.csv"), header, base + bad)

    report = ingest.run(config)
    assert report["status"] == "ok"
    assert report["counts"]["rows_read/events"] == 10056
    assert _dead(report["counts"]) == {
        "wrong_column_count": 5, "bad_timestamp": 4, "timestamp_out_of_range": 2,
        "bad_event_type": 2, "duplicate_event": 3, "robot_user": 40}
    assert report["events"]["robot_users"] == 1
    assert report["inputs"]["events"]["bad_fraction"] == round(56 / 10056, 6)
    with open(report["outputs"]["anomaly"]) as f:
        robots = [r for r in csv.DictReader(f) if r["robotic_from"]]
    assert [(r["user_id"], r["max_events_per_window"]) for r in robots] == [("999999999", "40")]


@needs_data
def test_hm_corrupted_copy_fails_the_gate_naming_input_and_reason(tmp_path):
    data = tmp_path / "data"
    config = config_lib.load(os.path.join(CONFIGS, "hm.yaml"), run_dir=str(tmp_path / "run"),
                             data_dir=str(data))
    a_header, articles = _lines(os.path.join(DATA, "hm", "articles.csv"))
    by_id = {a.split(",", 1)[0]: a for a in articles}
    t_header, transactions = _lines(os.path.join(DATA, "hm", "transactions.csv"))
    base = [t for t in transactions if t.split(",")[2] in by_id][:1500]
    used = sorted({t.split(",")[2] for t in base})
    _write(str(data / "articles.csv"), a_header, [by_id[a] for a in used])
    c_header, customers = _lines(os.path.join(DATA, "hm", "customers.csv"))
    _write(str(data / "customers.csv"), c_header, customers)
    os.symlink(os.path.join(DATA, "hm", "images"), data / "images")
    # The photos are not what this test checks: every article gets an embedding row.
    width = config.registry.embedding_feature().width
    write_embeddings(config.layout.item_embeddings, [(a, [0.0] * width, 1) for a in used])

    def with_field(line, index, value):
        cells = line.split(",")
        cells[index] = value
        return ",".join(cells)

    bad = ([with_field(t, 2, "0999999999") for t in base[10:16]]              # unknown: 6
           + [_truncated(t) for t in base[20:23]]                             # 3
           + [with_field(t, 0, "2020-13-01") for t in base[30:33]]            # 3
           + base[40:44]                                                      # units: 4
           + [f"2019-05-05,robot,{a},0.01,2" for a in used[:101]])            # robot: 101
    _write(str(data / "transactions.csv"), t_header, base + bad)
    # Identical parsed purchases are units of one: count the sample's own, by hand.
    groups = collections.Counter((c[0], c[1], c[2], c[4]) for c in (t.split(",") for t in base))
    own_units = sum(n - 1 for n in groups.values())

    with pytest.raises(report_lib.DataQualityError) as err:
        ingest.run(config)
    message = str(err.value)
    assert "input 'events'" in message and "robot_user=101" in message
    counts = err.value.report["counts"]
    assert _dead(counts) == {"unknown_item": 6, "wrong_column_count": 3, "bad_timestamp": 3,
                             "robot_user": 101}
    assert counts["units_collapsed/events"] == own_units + 4
    assert err.value.report["status"] == "failed"
    assert not os.path.exists(os.path.dirname(config.layout.examples("train")))
