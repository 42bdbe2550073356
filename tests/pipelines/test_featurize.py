"""The featurize job: its sharded writer (every record once, in the partition its CRC
picks) and its batched reads and writes against the per-record TFT job."""

import glob
import os
import zlib

import apache_beam as beam
import numpy as np
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
        # Lists of records, as the job writes a record batch's records.
        _ = p | beam.Create([records[:25], records[25:]]) | WriteShards(prefix, 3)
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
    # A dry run builds the graph only: TFT's folder stays local, so building stays offline.
    dry_run = PipelineOptions(["--temp_location=gs://my-bucket/tmp", "--dry_run=True"])
    assert tft_temp_dir(dry_run, local) == local


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


def _per_record_featurize(config, out_dir):
    """The job as it ran before batched I/O: TFXIO's per-record source, TFT's encoder.

    Analyses and transforms with TFT itself, reading each split through
    ``TFExampleRecord.BeamSource()`` and writing ``EncodeTransformedDataset``'s
    records, canonicalised, to one file per split.
    """
    import functools

    import tensorflow_transform.beam as tft_beam

    from transforms.preprocessing import preprocessing_fn

    registry = config.registry
    sources = {s: featurize.raw_tfxio(config.layout.examples(s) + "-*", registry)
               for s in config.splits}
    with TestPipeline(runner="FnApiRunner") as p:
        with tft_beam.Context(temp_dir=os.path.join(out_dir, "tmp")):
            train = sources["train"]
            transform_fn = ((p | "ReadTrain" >> train.BeamSource(), train.TensorAdapterConfig())
                            | tft_beam.AnalyzeDataset(
                                functools.partial(preprocessing_fn, registry=registry)))
            for split, source in sources.items():
                raw = p | f"Read{split}" >> source.BeamSource()
                _ = (((raw, source.TensorAdapterConfig()), transform_fn)
                     | f"Transform{split}" >> tft_beam.TransformDataset()
                     | f"Encode{split}" >> tft_beam.EncodeTransformedDataset()
                     | f"Canonical{split}" >> beam.Map(featurize.canonical_example)
                     | f"Write{split}" >> beam.io.WriteToTFRecord(
                         os.path.join(out_dir, split), num_shards=1, shard_name_template=""))


def _parsed_rows(paths, spec, compression):
    """Every record of ``paths`` parsed: {feature: [rows, ...] array}, rows sorted."""
    records = [r.numpy() for r in tf.data.TFRecordDataset(paths, compression_type=compression)]
    parsed = {k: v.numpy().reshape(len(records), -1)
              for k, v in tf.io.parse_example(records, spec).items()}
    names = sorted(parsed)
    # Sort rows by every value (floats rounded below the tolerance) so that
    # files written in other orders compare row by row.
    table = np.concatenate([parsed[n].astype(np.float64) for n in names], axis=1)
    order = np.lexsort(np.round(table, 3).T[::-1])
    return {n: parsed[n][order] for n in names}


def test_batched_job_writes_what_the_per_record_tft_job_wrote(tmp_path, monkeypatch):
    import tensorflow_transform as tft

    from tests.trainer.synthetic import make_config, make_rows, write_raw

    config = make_config(str(tmp_path / "run"))
    write_raw(config.layout.examples("train"), make_rows(300, seed=1))
    write_raw(config.layout.examples("eval"), make_rows(70, seed=2))
    # Several record batches a split, the last one short.
    monkeypatch.setattr(featurize, "BATCH_ROWS", 64)
    report = featurize.run(config)
    assert report["rows"] == {"train": 300, "eval": 70}
    old_dir = str(tmp_path / "old")
    _per_record_featurize(config, old_dir)

    spec = tft.TFTransformOutput(config.layout.transform_dir).transformed_feature_spec()
    for split in config.splits:
        new = _parsed_rows(sorted(glob.glob(config.layout.transformed_pattern(split))), spec,
                           "GZIP")
        old = _parsed_rows([os.path.join(old_dir, split)], spec, "")
        assert len(new["click"]) == {"train": 300, "eval": 70}[split]
        for name in spec:
            if new[name].dtype == np.int64:
                np.testing.assert_array_equal(new[name], old[name], err_msg=name)
            else:
                # Only the analysers' float sums may differ, by the batches they summed.
                np.testing.assert_allclose(new[name], old[name], rtol=1e-5, atol=2e-5,
                                           err_msg=name)
