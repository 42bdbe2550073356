"""Ingest's batch path against its row path: the same files, byte for byte, and counts.

A tiny generated shop with 3% broken and 3% duplicated rows, plus a second
events file of hand-made damage (quoted line breaks, unicode spaces, leap
seconds, blank lines, a byte that is not UTF-8), so both CSV readers run (the
generated file has no quotes: Arrow's parser; the damaged one: the row reader).
"""

import dataclasses
import glob
import json
import os

import pyarrow.parquet as pq
import pytest

from pipelines import impressions
from shoprec.core import config as config_lib
from tests.pipelines.fixtures import broken_shop

DAMAGED = (
    b"timestamp,user_id,item_id,event_type\n"
    b"2026-11-02T10:00:00Z,u000001,i00001,impression\n"
    b"2026-11-02T10:00:05Z,u000001,i00001,Click\n"  # upper case: still a click
    b"1793613660,u000001,i00002,impression\n"  # unix seconds
    b"2026-11-02T10:00:60Z,u000001,i00002,impression\n"  # a leap second: bad
    b'2026-11-02T10:01:00Z,"u0000\n01",i00002,impression\n'  # a quoted line break
    b"2026-11-02T10:02:00Z,u000002\xc2\xa0,i00001,impression\n"  # no-break space, trimmed
    b"\n"
    b"   \n"
    b"2026-11-02T10:03:00Z,u000002,i00001\n"  # wrong width
    b"2026-11-02T10:04:00Z,u000002,i00001,teleport\n"  # no such type
    b"2026-11-02T10:05:00Z,u00\xff0002,i00001,impression\n"  # not UTF-8
    b"2026-11-02T10:06:00Z,,i00001,impression\n"  # missing user
    b"2026-11-02T10:00:05Z,u000001,i00001,Click\n"  # a copy
)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    from pipelines import ingest

    config = broken_shop(tmp_path_factory.mktemp("shop"))
    events = config.input_path(config.inputs.events)
    os.rename(events, events.replace(".csv", "-a.csv"))
    with open(events.replace(".csv", "-b.csv"), "wb") as f:
        f.write(DAMAGED)
    config = dataclasses.replace(config, inputs=dataclasses.replace(
        config.inputs, events=config.inputs.events.replace(".csv", "-*.csv")))
    assert impressions.supports(config)
    reports, outputs = {}, {}
    for batched in (False, True):
        reports[batched] = ingest.run(config, batched=batched)
        outputs[batched] = _outputs(config)
    return reports, outputs


def _lines(pattern):
    out = []
    for path in sorted(glob.glob(pattern)):
        with open(path, "rb") as f:
            out += f.read().splitlines()
    return sorted(out)


def _records(path):
    """A gzip TFRecord file's records, sorted (the order within a shard is the runner's)."""
    import tensorflow as tf

    return sorted(r.numpy() for r in tf.data.TFRecordDataset(path, compression_type="GZIP"))


def _outputs(config):
    layout = config.layout
    outputs = {}
    for split in config.splits:
        for path in sorted(glob.glob(layout.examples(split) + "-*")):
            outputs[os.path.basename(path)] = _records(path)
    outputs["events"] = sorted(map(str, pq.read_table(
        glob.glob(layout.events_log_pattern)).to_pylist()))
    for name in ("eval_pairs", "anomaly", "dead_letter"):
        outputs[name] = _lines(layout.ingest_outputs(config.splits)[name])
    for name in ("items", "users"):
        outputs[name] = _records(layout.ingest_outputs(config.splits)[name])
    return outputs


def test_batch_path_writes_the_row_paths_files(both):
    reports, outputs = both
    rows, batches = outputs[False], outputs[True]
    assert sorted(batches) == sorted(rows)
    for name in rows:
        assert batches[name] == rows[name], name
    # Every split and shard has examples; the damage reached the dead letters.
    assert all(rows[name] for name in rows if name.endswith(".tfrecord.gz"))
    reasons = {json.loads(line)["reason"] for line in rows["dead_letter"]}
    assert {"bad_timestamp", "wrong_column_count", "bad_event_type", "bad_encoding",
            "missing_field", "duplicate_event", "unknown_item"} <= reasons


def test_batch_path_counts_as_the_row_path(both):
    reports, _ = both
    assert reports[True]["counts"] == reports[False]["counts"]
    counts = reports[True]["counts"]
    # The damaged file by hand: 13 records (one spans two lines), 1 blank line and 1 of
    # spaces; the leap second, the wrong width, 'teleport', the byte and the empty user
    # fail; the copy of the click is a duplicate.
    damaged = {"dead_letter/events/bad_encoding": 1, "blank_lines/events": 2}
    for name, n in damaged.items():
        assert counts[name] == n, name


def test_events_read_whole_with_quoted_line_breaks(both):
    _, outputs = both
    events = outputs[True]["events"]
    assert any("'u0000\\n01'" in e for e in events)  # the quoted line break kept
    assert any("'u000002'" in e and "'i00001'" in e for e in events)  # the trimmed space


def test_batched_needs_a_supported_config():
    from pipelines import ingest

    config = config_lib.load(None, run_dir="/nonexistent")
    funnel = dataclasses.replace(config, dataset=dataclasses.replace(config.data,
                                                                   labels="funnel"))
    assert not impressions.supports(funnel)
    with pytest.raises(ValueError, match="batch path"):
        ingest.Ingest(funnel, batched=True)
