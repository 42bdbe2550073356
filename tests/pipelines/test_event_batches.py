"""Record batches of events: the masks decide as the row parser does, every reader alike."""

import dataclasses
import json
import pickle

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import event_batches as eb
from pipelines.options import pipeline_options
from pipelines.parse import EventParser, RowError
from shoprec.core import generated_shop as shop

DATA = shop.dataset(shop.REGISTRY)
HEADER = ["timestamp", "user_id", "item_id", "event_type"]
# (timestamp, user, item, type): what each row's check is about.
ROWS = [
    ("2026-11-02T10:00:00Z", "u1", "i1", "impression"),  # ISO
    ("1793613660", "u1", "i1", "click"),  # unix seconds
    (" 1793613660 ", " u1 ", "i1", " Purchase "),  # spaces and case
    ("-5", "u1", "i1", "impression"),  # before 1970, still a time
    ("2026-11-02T10:00:60Z", "u1", "i1", "impression"),  # leap second: bad
    ("2026-02-30T10:00:00Z", "u1", "i1", "impression"),  # no such day: bad
    ("2026-11-02 10:00:00", "u1", "i1", "impression"),  # ISO without T: the parser's
    ("2026-11-02T10:00:00+01:00", "u1", "i1", "impression"),  # offset: the parser's
    ("１７９３６１３６６０", "u1", "i1", "impression"),  # full-width digits
    ("99999999999999999999", "u1", "i1", "impression"),  # past int64
    ("2026-11-02T10:00:00Z", "", "i1", "impression"),  # missing user
    ("2026-11-02T10:00:00Z", "u1", "i1", "teleport"),  # no such type
    ("2026-11-02T10:00:00Z", "u1", "i1", "İmpression"),  # not ASCII: the parser's
    ("2026-11-02T10:00:00Z", "u1\x1c", "i1", "impression"),  # a separator Python strips
    ("", "u1", "i1", "impression"),  # missing time
]


def _expected(rows):
    """The row parser's verdict on each row: its event, or (reason, detail).

    A time past 64 bits, which the parser passes and no writer could write, is
    ``bad_timestamp`` on the batch path.
    """
    parser, out = EventParser(DATA), []
    for row in rows:
        try:
            event = parser(dict(zip(HEADER, row)))
        except RowError as err:
            out.append((err.reason, err.detail))
            continue
        if event["timestamp"] >= 1 << 63:
            event = ("bad_timestamp", f"timestamp={event['timestamp']} is outside 64-bit "
                                      f"unix seconds")
        out.append(event)
    return out


def _verdicts(batch, data=DATA):
    events, bad = eb.BatchValidator(data)(batch)
    return events.to_pylist(), [(err.reason, err.detail) for _, err in bad]


def test_masks_decide_each_row_as_the_row_parser():
    batch = eb.EventBatch(["r%d" % i for i in range(len(ROWS))], pa.RecordBatch.from_arrays(
        [pa.array(list(c), pa.string()) for c in zip(*ROWS)], HEADER), None)
    expected = _expected(ROWS)
    events, bad = _verdicts(batch)
    assert sorted(map(str, events)) == sorted(str(e) for e in expected if isinstance(e, dict))
    assert sorted(bad) == sorted(e for e in expected if isinstance(e, tuple))
    # By hand: ISO, unix, spaced, '-5', the two forms only the parser reads, the
    # full-width digits and the user with a separator Python strips are events; the
    # leap second, 30 February, past int64, the missing user and time, 'teleport'
    # and 'İmpression' are not.
    assert len(events) == 8 and len(bad) == 7
    assert {"timestamp": 1793613660, "user_id": "u1", "item_id": "i1",
            "event_type": "purchase"} in events
    assert any(reason == "bad_event_type" and "İmpression" in detail for reason, detail in bad)


def test_a_time_range_and_typed_columns_from_json():
    data = dataclasses.replace(DATA, events=dataclasses.replace(
        DATA.events, time_range=("1793613600", "1793613700")))
    rows = [{"timestamp": 1793613660, "user_id": 7, "item_id": "i1", "event_type": "click"},
            {"timestamp": 1793613700, "user_id": "u1", "item_id": "i1",
             "event_type": "click"},  # the end is excluded
            {"timestamp": 1793613650.0, "user_id": "u1", "item_id": "i1",
             "event_type": "click"}]  # a float: the parser's
    batch = eb.EventBatch([json.dumps(r) for r in rows], eb._table(
        {k: [r[k] for r in rows] for k in HEADER}), rows)
    assert batch.table is None  # mixed ints and strings: no one Arrow type, all to the parser
    events, bad = _verdicts(batch, data)
    # The float's text is '1793613650.0': neither unix seconds nor ISO to the parser.
    assert events == [{"timestamp": 1793613660, "user_id": "7", "item_id": "i1",
                       "event_type": "click"}]
    assert sorted(reason for reason, _ in bad) == ["bad_timestamp", "timestamp_out_of_range"]
    ints = [dict(r, user_id="u1") for r in rows[:2]]
    typed = eb.EventBatch(None, eb._table({k: [r[k] for r in ints] for k in HEADER}), ints)
    assert typed.table.schema.field("timestamp").type == pa.int64()
    assert _verdicts(typed, data)[1] == [("timestamp_out_of_range", "timestamp=1793613700 "
                                          "outside the data set's time range "
                                          "['1793613600', '1793613700']")]


def _pipeline():
    return test_pipeline.TestPipeline(options=pipeline_options([]))


def _check_read(pattern, file_format):
    """The batches' events and dead letters are the row reader's and row parser's."""
    def validate(batch):
        events, bad = eb.BatchValidator(DATA)(batch)
        return [("ok", json.dumps(e, sort_keys=True)) for e in events.to_pylist()] + [
            ("bad", err.reason, record) for record, err in bad]

    expected = _expected_read(pattern, file_format)
    with _pipeline() as p:
        batches = p | "ReadBatches" >> eb.ReadEventBatches(pattern, file_format, HEADER)
        dead = batches.dead_letter | "Dead" >> beam.Map(lambda d: ("dead", d.reason, d.record))
        assert_that((batches.main | beam.FlatMap(validate), dead) | beam.Flatten(),
                    equal_to(expected))
    return expected


def _expected_read(pattern, file_format):
    from shoprec.io import tables

    out = []
    for row in tables.read_rows(pattern, file_format):
        if isinstance(row, tables.BadRow):
            out.append(("dead", row.reason, row.record))
            continue
        verdict = _expected([[row[1].get(c) for c in HEADER]])[0]
        out.append(("ok", json.dumps(verdict, sort_keys=True)) if isinstance(verdict, dict)
                   else ("bad", verdict[0], row[0]))
    return out


def test_json_lines_and_parquet_batches_read_as_the_row_reader(tmp_path):
    lines = [json.dumps(dict(zip(HEADER, r))) for r in ROWS[:6]] + [
        "", "[1, 2]", "{not json", json.dumps({"timestamp": 1793613660, "user_id": "u2",
                                               "item_id": "i2", "event_type": "click"})]
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n")
    found = _check_read(str(tmp_path / "events.jsonl"), "jsonl")
    assert sorted(r[1] for r in found if r[0] == "dead") == ["malformed_row", "malformed_row"]
    table = pa.table({c: pa.array(list(v), pa.string()) for c, v in zip(HEADER, zip(*ROWS))})
    pq.write_table(table, str(tmp_path / "events.parquet"))
    assert len(_check_read(str(tmp_path / "events.parquet"), "parquet")) == len(ROWS)


def test_csv_by_arrow_and_by_the_row_reader(tmp_path):
    plain = "\n".join([",".join(HEADER)] + [",".join(r) for r in ROWS[:4]] + [
        "", "  ", "1793613660,u1,i1", "1793613660,u1,i1,click,extra", "1793613661,u2,i2,view"])
    (tmp_path / "plain.csv").write_text(plain + "\n")
    assert eb._arrow_csv((plain + "\n").encode(), HEADER) is not None
    found = _check_read(str(tmp_path / "plain.csv"), "csv")
    assert sorted(r[1] for r in found if r[0] == "dead") == ["wrong_column_count"] * 2
    quoted = plain + '\n1793613662,"u\n3",i1,click\n'
    assert eb._arrow_csv(quoted.encode(), HEADER) is None  # quotes: the row reader
    (tmp_path / "quoted.csv").write_text(quoted)
    assert ("ok", json.dumps({"event_type": "click", "item_id": "i1",
                              "timestamp": 1793613662, "user_id": "u\n3"}, sort_keys=True)) \
        in _check_read(str(tmp_path / "quoted.csv"), "csv")
    assert eb._arrow_csv(b"\xef\xbb\xbf" + plain.encode(), HEADER) is None
    assert eb._arrow_csv(plain.replace("\n", "\r\n").encode(), HEADER) is None
    assert eb._arrow_csv(plain.encode() + b"\n1,u\xff,i1,click\n", HEADER) is None


def test_csv_read_by_arrow_in_blocks_then_by_the_row_reader(tmp_path, monkeypatch):
    # Blocks of ~40 bytes: a block starting with a blank line (counted as the row reader
    # counts it), a bad-width record inside a later block, and a quoted record four
    # blocks in, from where the row reader reads on.
    lines = [",".join(HEADER)] + [",".join(r) for r in ROWS[:4]] + [
        "", "", "1793613660,u1,i1", "1793613661,u2,i2,view"]
    quoted = lines + ['1793613662,"u\n3",i1,click', "1793613663,u4,i2,click", ""]
    monkeypatch.setattr(eb, "BLOCK_BYTES", 40)
    for name, text in (("plain.csv", "\n".join(lines) + "\n"), ("quoted.csv", "\n".join(quoted))):
        (tmp_path / name).write_text(text)
        found = _check_read(str(tmp_path / name), "csv")
        assert [r[1] for r in found if r[0] == "dead"] == ["wrong_column_count"]
    assert ("ok", json.dumps({"event_type": "click", "item_id": "i2", "timestamp": 1793613663,
                              "user_id": "u4"}, sort_keys=True)) in found
    with open(tmp_path / "quoted.csv", "rb") as f:
        blocks = list(eb._Blocks(f, 8))
    assert b"".join(blocks) == "\n".join(quoted).encode()
    assert len(blocks) > 8 and all(b.endswith(b"\n") for b in blocks)


def test_each_batch_holds_only_its_own_rows_when_pickled(monkeypatch):
    # 20,000 rows in batches of 8,192: slices of one table, which pickle with all of
    # its buffers (each ~all 20,000 rows) unless copied; the rows stay the table's.
    monkeypatch.setattr(eb, "BATCH_ROWS", 8192)
    table = pa.table({"user_id": pa.array([f"user-{i:06d}" for i in range(20_000)]),
                      "timestamp": pa.array(range(20_000), pa.int64())})
    whole = len(pickle.dumps(table))
    batches = list(eb.batches(table))
    assert [b.num_rows for b in batches] == [8192, 8192, 3616]
    assert pa.Table.from_batches(batches).equals(table)
    sizes = [len(pickle.dumps(b)) for b in batches]
    # Each about its share of the table's bytes (8192 / 20000 = 0.41, 3616 / 20000 = 0.18).
    assert [round(s / whole, 2) for s in sizes] == [0.41, 0.41, 0.18]
    assert len(pickle.dumps(table.to_batches(8192)[2])) > 0.9 * whole  # as sliced
