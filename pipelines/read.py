"""Reading an input table, CSV, JSONL or Parquet, into (record, {column: value}) pairs.

The rows are parsed by ``shoprec.io.tables``, the one table reader; this is
its Beam driver. The header (CSV) or schema (Parquet) is read when the
pipeline is built, so a file lacking a required column fails before anything
runs rather than dead-lettering every row. JSONL has no header: a line
missing a column is a row with a missing value.

CSV records may span lines (RFC 4180 quoted fields), and where one ends is
only known by reading from the start of the file: a reader that starts at an
arbitrary byte offset cannot tell whether it is inside a quoted field. So each
CSV file is one unit of work, read whole (streamed, not held in memory) by
one worker and never split; the rows are then reshuffled so that the work
after reading spreads over every worker. Parallelism of the read itself comes
from the number of files: give a large table as many shards. JSONL and
Parquet split as Beam's own readers do.
"""

from __future__ import annotations

from typing import Callable, Sequence

import apache_beam as beam
from apache_beam.io import fileio

from pipelines import dead_letter as dl
from pipelines.outputs import Outputs
from shoprec.core.errors import UserError
from shoprec.io import tables


class _ParseLines(beam.DoFn):
    """A JSON line → (record, row); blank lines are counted, bad ones dead-lettered."""

    def __init__(self, parse: Callable[[str], tables.Row], input_name: str):
        self._parse = parse
        self._input = input_name

    def process(self, line: str):
        if not line.strip():
            # A blank line carries no record; counted so it is still visible.
            beam.metrics.Metrics.counter(dl.NAMESPACE, f"blank_lines/{self._input}").inc()
            return
        beam.metrics.Metrics.counter(dl.NAMESPACE, f"rows_read/{self._input}").inc()
        try:
            yield self._parse(line)
        except tables.BadRow as bad:
            yield dl.tagged(self._input, bad.reason, bad.detail, bad.record)


class _ReadCsvFile(beam.DoFn):
    """A matched CSV file → (record, row) per record; blank lines counted, bad ones dead-lettered."""

    def __init__(self, header: Sequence[str], input_name: str):
        self._header = list(header)
        self._input = input_name

    def process(self, readable_file):
        blank = beam.metrics.Metrics.counter(dl.NAMESPACE, f"blank_lines/{self._input}")
        read = beam.metrics.Metrics.counter(dl.NAMESPACE, f"rows_read/{self._input}")
        with readable_file.open() as f:  # .gz/.bz2 decompressed by extension
            for row in tables.csv_file_rows(f, self._header):
                if row is None:
                    blank.inc()
                    continue
                read.inc()
                if isinstance(row, tables.BadRow):
                    yield dl.tagged(self._input, row.reason, row.detail, row.record)
                else:
                    yield row


class ReadTable(beam.PTransform):
    """Reads one input table as (record, {column: value}) pairs.

    CSV is read file by file (see the module docstring), quoted fields with
    line breaks included. Dead-letter reasons: ``wrong_column_count`` (a
    record's cell count differs from the header's), ``malformed_row`` (the
    csv module rejects it; JSONL: not a JSON object), ``unclosed_quote`` and
    ``bad_encoding`` (not UTF-8).
    """

    def __init__(self, pattern: str, file_format: str, input_name: str,
                 required: Sequence[str] = ()):
        """Args:
            pattern: File or glob (local or gs://).
            file_format: ``csv``, ``jsonl`` or ``parquet``.
            input_name: ``events``, ``items`` or ``users`` (dead letters, counters).
            required: Columns the header must name (CSV, Parquet).

        Raises:
            UserError: no file matches, a CSV file is empty or lacks a
                required column (``shoprec.io.tables.columns``).
            ValueError: an unknown format.
        """
        super().__init__()
        try:
            self._columns = tables.columns(pattern, file_format, required)
        except UserError as err:
            raise type(err)(f"{input_name} input: {err}") from err
        self._pattern = pattern
        self._format = file_format
        self._input = input_name

    def expand(self, pbegin) -> Outputs:
        if self._format == "parquet":
            input_name = self._input

            def to_record(row):
                beam.metrics.Metrics.counter(dl.NAMESPACE, f"rows_read/{input_name}").inc()
                return tables.parquet_record(row), row

            rows = (pbegin
                    | "ReadParquet" >> beam.io.ReadFromParquet(self._pattern, validate=False)
                    | "ToRecord" >> beam.Map(to_record))
            # Parquet enforces its schema, so reading never rejects a row.
            empty = pbegin | "NoDeadLetters" >> beam.Create([])
            return Outputs(rows, empty)
        if self._format == "csv":
            parsed = (pbegin
                      | "MatchFiles" >> fileio.MatchFiles(self._pattern)
                      | "ReadMatches" >> fileio.ReadMatches()
                      | "ParseCsv" >> beam.ParDo(_ReadCsvFile(self._columns, self._input))
                      .with_outputs(dl.DEAD_LETTER_TAG, main="main"))
            # One worker reads a file; the rows fan out from here.
            rows = parsed.main | "SpreadRows" >> beam.Reshuffle()
            return Outputs(rows, parsed[dl.DEAD_LETTER_TAG])
        lines = pbegin | "ReadLines" >> beam.io.ReadFromText(self._pattern, validate=False)
        parsed = lines | "ParseJson" >> beam.ParDo(
            _ParseLines(tables.json_row, self._input)).with_outputs(
            dl.DEAD_LETTER_TAG, main="main")
        return Outputs(parsed.main, parsed[dl.DEAD_LETTER_TAG])
