"""Featurize job: analyse the train split with TFT, transform every split.

Reads ingest's raw example shards as Arrow record batches (typed by TFXIO's
schema), analyses ``preprocessing_fn`` on train only, writes the transform graph
and transformed schema, and writes transformed train/eval (and test) shards as
gzip TFRecords with that schema beside them (``examples/schema.pbtxt``).

Records travel in batches from the read to the write: no stage handles one
record as one Beam element, since per-element work was most of the job's
per-row cost (benchmarks/featurize.py, docs/featurize.md).
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from typing import Any, Dict, Iterator, Mapping, NamedTuple, Optional, Sequence

import apache_beam as beam
import pyarrow as pa
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions
from tensorflow_transform.tf_metadata import schema_utils
from tfx_bsl.coders import example_coder
from tfx_bsl.public import tfxio

from pipelines import dead_letter, options as beam_options
from pipelines.sinks import WritePartitions, sharded
from shoprec.core import registry as F
from shoprec.core.config import Config
from shoprec.core.errors import StageOrderError
from shoprec.core.layout import SCHEMA_FILE, TFRECORD_SUFFIX
from shoprec.io.outputs import clear, require_success, write_report, write_success
from transforms.preprocessing import preprocessing_fn


def raw_schema(registry: F.Registry):
    """The registry's raw feature spec as a TFMD schema (what the decoder and TFT type by)."""
    return schema_utils.schema_from_feature_spec(registry.raw_feature_spec())


def raw_tfxio(file_pattern: str, registry: F.Registry) -> tfxio.TFExampleRecord:
    """TFXIO over raw example shards, typed by the registry's raw schema."""
    return tfxio.TFExampleRecord(
        file_pattern=file_pattern, schema=raw_schema(registry),
        telemetry_descriptors=["shoprec"])


class _CountRows(beam.DoFn):
    """Counts rows per split without unbatching the record batches."""

    def __init__(self, split: str):
        self._counter = beam.metrics.Metrics.counter(dead_letter.NAMESPACE,
                                                     f"featurize/{split}_rows")

    def process(self, batch_and_passthrough):
        record_batch = batch_and_passthrough[0]
        self._counter.inc(record_batch.num_rows)
        yield batch_and_passthrough


# Rows per record batch read from the raw shards. TFT runs its graph once a
# batch, and its analysers sum each batch in float32: at 4,096 rows the
# embedding's z-scores were 1.1e-5 off a float64 computation, at 1,024 1.4e-6
# (benchmarks/featurize.py's check; TFXIO's own batches top out at 1,000).
BATCH_ROWS = 1024


class _ReadFile(beam.DoFn):
    """A gzip TFRecord file of tf.Examples → record batches of ``batch_rows`` rows.

    tf.data's reader (C++: inflate, framing, checksums) yields the serialized
    records a batch at a time and tfx_bsl's decoder, the one TFXIO uses,
    turns each batch into Arrow columns.
    """

    def __init__(self, schema, batch_rows: int):
        self._schema = schema.SerializeToString()
        self._batch_rows = batch_rows
        self._decoder = None

    def setup(self):
        self._decoder = example_coder.ExamplesToRecordBatchDecoder(self._schema)

    def process(self, path: str) -> Iterator[pa.RecordBatch]:
        compression = "GZIP" if path.endswith(".gz") else ""
        records = tf.data.TFRecordDataset(path, compression_type=compression,
                                          buffer_size=1 << 22)
        for serialized in records.batch(self._batch_rows).as_numpy_iterator():
            yield self._decoder.DecodeBatch(list(serialized))


class ReadRecordBatches(beam.PTransform):
    """Raw example shards matching a pattern → Arrow record batches, as TFXIO types them.

    Replaces ``source.BeamSource()``, which reads each record as one Beam
    element and batches them again. Files are matched when the job runs and
    spread over workers by a reshuffle; each file is read whole by one
    worker, so a split has as many parallel readers as shards.

    Args:
        file_pattern: Glob of the raw shards.
        registry: The run's registry (:func:`raw_schema`).
        batch_rows: Rows per record batch (the last of a file may be shorter);
            default :data:`BATCH_ROWS`.
    """

    def __init__(self, file_pattern: str, registry: F.Registry,
                 batch_rows: Optional[int] = None):
        super().__init__()
        self._pattern = file_pattern
        self._schema = raw_schema(registry)
        self._batch_rows = batch_rows or BATCH_ROWS

    def expand(self, pbegin):
        return (pbegin
                | "Pattern" >> beam.Create([self._pattern])
                | "Match" >> fileio.MatchAll()
                | "Paths" >> beam.Map(lambda metadata: metadata.path)
                | "Spread" >> beam.Reshuffle()
                | "ReadFiles" >> beam.ParDo(_ReadFile(self._schema, self._batch_rows)))


class WriteShards(beam.PTransform):
    """Lists of serialized records → ``num_shards`` CRC-32 partitions of gzip TFRecords.

    Each list (a record batch's records) is split by partition and framed in
    one go, then written by :class:`pipelines.sinks.WritePartitions`: no
    shuffle before the write, and the same records always land in the same
    partition (``<prefix>-pPPPPP-SSSSS-of-NNNNN.tfrecord.gz``).
    """

    def __init__(self, prefix: str, num_shards: int):
        super().__init__()
        self._write = WritePartitions(prefix, num_shards, TFRECORD_SUFFIX)
        self._num_shards = num_shards

    def expand(self, batches):
        n = self._num_shards
        return (batches
                | "Partition" >> beam.FlatMap(lambda records: sharded(records, n).items())
                | "Write" >> self._write)


class _EncodeBatch(beam.DoFn):
    """A transformed record batch → the list of its rows as canonical tf.Examples."""

    def process(self, batch_and_passthrough, encoder):
        yield [canonical_example(r) for r in encoder.encode(batch_and_passthrough[0])]


class TransformSplit(beam.PTransform):
    """Reads one split and applies a transform_fn: lists of serialized transformed tf.Examples.

    The split is read here rather than handed over: train's analysed
    PCollection, reused, would be held whole in memory until the transform
    function is ready, so train is read twice instead (measured: peak RSS
    1.37x at 10x the data reused, 1.04x read twice). Each element of the
    output is one record batch's records.
    """

    def __init__(self, split: str, file_pattern: str, registry: F.Registry, transform_fn):
        super().__init__()
        self._split = split
        self._pattern = file_pattern
        self._registry = registry
        self._transform_fn = transform_fn

    def expand(self, pbegin):
        raw_batches = pbegin | "Read" >> ReadRecordBatches(self._pattern, self._registry)
        adapter = raw_tfxio(self._pattern, self._registry).TensorAdapterConfig()
        transformed_data, transformed_metadata = (
            ((raw_batches, adapter), self._transform_fn)
            | "Transform" >> tft_beam.TransformDataset(output_record_batches=True))
        counted = transformed_data | "Count" >> beam.ParDo(_CountRows(self._split))
        encoder = (transformed_metadata.deferred_metadata
                   | "Encoder" >> beam.Map(
                       lambda metadata: example_coder.RecordBatchToExamplesEncoder(
                           metadata.schema)))
        return counted | "Encode" >> beam.ParDo(_EncodeBatch(),
                                                beam.pvalue.AsSingleton(encoder))


def canonical_example(record: bytes) -> bytes:
    """A serialized tf.Example re-serialized with its features in a fixed order.

    TFT's encoder writes the feature map in an order that changes from one
    process to the next: the same example, other bytes, so a re-run wrote
    other shards (and other CRC-32 partitions). Re-serialized
    deterministically, the same inputs give the same files.
    """
    return tf.train.Example.FromString(record).SerializeToString(deterministic=True)


class FeaturizeOutputs(NamedTuple):
    """The analysed transform function and each split's serialized transformed records
    (in lists, one a record batch)."""

    transform_fn: Any
    records: Dict[str, beam.PCollection]


class Featurize(beam.PTransform):
    """Raw example shards → the transform function (analysed on train only) and every
    split transformed by it.

    Applied to the pipeline: each split is read where it is used (record
    batches, :class:`ReadRecordBatches`), so its file pattern is handed over
    rather than a PCollection. Must be built inside a ``tft_beam.Context``.

    Args:
        patterns: {split: glob of its raw shards}; must hold train.
        registry: The run's registry (``preprocessing_fn``'s features, the raw schema).
    """

    def __init__(self, patterns: Mapping[str, str], registry: F.Registry):
        super().__init__()
        self._patterns = dict(patterns)
        self._registry = registry

    def expand(self, pbegin) -> FeaturizeOutputs:
        registry, train = self._registry, self._patterns["train"]
        raw = pbegin | "ReadTrain" >> ReadRecordBatches(train, registry)
        # Analysers see the train split only: eval statistics never leak in.
        transform_fn = ((raw, raw_tfxio(train, registry).TensorAdapterConfig())
                        | "Analyze" >> tft_beam.AnalyzeDataset(
                            functools.partial(preprocessing_fn, registry=registry)))
        records = {split: pbegin | f"Transform{split.title()}" >> TransformSplit(
            split, pattern, registry, transform_fn)
            for split, pattern in self._patterns.items()}
        return FeaturizeOutputs(transform_fn, records)


def _check_inputs(config: Config) -> None:
    require_success(config.layout.ingest_dir, "ingest")
    for split in config.splits:
        pattern = config.layout.examples(split) + "-*"
        if not tf.io.gfile.glob(pattern):
            raise StageOrderError(
                f"no raw {split} examples at {pattern}; run `shoprec ingest` again (with "
                f"the same ingest.test_start)")


def tft_temp_dir(options: PipelineOptions, local: str) -> str:
    """Where TFT's analyzers write while the job runs: seen by every worker.

    Under the pipeline's ``--temp_location`` when it has one (a ``gs://``
    folder on Dataflow: a folder on the launching machine is not on the
    workers), else ``local``. TFT creates the folder when the graph is built,
    so a dry run, where nothing runs, keeps it local: building stays offline.
    """
    temp = options.view_as(GoogleCloudOptions).temp_location
    if not temp or beam_options.is_dry_run(options):
        return local
    return FileSystems.join(temp, "shoprec-tft", os.path.basename(local))


def build(pipeline: beam.Pipeline, config: Config, temp_dir: str) -> None:
    """Adds the featurize job to ``pipeline``: :class:`Featurize`, then write its outputs.

    Args:
        pipeline: The graph to add to.
        config: Run config.
        temp_dir: TFT's temp folder (see :func:`tft_temp_dir`).
    """
    layout, registry = config.layout, config.registry
    patterns = {s: layout.examples(s) + "-*" for s in config.splits}
    with tft_beam.Context(temp_dir=temp_dir):
        featurized = pipeline | "Featurize" >> Featurize(patterns, registry)
        _ = featurized.transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(
            layout.transform_dir)
        for split, records in featurized.records.items():
            _ = records | f"Write{split.title()}" >> WriteShards(
                layout.transformed(split), config.ingest.num_shards)


def run(config: Config, beam_args: Optional[Sequence[str]] = None) -> dict:
    """Runs the featurize job; returns row counts and wall time.

    Raises:
        StageOrderError: ingest has not finished, or wrote not every split.
    """
    layout = config.layout
    _check_inputs(config)
    # Re-runs are idempotent: no shard from an earlier run survives.
    clear(layout.featurize_dir)
    tf.io.gfile.makedirs(layout.featurize_dir)
    start = time.time()
    pipeline = beam_options.new_pipeline(beam_args)
    with tempfile.TemporaryDirectory(prefix="shoprec-tft-") as local_tmp:
        build(pipeline, config, tft_temp_dir(pipeline.options, local_tmp))
        result = beam_options.run_job(pipeline)
    # Readers of the shards (the trainer, a user's own tf.data job) find their
    # schema beside them, not only inside the transform graph's folder.
    tf.io.gfile.copy(os.path.join(layout.transform_dir, "transformed_metadata", SCHEMA_FILE),
                     layout.transformed_schema, overwrite=True)
    counts = dead_letter.counts_from_result(result)
    report = {
        "rows": {s: counts.get(f"featurize/{s}_rows", 0) for s in config.splits},
        "seconds": round(time.time() - start, 2),
        "transform_dir": layout.transform_dir,
        "examples": {s: layout.transformed_pattern(s) for s in config.splits},
        "schema": layout.transformed_schema,
    }
    write_report(layout.featurize_report, report)
    write_success(layout.featurize_dir, "featurize")
    return report
