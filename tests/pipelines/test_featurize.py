"""The featurize job's sharded writer: every record once, in the partition its CRC picks."""

import glob
import os
import zlib

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

from pipelines import featurize
from pipelines.featurize import WriteShards, tft_temp_dir
from shoprec.core.layout import TFRECORD_SUFFIX as SUFFIX


def _read(path):
    return [r.numpy() for r in tf.data.TFRecordDataset([path], compression_type="GZIP")]


def test_records_land_once_each_in_their_crc_partition(tmp_path):
    records = [f"record-{i}".encode() for i in range(40)]
    prefix = str(tmp_path / "train")
    with TestPipeline(runner="FnApiRunner") as p:
        _ = p | beam.Create(records) | WriteShards(prefix, 3)
    files = sorted(glob.glob(prefix + "-*" + SUFFIX))
    # One file per partition on the in-process runner, named for the trainer's glob.
    assert [os.path.basename(f) for f in files] == [
        f"train-p{i:05d}-00000-of-00001{SUFFIX}" for i in range(3)]
    for i, path in enumerate(files):
        assert sorted(_read(path)) == sorted(r for r in records if zlib.crc32(r) % 3 == i)


def test_at_least_one_shard():
    with pytest.raises(ValueError, match="num_shards must be >= 1"):
        WriteShards("x", 0)


def test_tft_temp_dir_is_under_the_pipeline_temp_location_when_there_is_one():
    local = "/tmp/shoprec-tft-abc"
    assert tft_temp_dir(PipelineOptions([]), local) == local
    on_dataflow = PipelineOptions(["--temp_location=gs://my-bucket/tmp"])
    assert tft_temp_dir(on_dataflow, local) == "gs://my-bucket/tmp/shoprec-tft/shoprec-tft-abc"


def test_canonical_example_bytes_do_not_depend_on_the_feature_order():
    def one(name):
        feature = tf.train.Feature(int64_list=tf.train.Int64List(value=[ord(name)]))
        return tf.train.Example(features=tf.train.Features(feature={name: feature}))

    # Concatenated messages merge: the same two-feature example, its map entries
    # in two orders, as TFT's encoder in two processes wrote them.
    ab = one("a").SerializeToString() + one("b").SerializeToString()
    ba = one("b").SerializeToString() + one("a").SerializeToString()
    assert ab != ba and tf.train.Example.FromString(ab) == tf.train.Example.FromString(ba)
    canonical = featurize.canonical_example(ab)
    assert canonical == featurize.canonical_example(ba)
    assert featurize.canonical_example(canonical) == canonical
    assert dict(tf.train.Example.FromString(canonical).features.feature) == {
        "a": one("a").features.feature["a"], "b": one("b").features.feature["b"]}
