"""Beam sinks shared by the jobs: raw-example TFRecords and single text files."""

from __future__ import annotations

import io
import zlib
from typing import Dict, Optional, Sequence

import apache_beam as beam
from apache_beam import coders
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.tfrecordio import _TFRecordUtil

from pipelines import examples as ex
from shoprec.core import registry as F


class WriteTFRecords(beam.PTransform):
    """Rows → gzip TFRecord files of raw examples carrying ``names`` (+ metadata).

    Files are named ``prefix-SSSSS-of-NNNNN + suffix``, and each record goes to
    the shard the CRC-32 of its bytes picks; with ``one_file`` (a side table,
    always one shard) the single file is named exactly ``prefix + suffix``.
    Beam's own fixed sharding starts each bundle at a random shard, so the
    same rows landed in other files on every run; this way a re-run on the
    same inputs writes the same files.
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
        n = self._num_shards
        if self._one_file:
            return encoded | "Write" >> _one_file(self._prefix + self._suffix)
        shards = encoded | "Shard" >> beam.Partition(lambda r, k: shard_of(r, k), n)
        for i, shard in enumerate(shards):
            _ = shard | f"Write{i:05d}" >> _one_file(
                f"{self._prefix}-{i:05d}-of-{n:05d}{self._suffix}")
        return encoded.pipeline


def shard_of(record: bytes, num_shards: int) -> int:
    """The shard a serialized record goes to: the CRC-32 of its bytes."""
    return zlib.crc32(record) % num_shards


def sharded(records: Sequence[bytes], num_shards: int) -> Dict[int, bytes]:
    """{shard: its records, framed as TFRecords one after the other} (:func:`shard_of`).

    The framing is Beam's TFRecord sink's own, so :class:`WriteShards`
    writes the file :class:`WriteTFRecords` would of the same records.
    """
    buffers: Dict[int, io.BytesIO] = {}
    for record in records:
        shard = shard_of(record, num_shards)
        buffer = buffers.get(shard)
        if buffer is None:
            buffer = buffers[shard] = io.BytesIO()
        _TFRecordUtil.write_record(buffer, record)
    return {shard: buffer.getvalue() for shard, buffer in buffers.items()}


class WriteShards(beam.PTransform):
    """(shard, framed records) of :func:`sharded` → :class:`WriteTFRecords`' files."""

    def __init__(self, prefix: str, num_shards: int, suffix: str):
        super().__init__()
        self._prefix = prefix
        self._num_shards = int(num_shards)
        self._suffix = suffix

    def expand(self, shards):
        n = self._num_shards
        for i, shard in enumerate(shards | "Shard" >> beam.Partition(lambda kv, _: kv[0], n)):
            # The records are framed: the text sink writes their bytes as they are.
            _ = (shard
                 | f"Records{i:05d}" >> beam.Map(lambda kv: kv[1])
                 | f"Write{i:05d}" >> beam.io.WriteToText(
                     f"{self._prefix}-{i:05d}-of-{n:05d}", file_name_suffix=self._suffix,
                     num_shards=1, shard_name_template="", append_trailing_newlines=False,
                     coder=coders.BytesCoder(), compression_type=CompressionTypes.GZIP))
        return shards.pipeline


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


def _one_file(path: str) -> beam.PTransform:
    """A sink writing one gzip TFRecord file named exactly ``path`` (empty if no records)."""
    return beam.io.WriteToTFRecord(path, num_shards=1, shard_name_template="",
                                   compression_type=CompressionTypes.GZIP)


def text_file(prefix: str, suffix: str, header: Optional[str] = None) -> beam.PTransform:
    """A sink writing one text file named exactly ``prefix + suffix``."""
    return beam.io.WriteToText(prefix, file_name_suffix=suffix, num_shards=1,
                               shard_name_template="", header=header)
