"""Beam sinks shared by the jobs: TFRecord partitions, raw examples, Parquet and text files."""

from __future__ import annotations

import io
import zlib
from typing import Dict, Iterable, List, Optional, Sequence

import apache_beam as beam
from apache_beam import coders
from apache_beam.io import filebasedsink
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.tfrecordio import _TFRecordUtil

from pipelines import examples as ex
from shoprec.core import registry as F


class WriteTFRecords(beam.PTransform):
    """Rows → gzip TFRecord files of raw examples carrying ``names`` (+ metadata).

    Each record goes to the partition the CRC-32 of its bytes picks and is
    written by :class:`WritePartitions`; with ``one_file`` (a side table,
    always one shard) the single file is named exactly ``prefix + suffix``.
    Beam's own fixed sharding starts each bundle at a random shard, so the
    same rows landed in other files on every run; this way a re-run on the
    same inputs writes the same records to the same partitions.
    """

    def __init__(self, prefix: str, names: Sequence[str], num_shards: int, suffix: str,
                 registry: F.Registry, one_file: bool):
        super().__init__()
        if one_file and num_shards != 1:
            raise ValueError(f"one_file needs num_shards 1, got {num_shards}")
        self._one_file = one_file
        self._prefix = prefix
        self._names = list(names)
        self._num_shards = int(num_shards)
        self._suffix = suffix
        self._registry = registry

    def expand(self, rows):
        encoded = rows | "Encode" >> beam.ParDo(_Encode(self._names, self._registry))
        if self._one_file:
            return encoded | "Write" >> beam.io.WriteToTFRecord(
                self._prefix + self._suffix, num_shards=1, shard_name_template="",
                compression_type=CompressionTypes.GZIP)
        n = self._num_shards
        return (encoded
                | "Frame" >> beam.Map(lambda record: (shard_of(record, n), framed([record])))
                | "Write" >> WritePartitions(self._prefix, n, self._suffix))


def shard_of(record: bytes, num_shards: int) -> int:
    """The partition a serialized record goes to: the CRC-32 of its bytes."""
    return zlib.crc32(record) % num_shards


def framed(records: Iterable[bytes]) -> bytes:
    """``records`` framed as TFRecords one after the other (Beam's TFRecord sink's framing)."""
    buffer = io.BytesIO()
    for record in records:
        _TFRecordUtil.write_record(buffer, record)
    return buffer.getvalue()


def sharded(records: Sequence[bytes], num_shards: int) -> Dict[int, bytes]:
    """{partition: its records, :func:`framed`} (:func:`shard_of`); no empty partitions."""
    parts: Dict[int, List[bytes]] = {}
    for record in records:
        parts.setdefault(shard_of(record, num_shards), []).append(record)
    return {shard: framed(part) for shard, part in parts.items()}


class _FramedSink(filebasedsink.FileBasedSink):
    """A gzip sink whose elements are framed TFRecords: their bytes written as they are.

    ``num_shards=0``: each bundle writes its own file, with no grouping by a
    shard key first (see :class:`WritePartitions`).
    """

    def __init__(self, file_path_prefix: str, file_name_suffix: str):
        super().__init__(file_path_prefix, coder=coders.BytesCoder(),
                         file_name_suffix=file_name_suffix, num_shards=0,
                         compression_type=CompressionTypes.GZIP)

    def write_record(self, file_handle, value: bytes) -> None:
        file_handle.write(value)


class WritePartitions(beam.PTransform):
    """(partition, framed records) → ``prefix-pPPPPP-SSSSS-of-NNNNN + suffix`` files.

    A fixed shard count (``WriteToTFRecord(num_shards=…)``) groups every
    record by a shard key before writing: each example went through a
    shuffle, and the stage upstream held an output buffer for every shard
    file (docs/scale.md, "Per-worker memory"). Here each partition is written
    as the runner's bundles come: one file per partition on the in-process
    runner, one or more per partition where bundles are spread (Dataflow).
    A record's partition is fixed by its bytes (:func:`shard_of`), so a
    re-run writes the same records to the same partition, and readers glob
    ``prefix-*``. Every partition has at least one file, empty or not.
    """

    def __init__(self, prefix: str, num_partitions: int, suffix: str):
        super().__init__()
        if num_partitions < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_partitions}")
        self._prefix = prefix
        self._num_partitions = int(num_partitions)
        self._suffix = suffix

    def expand(self, parts):
        n = self._num_partitions
        # Partition fails the job on an index outside [0, n): no record is dropped.
        for i, part in enumerate(parts | "Partition" >> beam.Partition(lambda kv, _: kv[0], n)):
            _ = (part
                 | f"Records{i:05d}" >> beam.Values()
                 | f"Write{i:05d}" >> beam.io.Write(
                     _FramedSink(f"{self._prefix}-p{i:05d}", self._suffix)))
        return parts.pipeline


class _Encode(beam.DoFn):
    """A row → :func:`pipelines.examples.encode`'s bytes, through one cached ``Encoder``.

    Examples repeat their item's and user's attributes (the item embedding's
    32 floats above all): the encoder serializes each (feature, value) once
    a worker, where ``encode`` built every row's protos anew (the largest
    per-row cost of ingest's own code, benchmarks/ingest.py).
    """

    def __init__(self, names: Sequence[str], registry: F.Registry):
        self._names = list(names)
        self._registry = registry
        self._encoder = None

    def setup(self):
        self._encoder = ex.Encoder(self._names, self._registry)

    def process(self, row):
        yield self._encoder(row)


def text_file(prefix: str, suffix: str, header: Optional[str] = None) -> beam.PTransform:
    """A sink writing one text file named exactly ``prefix + suffix``."""
    return beam.io.WriteToText(prefix, file_name_suffix=suffix, num_shards=1,
                               shard_name_template="", header=header)


# Parquet row groups: at most this many bytes of Arrow buffers (rows written as
# dicts) or rows (tables). The writing worker holds a sink's row group until it
# is full (Beam's default: 64 MB a sink and bundle) and a reader inflates one
# whole row group at a time, so its size is per-worker memory on both sides:
# the demo's shop at 10x the users filled Beam's 64 MB where the 1x one did not
# (docs/scale.md, "Per-worker memory").
ROW_GROUP_BYTES = 8 << 20
ROW_GROUP_ROWS = 1 << 16


def parquet_rows(prefix: str, schema, suffix: str, num_shards: int = 0) -> beam.PTransform:
    """A sink writing row dicts to ``prefix-*`` Parquet files in row groups of
    about :data:`ROW_GROUP_BYTES`."""
    return beam.io.WriteToParquet(prefix, schema, row_group_buffer_size=ROW_GROUP_BYTES,
                                  file_name_suffix=suffix, num_shards=num_shards)


class WriteParquetTables(beam.PTransform):
    """Arrow tables → ``prefix-*`` Parquet files, each row group at most
    :data:`ROW_GROUP_ROWS` rows (a table written whole is one row group of up
    to a million rows)."""

    def __init__(self, prefix: str, schema, suffix: str):
        super().__init__()
        self._prefix = prefix
        self._schema = schema
        self._suffix = suffix

    def expand(self, tables):
        return (tables
                | "RowGroups" >> beam.FlatMap(_row_groups)
                | "Write" >> beam.io.WriteToParquetBatched(
                    self._prefix, self._schema, file_name_suffix=self._suffix))


def _row_groups(table):
    """``table`` in slices of at most :data:`ROW_GROUP_ROWS` rows (views, no copy)."""
    for start in range(0, table.num_rows, ROW_GROUP_ROWS):
        yield table.slice(start, ROW_GROUP_ROWS)
