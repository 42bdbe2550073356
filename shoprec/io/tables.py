"""An input table's rows, CSV, JSON lines or Parquet, as ``(record, {column: value})``.

The one reader of tables: the Beam jobs (``pipelines.read.ReadTable``) run
:func:`csv_file_rows` over each CSV file and :func:`json_row` over the lines
Beam reads, and the image encoder's catalogue, which fits in memory, reads the
same rows with :func:`read_rows`. CSV follows RFC 4180: a quoted field may
hold commas, doubled quotes and line breaks, so a record may span lines; the
csv module's own quote rules decide where a record ends. Values are text; JSON
lines and Parquet keep their types. The record is the row as read (its lines;
Parquet: its JSON form), for dead letters.

A quote that never closes would swallow the rest of the file into one record.
So a record may span at most :data:`MAX_RECORD_LINES` lines, and one that
reaches the end of the file inside an open quote is cut short too: either way
its first line is an ``unclosed_quote`` dead letter and reading resumes on the
next line, so the rows after it are still read and counted.
"""

from __future__ import annotations

import csv
import io
import json
from collections import deque
from typing import (Any, BinaryIO, Deque, Dict, Iterable, Iterator, List, Optional, Sequence,
                    Tuple, Union)

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from shoprec.core.errors import InputEmptyError, InputMissingError, InputSchemaError

FORMATS = ("csv", "jsonl", "parquet")
Row = Tuple[str, Dict[str, Any]]
# Lines one CSV record may span; a longer one is taken for an unclosed quote.
MAX_RECORD_LINES = 1000


class BadRow(ValueError):
    """A line that is no row: ``reason`` is its dead-letter reason, ``record`` the line."""

    def __init__(self, reason: str, detail: str, record: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.record = record


def first_file(pattern: str) -> str:
    """The first file (by name) matching ``pattern``.

    Raises:
        InputMissingError: nothing matches.
    """
    matched = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    if not matched:
        raise InputMissingError(f"no input file matches {pattern}: check --data and the "
                                f"config's inputs")
    return matched[0]


def read_header(pattern: str) -> List[str]:
    """The column names on the first line of the first file matching ``pattern``."""
    head = b""
    with FileSystems.open(first_file(pattern)) as f:  # .gz/.bz2 decompressed by extension
        while b"\n" not in head:
            chunk = f.read(1 << 16)
            if not chunk:
                break
            head += chunk
    # utf-8-sig drops a byte-order mark that spreadsheet exports prepend.
    line = head.split(b"\n", 1)[0].decode("utf-8-sig").rstrip("\r")
    return [c.strip() for c in next(csv.reader([line]), [])]


def read_parquet_columns(pattern: str) -> List[str]:
    """The column names of the first Parquet file matching ``pattern``."""
    import pyarrow.parquet as pq

    path = first_file(pattern)
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return list(pq.read_schema(f).names)


def columns(pattern: str, file_format: str, required: Sequence[str]) -> Optional[List[str]]:
    """The table's columns (None for JSON lines, which has no header), checked.

    Raises:
        InputMissingError: no file matches. InputEmptyError: a CSV file with
            no header line (an empty file). InputSchemaError: a required
            column the header or schema lacks. ValueError: an unknown format.
    """
    if file_format not in FORMATS:
        raise ValueError(f"unknown input format {file_format!r}")
    if file_format == "jsonl":
        first_file(pattern)
        return None
    names = read_header(pattern) if file_format == "csv" else read_parquet_columns(pattern)
    if not any(names):
        raise InputEmptyError(f"{first_file(pattern)} is empty: no header line, no rows")
    missing = [c for c in required if c not in names]
    if missing:
        raise InputSchemaError(f"{pattern}: input lacks column(s) {missing}; has {names}")
    return names


class _Lines:
    """A file's text lines for the csv reader, keeping those of the record being read.

    Lines handed back (:meth:`push_back`) come out again first, so a record
    cut short can be re-read from its second line.
    """

    def __init__(self, lines: Iterable[str]):
        self._source = iter(lines)
        self._pending: Deque[str] = deque()
        self.taken: List[str] = []
        self.exhausted = False

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if len(self.taken) >= MAX_RECORD_LINES:
            raise _RecordTooLong()
        if self._pending:
            line = self._pending.popleft()
        else:
            try:
                line = next(self._source)
            except StopIteration:
                self.exhausted = True
                raise
        self.taken.append(line)
        return line

    def push_back(self, lines: Sequence[str]) -> None:
        self._pending.extendleft(reversed(lines))
        self.exhausted = False


class _RecordTooLong(Exception):
    """Raised inside the csv reader when a record passes MAX_RECORD_LINES."""


def _open_at_eof(record: str) -> bool:
    """Whether a record the reader ended at the end of input is inside an open quote."""
    try:
        next(csv.reader(split_lines(record), strict=True), None)
    except csv.Error:
        return True
    return False


def split_lines(text: str) -> List[str]:
    """``text`` cut after each ``\\n``, line ends kept (a lone ``\\r`` is no line end)."""
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    return out + [lines[-1]] if lines[-1] else out


def csv_records(lines: Iterable[str]) -> Iterator[Tuple[str, Union[List[str], BadRow]]]:
    """Text lines (ends kept) → (record, its cells or why it is no row), per RFC 4180.

    The record is the lines the csv reader took for it, without the final
    line end. A blank record has no cells (``[]``).
    """
    source = _Lines(lines)
    reader = csv.reader(source)
    while True:
        source.taken = []
        try:
            cells = next(reader)
        except StopIteration:
            return
        except _RecordTooLong:
            cells = None
        except csv.Error as err:
            record = "".join(source.taken).rstrip("\r\n")
            # The dead letter's record must be text JSON can hold, whatever the bytes.
            yield record, BadRow("malformed_row", str(err), _printable(record))
            reader = csv.reader(source)
            continue
        taken = list(source.taken)
        record = "".join(taken).rstrip("\r\n")
        if cells is not None and not (len(taken) > 1 and source.exhausted
                                      and _open_at_eof(record)):
            yield record, cells
            continue
        # An open quote: the first line is the dead letter, the rest is read again.
        first = taken[0].rstrip("\r\n")
        source.push_back(taken[1:])
        reader = csv.reader(source)
        yield first, BadRow("unclosed_quote", f"a quoted field opens and does not close "
                                              f"within {MAX_RECORD_LINES} lines or the file",
                            _printable(first))


def _checked(record: str, cells: Union[List[str], BadRow], header: Sequence[str]
             ) -> List[str]:
    if isinstance(cells, BadRow):
        raise cells
    try:
        record.encode("utf-8")
    except UnicodeEncodeError as err:  # Bytes that were not UTF-8, kept as surrogates.
        raise BadRow("bad_encoding", f"not UTF-8 at character {err.start}",
                     _printable(record)) from err
    if len(cells) != len(header):
        raise BadRow("wrong_column_count",
                     f"{len(cells)} columns, header has {len(header)}", record)
    return cells


def _to_row(record: str, cells: Union[List[str], BadRow], header: Sequence[str]) -> Row:
    return record, dict(zip(header, _checked(record, cells, header)))


def _printable(record: str) -> str:
    """A record with each undecodable byte (or lone surrogate) as U+FFFD, valid text for JSON."""
    return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in record)


def csv_row(line: str, header: Sequence[str]) -> Row:
    """One CSV record (it may span lines inside quotes) against the header.

    Raises:
        BadRow: ``malformed_row`` (also: more than one record),
            ``unclosed_quote``, ``bad_encoding`` or ``wrong_column_count``.
    """
    records = [r for r in csv_records(split_lines(line)) if r[1] != []]
    if len(records) != 1:
        raise BadRow("malformed_row", f"{len(records)} records, one expected", line)
    return _to_row(*records[0], header)


def _decoded_lines(f: BinaryIO) -> Iterator[str]:
    """A binary file's lines as text; undecodable bytes kept as surrogates (``bad_encoding``)."""
    first = True
    pending: List[bytes] = []  # the line being read, in chunks: no quadratic re-joining
    while True:
        chunk = f.read(1 << 20)
        if not chunk:
            break
        *ends, rest = chunk.split(b"\n")
        for end in ends:
            yield _decode(b"".join(pending) + end + b"\n", first)
            pending, first = [], False
        pending.append(rest)
    if any(pending):
        yield _decode(b"".join(pending), first)


def _decode(line: bytes, first: bool) -> str:
    # utf-8-sig drops a byte-order mark that spreadsheet exports prepend.
    return line.decode("utf-8-sig" if first else "utf-8", "surrogateescape")


def csv_file_cells(f: BinaryIO, header: Sequence[str]
                   ) -> Iterator[Optional[Union[Tuple[str, List[str]], BadRow]]]:
    """Every record of one CSV file after its header line, against ``header``.

    Yields:
        (record, its cells, one per header column); a :class:`BadRow` for a
        record that is no row; None for a blank line (callers count it).
    """
    records = csv_records(_decoded_lines(f))
    next(records, None)  # The file's own header line.
    for record, cells in records:
        if not record.strip():
            yield None
            continue
        try:
            yield record, _checked(record, cells, header)
        except BadRow as bad:
            yield bad


def csv_file_rows(f: BinaryIO, header: Sequence[str]) -> Iterator[Optional[Union[Row, BadRow]]]:
    """:func:`csv_file_cells` with each row as {column: value}."""
    for row in csv_file_cells(f, header):
        yield row if row is None or isinstance(row, BadRow) else (row[0], dict(zip(header,
                                                                                   row[1])))


def json_row(line: str) -> Row:
    """One JSON-lines line: an object.

    Raises:
        BadRow: ``malformed_row``.
    """
    try:
        row = json.loads(line)
    except ValueError as err:
        raise BadRow("malformed_row", str(err), line) from err
    except RecursionError as err:  # '[[[[…' deeper than the parser's stack (found by fuzzing)
        raise BadRow("malformed_row", "nested too deeply", line) from err
    if not isinstance(row, dict):
        raise BadRow("malformed_row", "not a JSON object", line)
    return line, row


def parquet_record(row: Dict[str, Any]) -> str:
    """A Parquet row's record: its JSON form."""
    return json.dumps(row, default=str, sort_keys=True)


def read_rows(pattern: str, file_format: str, limit: Optional[int] = None
              ) -> Iterator[Union[Row, BadRow]]:
    """Every row of the files matching ``pattern``, in memory, as the Beam reader sees them.

    Blank lines are skipped; a record that is no row comes out as its
    :class:`BadRow` rather than raising, so a caller can count it.
    """
    names = columns(pattern, file_format, ())
    seen = 0
    paths = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    for path in paths:
        if file_format == "parquet":
            import pyarrow.parquet as pq

            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                rows = [(parquet_record(r), r) for r in pq.read_table(f).to_pylist()]
        elif file_format == "csv":
            with FileSystems.open(path) as f:
                rows = [r for r in csv_file_rows(f, names) if r is not None]
        else:
            with FileSystems.open(path) as f:
                text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
                # Lines end at \n (or \r\n), as Beam's text reader splits them.
                lines = [line.rstrip("\r") for line in text.read().split("\n")]
            rows = [line for line in lines if line.strip()]
        for row in rows:
            if limit is not None and seen >= limit:
                return
            seen += 1
            if file_format != "jsonl":
                yield row
                continue
            try:
                yield json_row(row)
            except BadRow as bad:
                yield bad
