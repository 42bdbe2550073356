"""The join by user in hash buckets: bucket function, table reads, the split of pairs."""

import apache_beam as beam
import pyarrow as pa
import tensorflow as tf
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import examples, pair_join
from pipelines.options import pipeline_options
from shoprec.core import generated_shop
from shoprec.core import registry as F

R = generated_shop.REGISTRY
USERS = [{"user_id": f"u{k}", "user_age": float(20 + k), "user_region": "north",
          "user_membership": "gold"} for k in range(5)]


def test_bucket_of_is_a_crc32_of_the_user_id():
    # zlib.crc32(b"u1") = 1112514422 (a fixed function: every worker agrees).
    assert pair_join.bucket_of("u1", 7) == 1112514422 % 7 == 5
    assert pair_join.bucket_of("u1", 1) == 0


def test_join_buckets_one_per_bucket_bytes_of_the_inputs(tmp_path):
    for name, size in (("a.csv", 10), ("b.csv", 25)):
        (tmp_path / name).write_bytes(b"x" * size)
    pattern = str(tmp_path / "*.csv")
    assert pair_join.join_buckets([pattern], bucket_bytes=10) == 4  # 35 bytes: ceil(3.5)
    assert pair_join.join_buckets([pattern], bucket_bytes=35) == 1
    assert pair_join.join_buckets([str(tmp_path / "none*")], bucket_bytes=10) == 1


def test_pairs_split_by_bucket_keep_every_pair_once():
    pairs = [(f"u{k % 5}", f"i{k}") for k in range(20)]
    split = list(pair_join._by_bucket(pair_join.pairs_table(pairs), 3))
    got = sorted((bucket, u, i) for bucket, table in split
                 for u, i in zip(table.column("user_id").to_pylist(),
                                 table.column("item_id").to_pylist()))
    assert got == sorted((pair_join.bucket_of(u, 3), u, i) for u, i in pairs)
    assert len({bucket for bucket, _ in split}) == len(split) > 1


def test_read_records_reads_ids_and_the_written_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(pair_join, "READ_BATCH", 2)  # three read batches of five rows
    names = R.source_names(F.Source.USER)
    written = [examples.encode(row, names, R) for row in USERS]
    with tf.io.TFRecordWriter(str(tmp_path / "users.tfrecord.gz"), "GZIP") as writer:
        for record in written:
            writer.write(record)
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        batches = p | pair_join.ReadRecords(str(tmp_path / "users*"), "user_id")
        assert_that(batches | beam.Map(len), equal_to([2, 2, 1]), label="Batches")
        assert_that(batches | beam.FlatMap(lambda b: zip(b.column("user_id").to_pylist(),
                                                         b.column("record").to_pylist())),
                    equal_to(
            [(row["user_id"], record) for row, record in zip(USERS, written)]), label="Records")


def test_record_lookup_finds_each_users_last_record_or_none():
    # Records in two tables, u1's twice (the later one wins, as in a dict built
    # in order); u3 has none; no tables at all: every user None.
    first = pa.table({"user_id": ["u1", "u2"], "record": [b"a", b"b"]},
                     schema=pair_join.RECORDS_SCHEMA)
    second = pa.table({"user_id": ["u1"], "record": [b"c"]}, schema=pair_join.RECORDS_SCHEMA)
    users = pa.array(["u3", "u1", "u2"])
    assert pair_join.record_lookup([first, second], users) == [None, b"c", b"b"]
    assert pair_join.record_lookup([first], users) == [None, b"a", b"b"]
    assert pair_join.record_lookup([], users) == [None, None, None]


def test_chunks_hold_whole_users_up_to_the_batch_size():
    import numpy as np

    # Users of 3, 2, 0 (all their items unknown), 4 and 1 rows, batches of 5:
    # 3 + 2 fill one; 4 + 1 the next. A user of 7 rows is a chunk alone.
    assert list(pair_join._chunks(np.array([3, 2, 0, 4, 1]), 5)) == [(0, 5), (5, 10)]
    assert list(pair_join._chunks(np.array([2, 7, 1]), 5)) == [(0, 2), (2, 9), (9, 10)]
    assert list(pair_join._chunks(np.array([0]), 5)) == []
