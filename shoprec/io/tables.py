"""An input table's rows, CSV, JSON lines or Parquet, as ``(record, {column: value})``.

The one reader of tables: the Beam jobs run :func:`csv_row` and
:func:`json_row` over the lines Beam reads (``pipelines.read.ReadTable``), and
the image encoder's catalogue, which fits in memory, reads the same rows with
:func:`read_rows`. CSV is read line by line against the header, values as
text; JSON lines and Parquet keep their types. The record is the row as read
(the line; Parquet: its JSON form), for dead letters.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

FORMATS = ("csv", "jsonl", "parquet")
Row = Tuple[str, Dict[str, Any]]


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
        FileNotFoundError: nothing matches.
    """
    matched = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    if not matched:
        raise FileNotFoundError(f"no input file matches {pattern} (is --data right?)")
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
        FileNotFoundError: no file matches. ValueError: an unknown format, or
            a required column the header or schema lacks.
    """
    if file_format not in FORMATS:
        raise ValueError(f"unknown input format {file_format!r}")
    if file_format == "jsonl":
        first_file(pattern)
        return None
    names = read_header(pattern) if file_format == "csv" else read_parquet_columns(pattern)
    missing = [c for c in required if c not in names]
    if missing:
        raise ValueError(f"{pattern}: input lacks column(s) {missing}; has {names}")
    return names


def csv_row(line: str, header: Sequence[str]) -> Row:
    """One CSV line against the header.

    Raises:
        BadRow: ``malformed_row`` or ``wrong_column_count``.
    """
    try:
        cells = next(csv.reader([line]))
    except csv.Error as err:
        raise BadRow("malformed_row", str(err), line) from err
    if len(cells) != len(header):
        raise BadRow("wrong_column_count",
                     f"{len(cells)} columns, header has {len(header)}", line)
    return line, dict(zip(header, cells))


def json_row(line: str) -> Row:
    """One JSON-lines line: an object.

    Raises:
        BadRow: ``malformed_row``.
    """
    try:
        row = json.loads(line)
    except ValueError as err:
        raise BadRow("malformed_row", str(err), line) from err
    if not isinstance(row, dict):
        raise BadRow("malformed_row", "not a JSON object", line)
    return line, row


def parquet_record(row: Dict[str, Any]) -> str:
    """A Parquet row's record: its JSON form."""
    return json.dumps(row, default=str, sort_keys=True)


def read_rows(pattern: str, file_format: str, limit: Optional[int] = None
              ) -> Iterator[Union[Row, BadRow]]:
    """Every row of the files matching ``pattern``, in memory, as the Beam reader sees them.

    Blank lines are skipped; a line that is no row comes out as its
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
        else:
            with FileSystems.open(path) as f:
                text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
                # Lines end at \n (or \r\n), as Beam's text reader splits them.
                lines = [line.rstrip("\r") for line in text.read().split("\n")]
            if file_format == "csv":
                lines = lines[1:]
            rows = (line for line in lines if line.strip())
        for row in rows:
            if limit is not None and seen >= limit:
                return
            seen += 1
            if file_format == "parquet":
                yield row
                continue
            try:
                yield csv_row(row, names) if file_format == "csv" else json_row(row)
            except BadRow as bad:
                yield bad
