"""The shared sinks: TFRecord partitions written without a shuffle, and Parquet row groups
bounded in rows and in bytes."""

import glob
import os
import zlib

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline

from pipelines import sinks
from shoprec.core.layout import TFRECORD_SUFFIX as SUFFIX


def _read(path):
    return [r.numpy() for r in tf.data.TFRecordDataset([path], compression_type="GZIP")]


def test_framed_records_read_back_with_tf_data(tmp_path):
    records = [b"", b"a", b"record three", bytes(range(256))]
    path = str(tmp_path / "framed.tfrecord")
    with open(path, "wb") as f:
        f.write(sinks.framed(records))
    assert [r.numpy() for r in tf.data.TFRecordDataset([path])] == records
    # Each TFRecord frame: 8-byte length, 4-byte length CRC, data, 4-byte data CRC.
    assert len(sinks.framed(records)) == sum(16 + len(r) for r in records)


def test_sharded_splits_records_by_their_crc():
    records = [f"r{i}".encode() for i in range(12)]
    parts = sinks.sharded(records, 3)
    expected = {}
    for r in records:
        expected.setdefault(zlib.crc32(r) % 3, []).append(r)
    assert parts == {k: sinks.framed(v) for k, v in expected.items()}


def test_each_record_lands_once_in_its_crc_partition(tmp_path):
    records = [f"record-{i}".encode() for i in range(40)]
    prefix = str(tmp_path / "train")
    with TestPipeline(runner="FnApiRunner") as p:
        _ = (p
             | beam.Create([records[:25], records[25:]])
             | beam.FlatMap(lambda rs: sinks.sharded(rs, 3).items())
             | sinks.WritePartitions(prefix, 3, SUFFIX))
    files = sorted(glob.glob(prefix + "-*"))
    # One file per partition on the in-process runner, all matched by `train-*`.
    assert [os.path.basename(f) for f in files] == [
        f"train-p{i:05d}-00000-of-00001{SUFFIX}" for i in range(3)]
    for i, path in enumerate(files):
        assert sorted(_read(path)) == sorted(r for r in records if zlib.crc32(r) % 3 == i)


def test_a_partition_without_records_is_still_a_file(tmp_path):
    prefix = str(tmp_path / "eval")
    with TestPipeline(runner="FnApiRunner") as p:
        _ = p | beam.Create([(1, sinks.framed([b"only"]))]) | sinks.WritePartitions(
            prefix, 2, SUFFIX)
    files = sorted(glob.glob(prefix + "-*"))
    assert [os.path.basename(f) for f in files] == [
        f"eval-p00000-00000-of-00001{SUFFIX}", f"eval-p00001-00000-of-00001{SUFFIX}"]
    assert [_read(f) for f in files] == [[], [b"only"]]


def test_a_partition_out_of_range_fails_the_job(tmp_path):
    with pytest.raises(Exception, match="out-of-bounds"):
        with TestPipeline(runner="FnApiRunner") as p:
            _ = p | beam.Create([(2, sinks.framed([b"x"]))]) | sinks.WritePartitions(
                str(tmp_path / "x"), 2, SUFFIX)


def test_at_least_one_partition():
    with pytest.raises(ValueError, match="num_shards must be >= 1"):
        sinks.WritePartitions("x", 0, SUFFIX)


def _row_groups(prefix):
    files = sorted(glob.glob(prefix + "-*"))
    assert len(files) == 1
    metadata = pq.ParquetFile(files[0]).metadata
    return ([metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)],
            pq.read_table(files[0]).column("n").to_pylist())


def test_parquet_tables_are_written_in_bounded_row_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(sinks, "ROW_GROUP_ROWS", 4)
    schema = pa.schema([("n", pa.int64())])
    prefix = str(tmp_path / "events")
    with TestPipeline(runner="FnApiRunner") as p:
        _ = (p | beam.Create([pa.table({"n": list(range(10))}, schema=schema)])
             | sinks.WriteParquetTables(prefix, schema, ".parquet"))
    # One 10-row table: row groups of 4, 4 and 2 rows (a table written whole is one).
    assert _row_groups(prefix) == ([4, 4, 2], list(range(10)))


def test_parquet_rows_close_a_row_group_at_the_byte_bound(tmp_path, monkeypatch):
    # Beam turns every 1,000 rows into a record batch and closes the row group once
    # the batches hold ROW_GROUP_BYTES: with 1 byte, every batch is a row group.
    monkeypatch.setattr(sinks, "ROW_GROUP_BYTES", 1)
    schema = pa.schema([("n", pa.int64())])
    prefix = str(tmp_path / "rows")
    with TestPipeline(runner="FnApiRunner") as p:
        _ = (p | beam.Create([{"n": i} for i in range(2500)], reshuffle=False)
             | sinks.parquet_rows(prefix, schema, ".parquet"))
    groups, values = _row_groups(prefix)
    assert groups == [1000, 1000, 500] and sorted(values) == list(range(2500))
