"""The recommendations' optional BigQuery sink: one date partition per run.

``shoprec recommend --bq_table project:dataset.table`` writes the same rows as
the parquet output, plus ``dt`` (the run date, a DATE), with
``beam.io.WriteToBigQuery``:

- ``method=FILE_LOADS``: a batch job's rows go to files, then load jobs (no
  streaming-insert quota, and WRITE_TRUNCATE is allowed);
- the table is DAY-partitioned on ``dt`` (``timePartitioning`` in the load
  jobs' configuration) and created if needed with the explicit schema
  :func:`table_schema` derives from the parquet schema;
- the destination is the partition decorator ``table$YYYYMMDD`` with
  ``WRITE_TRUNCATE``: a re-run of a date replaces that date's partition and
  leaves every other date alone.

The load jobs stage files under the pipeline's ``--temp_location`` (a
``gs://`` path) and need GCP credentials when the job runs; building the
transform needs neither.
"""

from __future__ import annotations

import datetime
import re
from typing import Any, Dict

import apache_beam as beam
import pyarrow as pa

from shoprec.core.errors import ConfigError

# The run-date column the table is partitioned on.
DATE_COLUMN = "dt"

# BigQuery's table reference: project:dataset.table (Beam's own patterns).
_TABLE = re.compile(r"(?P<project>[\w.:-]+):(?P<dataset>\w{1,1024})\.(?P<table>[\w-]{1,1024})")

_TYPES = {pa.string(): "STRING", pa.int32(): "INTEGER", pa.int64(): "INTEGER",
          pa.float32(): "FLOAT", pa.float64(): "FLOAT", pa.bool_(): "BOOLEAN"}


def table_schema(schema: pa.Schema) -> Dict[str, Any]:
    """The BigQuery schema of the parquet ``schema`` plus the REQUIRED DATE ``dt``.

    Raises:
        ValueError: a column type with no BigQuery counterpart here.
    """
    fields = []
    for field in schema:
        if field.type not in _TYPES:
            raise ValueError(f"no BigQuery type for parquet column {field.name}: {field.type}")
        fields.append({"name": field.name, "type": _TYPES[field.type],
                       "mode": "NULLABLE" if field.nullable else "REQUIRED"})
    return {"fields": fields + [{"name": DATE_COLUMN, "type": "DATE", "mode": "REQUIRED"}]}


def partition(table: str, run_date: datetime.date) -> str:
    """``project:dataset.table`` → its partition decorator ``project:dataset.table$YYYYMMDD``.

    Raises:
        ConfigError: ``table`` is not ``project:dataset.table``.
    """
    if not _TABLE.fullmatch(table):
        raise ConfigError(f"--bq_table must be project:dataset.table (letters, digits, _ and "
                          f"- in the table name, no $ decorator), got {table!r}")
    return f"{table}${run_date:%Y%m%d}"


def sink_args(table: str, run_date: datetime.date, schema: pa.Schema) -> Dict[str, Any]:
    """``beam.io.WriteToBigQuery``'s arguments for one run date's partition."""
    write = beam.io.BigQueryDisposition
    return {"table": partition(table, run_date),
            "schema": table_schema(schema),
            "method": beam.io.WriteToBigQuery.Method.FILE_LOADS,
            "create_disposition": write.CREATE_IF_NEEDED,
            "write_disposition": write.WRITE_TRUNCATE,
            "additional_bq_parameters": {
                "timePartitioning": {"type": "DAY", "field": DATE_COLUMN}}}


def dated(row: Dict[str, Any], run_date: str) -> Dict[str, Any]:
    """A recommendation row with its ``dt`` (ISO date: what a DATE column loads)."""
    return dict(row, **{DATE_COLUMN: run_date})


class WriteToBigQuery(beam.PTransform):
    """Recommendation rows → one date partition of a BigQuery table (see the module).

    Args:
        table: ``project:dataset.table``.
        run_date: The partition's date.
        schema: The rows' parquet schema.
    """

    def __init__(self, table: str, run_date: datetime.date, schema: pa.Schema):
        super().__init__()
        self._args = sink_args(table, run_date, schema)
        self._date = run_date.isoformat()

    def expand(self, rows):
        return (rows
                | "AddDate" >> beam.Map(dated, self._date)
                | "Load" >> beam.io.WriteToBigQuery(**self._args))
