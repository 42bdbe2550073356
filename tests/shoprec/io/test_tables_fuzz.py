"""Fuzzing the row parser: no text crashes it, every rejected record has a reason.

Bounded for CI (``max_examples``, no deadline); cases fuzzing found are kept
as ``@example`` regressions.
"""

import csv
import io

from hypothesis import example, given, settings, strategies as st

from shoprec.io import tables

REASONS = {"malformed_row", "wrong_column_count", "unclosed_quote", "bad_encoding"}
HEADER = ["item_id", "colour", "image_path"]
# Characters that matter to CSV, mixed with any others.
CSV_TEXT = st.text(alphabet=st.sampled_from(',"\r\n\x00 \ufeffab\u00e9') | st.characters(),
                   max_size=60)


@settings(max_examples=400, deadline=None)
@given(CSV_TEXT)
@example('a,"b\nc",d')
@example('"open,x\ny,z')
@example("a\rb,c,d")
@example("\ud800")  # a lone surrogate crashed the dead letter's record (found by fuzzing)
def test_one_record_parses_or_has_a_reason(text):
    try:
        record, row = tables.csv_row(text, HEADER)
    except tables.BadRow as bad:
        assert bad.reason in REASONS and bad.detail
        return
    assert list(row) == HEADER and isinstance(record, str)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
@example(b"item_id,colour,image_path\n\xff\xfe,x,y\n")
@example(b"\n\r\x80")  # a malformed record holding a byte that is not UTF-8
@example(b'item_id,colour,image_path\ni1,"' + b"x\n" * (tables.MAX_RECORD_LINES + 5))
def test_any_bytes_as_a_file_give_rows_blanks_or_reasons(data):
    for row in tables.csv_file_rows(io.BytesIO(data), HEADER):
        if isinstance(row, tables.BadRow):
            assert row.reason in REASONS and row.detail
            row.record.encode("utf-8")  # the dead letter's record is valid text
        elif row is not None:
            assert list(row[1]) == HEADER


ROW = st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                              blacklist_characters="\x00"), max_size=12),
               min_size=3, max_size=3)


@settings(max_examples=300, deadline=None)
@given(st.lists(ROW, max_size=6))
@example([["i1", "two\nlines", 'a "quoted" b'], ["i2", "\r\n", ","]])
@example([["", "", "\r"]])
def test_rows_written_by_the_csv_module_read_back_exactly(rows):
    buf = io.StringIO()
    # RFC 4180's "\r\n": with "\n" the csv module leaves a lone "\r" unquoted.
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    read = list(tables.csv_file_rows(io.BytesIO(buf.getvalue().encode("utf-8")), HEADER))
    # A row of three empty cells is the line ',,': a row, not a blank line.
    assert [r[1] for r in read] == [dict(zip(HEADER, row)) for row in rows]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
@example("[" * 100_000)  # RecursionError in json.loads, found by fuzzing
@example("[1, 2]")
def test_a_json_line_is_an_object_or_a_malformed_row(line):
    try:
        _, row = tables.json_row(line)
    except tables.BadRow as bad:
        assert bad.reason == "malformed_row" and bad.detail
        return
    assert isinstance(row, dict)
