"""The clean event log: ingest writes it, the candidate sources in ``recommend`` read it.

One Parquet row per event that survived ingest's checks (parsed, deduplicated,
robots removed, known items only): ``user_id``, ``item_id``, ``timestamp``
(unix seconds), ``event_type`` (the funnel stage) and the event columns the
data set keeps (label conditions, item attributes of an item-less log), as
strings. Read back, a row is the event dict ingest's transforms pass around.
"""

from __future__ import annotations

from typing import Sequence

import apache_beam as beam
import pyarrow as pa

from pipelines.parse import EVENT_TYPE_KEY
from pipelines.sinks import WriteParquetTables, parquet_rows
from shoprec.core import registry as F
from shoprec.core.layout import PARQUET_SUFFIX


def schema(kept: Sequence[str]) -> pa.Schema:
    """The log's columns: the event keys, then ``kept`` (the data set's kept columns)."""
    return pa.schema([(F.USER_KEY, pa.string()), (F.ITEM_KEY, pa.string()),
                      (F.TIMESTAMP_KEY, pa.int64()), (EVENT_TYPE_KEY, pa.string())]
                     + [(c, pa.string()) for c in kept])


class WriteEvents(beam.PTransform):
    """Clean event dicts → ``<prefix>-*.parquet``."""

    def __init__(self, prefix: str, kept: Sequence[str]):
        super().__init__()
        self._prefix = prefix
        self._schema = schema(kept)

    def expand(self, events):
        names = self._schema.names
        return (events
                | "Columns" >> beam.Map(lambda e: {n: e[n] for n in names})
                | "Write" >> parquet_rows(self._prefix, self._schema, PARQUET_SUFFIX))


class WriteEventTables(beam.PTransform):
    """Clean event tables (the log's :func:`schema`) → ``<prefix>-*.parquet``, as WriteEvents."""

    def __init__(self, prefix: str, kept: Sequence[str]):
        super().__init__()
        self._prefix = prefix
        self._schema = schema(kept)

    def expand(self, tables):
        return tables | "Write" >> WriteParquetTables(self._prefix, self._schema, PARQUET_SUFFIX)


class ReadEvents(beam.PTransform):
    """``<prefix>-*.parquet`` → clean event dicts (as ingest passed them)."""

    def __init__(self, pattern: str):
        super().__init__()
        self._pattern = pattern

    def expand(self, pbegin):
        # Not checked while the graph is built: run() checks it, and a template is
        # built before any file exists.
        return pbegin | "Read" >> beam.io.ReadFromParquet(self._pattern, validate=False)
