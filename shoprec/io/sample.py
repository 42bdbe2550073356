"""A bounded sample of an input table, and a photo folder's file list, for ``shoprec init``.

``shoprec init`` guesses a data set's description from what its files hold.
It reads at most ``limit`` rows of a table, in file-name order, through the
same row readers the Beam jobs use (``shoprec.io.tables``), so a value init
sees is the value ingest will see: text for CSV, typed scalars for JSON lines
and Parquet. Rows that are no row (a broken CSV line) are counted, not kept.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Any, Dict, List, Optional, Tuple

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from shoprec.core.errors import ConfigError, InputMissingError
from shoprec.io import tables

# File name endings → input format (compressed CSV / JSON lines are read as such).
_SUFFIXES = ((".csv", "csv"), (".csv.gz", "csv"), (".tsv", None), (".parquet", "parquet"),
             (".pq", "parquet"), (".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "jsonl"),
             (".jsonl.gz", "jsonl"))
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")


@dataclasses.dataclass(frozen=True)
class TableSample:
    """The first rows of a table.

    Attributes:
        pattern: The path or glob read.
        format: ``csv``, ``jsonl`` or ``parquet``.
        columns: Column names in file order (JSON lines: in order of first use).
        rows: ``{column: value}`` per row read; a value is text (CSV) or a
            typed scalar (JSON lines, Parquet), None where the row lacks it.
        complete: Whether every row of every matching file was read.
        bad_rows: Records that were no row (counted, not kept).
    """

    pattern: str
    format: str
    columns: Tuple[str, ...]
    rows: Tuple[Dict[str, Any], ...]
    complete: bool
    bad_rows: int = 0

    def values(self, column: str) -> List[Any]:
        return [row.get(column) for row in self.rows]


def format_of(path: str) -> str:
    """The input format a file name says.

    Raises:
        ConfigError: an ending shoprec does not read (named, with those it does).
    """
    lower = path.lower()
    for suffix, fmt in sorted(_SUFFIXES, key=lambda s: -len(s[0])):
        if lower.endswith(suffix):
            if fmt is None:
                break
            return fmt
    known = ", ".join(s for s, f in _SUFFIXES if f)
    raise ConfigError(f"{path}: cannot tell its format from the name; shoprec reads {known}")


def read_sample(pattern: str, limit: int) -> TableSample:
    """Reads at most ``limit`` rows of the files matching ``pattern``.

    Raises:
        InputMissingError: nothing matches. ConfigError: an unknown format.
    """
    fmt = format_of(pattern)
    paths = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    if not paths:
        raise InputMissingError(f"no file matches {pattern}")
    rows: List[Dict[str, Any]] = []
    names: Dict[str, None] = {}
    bad = 0
    complete = True
    for path in paths:
        for row in _rows(path, fmt):
            if len(rows) >= limit:
                complete = False
                break
            if isinstance(row, tables.BadRow):
                bad += 1
                continue
            names.update(dict.fromkeys(row[1]))
            rows.append(row[1])
        if not complete:
            break
    return TableSample(pattern, fmt, tuple(names), tuple(rows), complete, bad)


def _rows(path: str, fmt: str):
    """One file's rows as ``shoprec.io.tables`` reads them, lazily (CSV, JSON lines)."""
    if fmt == "csv":
        header = tables.read_header(path)
        with FileSystems.open(path) as f:
            yield from (r for r in tables.csv_file_rows(f, header) if r is not None)
    elif fmt == "jsonl":
        with FileSystems.open(path) as f:
            for line in io.TextIOWrapper(f, encoding="utf-8-sig", newline=""):
                if line.strip():
                    try:
                        yield tables.json_row(line.rstrip("\r\n"))
                    except tables.BadRow as bad:
                        yield bad
    else:
        import pyarrow.parquet as pq

        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=4096):
                for row in batch.to_pylist():
                    yield tables.parquet_record(row), row


def list_images(folder: str, limit: int) -> Tuple[Tuple[str, ...], bool]:
    """Image files under a local ``folder``, relative to it, in sorted walk order.

    Returns:
        (relative paths, at most ``limit``; whether the walk saw them all).

    Raises:
        InputMissingError: not a folder.
    """
    if not os.path.isdir(folder):
        raise InputMissingError(f"--images {folder}: not a folder")
    found: List[str] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(IMAGE_SUFFIXES):
                if len(found) >= limit:
                    return tuple(found), False
                found.append(os.path.relpath(os.path.join(root, name), folder))
    return tuple(found), True


def common_folder(paths: List[Optional[str]]) -> str:
    """The deepest folder holding every given (local) path."""
    given = [os.path.abspath(p) for p in paths if p]
    return os.path.commonpath([os.path.dirname(p) for p in given])
