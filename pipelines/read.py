"""Reading an input table, CSV, JSONL or Parquet, into (record, {column: value}) pairs.

The rows are parsed by ``shoprec.io.tables``, the one table reader; this is
its Beam driver. The header (CSV) or schema (Parquet) is read when the
pipeline is built, so a file lacking a required column fails before anything
runs rather than dead-lettering every row. JSONL has no header: a line
missing a column is a row with a missing value.
"""

from __future__ import annotations

from typing import Callable, Sequence

import apache_beam as beam

from pipelines import dead_letter as dl
from pipelines.outputs import Outputs
from shoprec.io import tables


class _ParseLines(beam.DoFn):
    """A text line → (record, row); blank lines are counted, bad ones dead-lettered."""

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


class _CsvRow:
    """Picklable ``line → tables.csv_row(line, header)``."""

    def __init__(self, header: Sequence[str]):
        self._header = list(header)

    def __call__(self, line: str) -> tables.Row:
        return tables.csv_row(line, self._header)


class ReadTable(beam.PTransform):
    """Reads one input table as (record, {column: value}) pairs.

    CSV is read line by line (no embedded newlines in quoted fields); a line
    whose column count differs from the header's is a ``wrong_column_count``
    dead letter.
    """

    def __init__(self, pattern: str, file_format: str, input_name: str,
                 required: Sequence[str] = ()):
        """Args:
            pattern: File or glob (local or gs://).
            file_format: ``csv``, ``jsonl`` or ``parquet``.
            input_name: ``events``, ``items`` or ``users`` (dead letters, counters).
            required: Columns the header must name (CSV, Parquet).

        Raises:
            FileNotFoundError: no file matches. ValueError: an unknown format
                or a missing required column.
        """
        super().__init__()
        try:
            self._columns = tables.columns(pattern, file_format, required)
        except ValueError as err:
            raise ValueError(f"{err} ({input_name} input)") from err
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
            parse, label = _CsvRow(self._columns), "SplitCsv"
            lines = pbegin | "ReadLines" >> beam.io.ReadFromText(
                self._pattern, skip_header_lines=1, validate=False)
        else:
            parse, label = tables.json_row, "ParseJson"
            lines = pbegin | "ReadLines" >> beam.io.ReadFromText(self._pattern, validate=False)
        parsed = lines | label >> beam.ParDo(_ParseLines(parse, self._input)).with_outputs(
            dl.DEAD_LETTER_TAG, main="main")
        return Outputs(parsed.main, parsed[dl.DEAD_LETTER_TAG])
