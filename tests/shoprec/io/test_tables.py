"""The one table reader: the same rows in memory as through Beam, bad lines with reasons."""

import csv
import json

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.options import pipeline_options
from pipelines.read import ReadTable
from shoprec.core.errors import InputEmptyError, InputMissingError
from shoprec.io import tables

CSV = ('\ufeffitem_id,colour,image_path\n'
       'i1,red,a.png\n'
       '\n'
       'i2,"blue, dark",b.png\r\n'
       'i3,green\n'
       'i5,"two\nlines, ""quoted""",c.png\n'
       'i6,"open,d.png\n'
       'i7,after,e.png\n')


def _in_memory(path, file_format):
    out = []
    for row in tables.read_rows(str(path), file_format):
        out.append(("bad", row.reason, row.record) if isinstance(row, tables.BadRow) else row)
    return out


def test_csv_rows_and_bad_lines_by_hand(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text(CSV, encoding="utf-8")
    assert tables.columns(str(path), "csv", ["item_id"]) == ["item_id", "colour", "image_path"]
    # The blank line is skipped; i3 has two cells; i5's quoted colour spans two
    # lines (RFC 4180) and is one row; i6's quote never closes, so its line is
    # the dead letter and i7, after it, is still read.
    assert _in_memory(path, "csv") == [
        ("i1,red,a.png", {"item_id": "i1", "colour": "red", "image_path": "a.png"}),
        ('i2,"blue, dark",b.png', {"item_id": "i2", "colour": "blue, dark", "image_path": "b.png"}),
        ("bad", "wrong_column_count", "i3,green"),
        ('i5,"two\nlines, ""quoted""",c.png',
         {"item_id": "i5", "colour": 'two\nlines, "quoted"', "image_path": "c.png"}),
        ("bad", "unclosed_quote", 'i6,"open,d.png'),
        ("i7,after,e.png", {"item_id": "i7", "colour": "after", "image_path": "e.png"})]
    assert list(tables.read_rows(str(path), "csv", limit=1)) == [_in_memory(path, "csv")[0]]


@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
def test_beam_reads_the_rows_read_in_memory(tmp_path, file_format):
    path = tmp_path / f"items.{file_format}"
    if file_format == "csv":
        path.write_text(CSV, encoding="utf-8")
    else:
        path.write_text(json.dumps({"item_id": "i1", "price": 2.5}) + "\n[1, 2]\n{bad\n")
    expected = _in_memory(path, file_format)
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        read = p | ReadTable(str(path), file_format, "items")
        dead = read.dead_letter | beam.Map(lambda d: ("bad", d.reason, d.record))
        both = (read.main, dead) | beam.Flatten()
        assert_that(both, equal_to(expected))
    assert {r[1] for r in expected if r[0] == "bad"} <= {"malformed_row", "wrong_column_count",
                                                          "unclosed_quote"}


def test_parquet_keeps_types_and_checks_required_columns(tmp_path):
    path = tmp_path / "items.parquet"
    pq.write_table(pa.table({"item_id": ["i1"], "price": [2.5]}), path)
    assert _in_memory(path, "parquet") == [('{"item_id": "i1", "price": 2.5}',
                                             {"item_id": "i1", "price": 2.5})]
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['colour'\]"):
        tables.columns(str(path), "parquet", ["item_id", "colour"])


def test_a_missing_file_and_an_unknown_format_are_clear_errors(tmp_path):
    with pytest.raises(InputMissingError, match="no input file matches .*nothing.csv"):
        tables.columns(str(tmp_path / "nothing.csv"), "csv", [])
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(InputEmptyError, match="empty.csv is empty: no header line"):
        tables.columns(str(tmp_path / "empty.csv"), "csv", [])
    with pytest.raises(ValueError, match="unknown input format 'xlsx'"):
        tables.columns(str(tmp_path / "x"), "xlsx", [])


def test_a_record_with_bytes_that_are_not_utf8_is_a_dead_letter(tmp_path):
    path = tmp_path / "items.csv"
    path.write_bytes(b"item_id,colour\ni1,r\xe9d\ni2,blue\n")
    assert _in_memory(path, "csv") == [("bad", "bad_encoding", "i1,r\ufffdd"),
                                       ("i2,blue", {"item_id": "i2", "colour": "blue"})]


def test_one_record_parses_alone_as_in_a_file():
    header = ["a", "b"]
    assert tables.csv_row('1,"x\ny"', header) == ('1,"x\ny"', {"a": "1", "b": "x\ny"})
    with pytest.raises(tables.BadRow) as bad:
        tables.csv_row("1,2\n3,4", header)
    assert bad.value.reason == "malformed_row"


def test_records_longer_than_a_read_chunk_are_whole(tmp_path):
    # 2.5 MiB of text in one quoted field, with a line break: the reader's
    # 1 MiB chunks end inside it.
    long = "x" * (1 << 20) + "\n" + "y" * (3 << 19)
    path = tmp_path / "items.csv"
    path.write_text(f'item_id,colour\ni1,"{long}"\ni2,blue\n', encoding="utf-8")
    csv.field_size_limit(4 << 20)
    try:
        rows = _in_memory(path, "csv")
    finally:
        csv.field_size_limit(131072)
    assert [r[1] for r in rows] == [{"item_id": "i1", "colour": long},
                                    {"item_id": "i2", "colour": "blue"}]
