"""Beam sinks shared by the jobs: raw-example TFRecords and single text files."""

from __future__ import annotations

from typing import Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes

from pipelines import examples as ex
from shoprec.core import registry as F


class WriteTFRecords(beam.PTransform):
    """Rows → gzip TFRecord files of raw examples carrying ``names`` (+ metadata).

    With ``num_shards == 1`` the single file is named exactly ``prefix + suffix``.
    """

    def __init__(self, prefix: str, names: Sequence[str], num_shards: int, suffix: str,
                 registry: F.Registry):
        super().__init__()
        self._prefix = prefix
        self._names = list(names)
        self._num_shards = int(num_shards)
        self._suffix = suffix
        self._registry = registry

    def expand(self, rows):
        unsharded = {"shard_name_template": ""} if self._num_shards == 1 else {}
        return (rows
                | "Encode" >> beam.Map(ex.encode, self._names, self._registry)
                | "Write" >> beam.io.WriteToTFRecord(
                    self._prefix, file_name_suffix=self._suffix, num_shards=self._num_shards,
                    compression_type=CompressionTypes.GZIP, **unsharded))


def text_file(prefix: str, suffix: str, header: Optional[str] = None) -> beam.PTransform:
    """A sink writing one text file named exactly ``prefix + suffix``."""
    return beam.io.WriteToText(prefix, file_name_suffix=suffix, num_shards=1,
                               shard_name_template="", header=header)
