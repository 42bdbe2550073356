"""Reading an input table, CSV, JSONL or Parquet, into (record, {column: value}) pairs.

The header (CSV) or schema (Parquet) is read when the pipeline is built, so a
file lacking a required column fails before anything runs rather than
dead-lettering every row. JSONL has no header: a line missing a column is a
row with a missing value.
"""

from __future__ import annotations

import csv
import json
from typing import List, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines import dead_letter as dl
from pipelines.outputs import Outputs

FORMATS = ("csv", "jsonl", "parquet")


def _first_file(pattern: str) -> str:
    matched = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    if not matched:
        raise FileNotFoundError(f"no input file matches {pattern} (is --data right?)")
    return matched[0]


def read_header(pattern: str) -> List[str]:
    """The column names on the first line of the first file matching ``pattern``."""
    head = b""
    with FileSystems.open(_first_file(pattern)) as f:  # .gz/.bz2 decompressed by extension
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

    path = _first_file(pattern)
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return list(pq.read_schema(f).names)


class _SplitCsv(beam.DoFn):
    """Splits a CSV line against the header into (record, {column: text})."""

    def __init__(self, header: Sequence[str], input_name: str):
        self._header = list(header)
        self._input = input_name

    def process(self, line: str):
        if not line.strip():
            # A blank line carries no record; counted so it is still visible.
            beam.metrics.Metrics.counter(dl.NAMESPACE, f"blank_lines/{self._input}").inc()
            return
        beam.metrics.Metrics.counter(dl.NAMESPACE, f"rows_read/{self._input}").inc()
        try:
            cells = next(csv.reader([line]))
        except csv.Error as err:
            yield dl.tagged(self._input, "malformed_row", str(err), line)
            return
        if len(cells) != len(self._header):
            yield dl.tagged(self._input, "wrong_column_count",
                            f"{len(cells)} columns, header has {len(self._header)}", line)
            return
        yield line, dict(zip(self._header, cells))


class _ParseJson(beam.DoFn):
    """Parses a JSON-lines line into (record, {column: value})."""

    def __init__(self, input_name: str):
        self._input = input_name

    def process(self, line: str):
        if not line.strip():
            beam.metrics.Metrics.counter(dl.NAMESPACE, f"blank_lines/{self._input}").inc()
            return
        beam.metrics.Metrics.counter(dl.NAMESPACE, f"rows_read/{self._input}").inc()
        try:
            row = json.loads(line)
        except ValueError as err:
            yield dl.tagged(self._input, "malformed_row", str(err), line)
            return
        if not isinstance(row, dict):
            yield dl.tagged(self._input, "malformed_row", "not a JSON object", line)
            return
        yield line, row


class ReadTable(beam.PTransform):
    """Reads one input table as (record, {column: value}) pairs.

    CSV is read line by line (no embedded newlines in quoted fields); a line
    whose column count differs from the header's is a ``wrong_column_count``
    dead letter. The header is read when the pipeline is built so that a file
    lacking a required column fails before anything runs.
    """

    def __init__(self, pattern: str, file_format: str, input_name: str,
                 required: Sequence[str] = ()):
        """Args:
            pattern: File or glob (local or gs://).
            file_format: ``csv``, ``jsonl`` or ``parquet``.
            input_name: ``events``, ``items`` or ``users`` (dead letters, counters).
            required: Columns the header must name (CSV, Parquet).
        """
        super().__init__()
        if file_format not in FORMATS:
            raise ValueError(f"unknown input format {file_format!r}")
        self._pattern = pattern
        self._format = file_format
        self._input = input_name
        self._required = list(required)

    def expand(self, pbegin) -> Outputs:
        if self._format == "jsonl":
            _first_file(self._pattern)
            parsed = (pbegin
                      | "ReadLines" >> beam.io.ReadFromText(self._pattern, validate=False)
                      | "ParseJson" >> beam.ParDo(_ParseJson(self._input)).with_outputs(
                          dl.DEAD_LETTER_TAG, main="main"))
            return Outputs(parsed.main, parsed[dl.DEAD_LETTER_TAG])
        if self._format == "csv":
            columns = read_header(self._pattern)
        else:
            columns = read_parquet_columns(self._pattern)
        missing = [c for c in self._required if c not in columns]
        if missing:
            raise ValueError(f"{self._pattern}: {self._input} input lacks column(s) {missing}; "
                             f"has {columns}")
        if self._format == "csv":
            split = (pbegin
                     | "ReadLines" >> beam.io.ReadFromText(self._pattern, skip_header_lines=1,
                                                           validate=False)
                     | "SplitCsv" >> beam.ParDo(_SplitCsv(columns, self._input)).with_outputs(
                         dl.DEAD_LETTER_TAG, main="main"))
            return Outputs(split.main, split[dl.DEAD_LETTER_TAG])
        input_name = self._input

        def to_record(row):
            beam.metrics.Metrics.counter(dl.NAMESPACE, f"rows_read/{input_name}").inc()
            return json.dumps(row, default=str, sort_keys=True), row

        rows = (pbegin
                | "ReadParquet" >> beam.io.ReadFromParquet(self._pattern, validate=False)
                | "ToRecord" >> beam.Map(to_record))
        # Parquet enforces its schema, so reading never rejects a row.
        empty = pbegin | "NoDeadLetters" >> beam.Create([])
        return Outputs(rows, empty)
