"""Embed job: item photos → one learned embedding per item.

Stages (stable labels):

    ReadItems (ReadTable) → ImagePaths → OnePerItem → LoadItemImages
    → Embed (BatchElements → RunInference) → WriteTFRecords / WriteParquet

The encoder is any SavedModel whose signature maps float32 images
``[N, H, W, 3]`` in [0, 1] to an ``[N, D]`` embedding: by default the one
``trainer.image_encoder`` exports (its ``encoder.json`` gives H and W), or a
user's own embedder with ``image_shape`` and the input/output keys given.

Every item listed comes out exactly once. A photo that is missing, empty or
undecodable is a dead letter (as in ingest, ``pipelines.images``) and its item
gets an all-zero embedding with ``has_image = 0``; a second row for an item
already listed is a ``duplicate_item`` dead letter. Batches, not rows, move
through RunInference: per-element overhead dominates small models.

Outputs under ``output_dir``: ``embeddings-SSSSS-of-NNNNN.tfrecord.gz``
(tf.Example: ``item_id`` bytes, ``embedding`` floats, ``has_image`` int),
``embeddings-SSSSS-of-NNNNN.parquet`` (the same columns),
``dead_letter.jsonl`` and ``report.json``.
"""

from __future__ import annotations

import json
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from pipelines import dead_letter as dl
from pipelines.images import DEFAULT_IMAGE_KEY, LoadItemImages
from pipelines.options import pipeline_options
from pipelines.parse import HAS_IMAGE_KEY
from pipelines.read import ReadTable
from pipelines.sinks import clear
from shoprec.dataset import image_path as fill_image_path, pattern_columns

ITEMS = "items"
ITEM_ID, EMBEDDING, HAS_IMAGE = "item_id", "embedding", "has_image"
PREFIX = "embeddings"
Chunk = List[Tuple[str, bytes]]  # (item_id, uint8 pixels) pairs moved as one element


def parquet_schema() -> pa.Schema:
    return pa.schema([(ITEM_ID, pa.string()), (EMBEDDING, pa.list_(pa.float32())),
                      (HAS_IMAGE, pa.int64())])


def encode_example(row: Dict[str, Any]) -> bytes:
    """One embedding row as a serialized tf.Example."""
    import tensorflow as tf

    feature = {
        ITEM_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[row[ITEM_ID].encode()])),
        EMBEDDING: tf.train.Feature(float_list=tf.train.FloatList(value=row[EMBEDDING])),
        HAS_IMAGE: tf.train.Feature(int64_list=tf.train.Int64List(value=[row[HAS_IMAGE]])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def decode_example(serialized: bytes) -> Dict[str, Any]:
    """Inverse of :func:`encode_example`.

    Raises:
        KeyError: a column is missing. ValueError: the bytes are not a tf.Example.
    """
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    try:
        feature = tf.train.Example.FromString(serialized).features.feature
    except DecodeError as err:
        raise ValueError(str(err)) from err
    for name in (ITEM_ID, EMBEDDING, HAS_IMAGE):
        if name not in feature:
            raise KeyError(name)
    return {ITEM_ID: feature[ITEM_ID].bytes_list.value[0].decode("utf-8"),
            EMBEDDING: list(feature[EMBEDDING].float_list.value),
            HAS_IMAGE: int(feature[HAS_IMAGE].int64_list.value[0])}


class EmbedBatchHandler(ModelHandler):
    """RunInference handler: each element is a chunk of (item_id, pixels); one call per chunk."""

    def __init__(self, model_dir: str, image_shape: Sequence[int], signature: str = "embed",
                 input_key: str = "images", output_key: str = EMBEDDING):
        self._model_dir = model_dir
        self._shape = tuple(int(d) for d in image_shape)
        self._signature = signature
        self._input_key = input_key
        self._output_key = output_key

    def load_model(self):
        import shoprec  # noqa: F401  (Keras 2 before TensorFlow loads on workers)
        import tensorflow as tf

        return tf.saved_model.load(self._model_dir).signatures[self._signature]

    def run_inference(self, batch: Sequence[Chunk], model, inference_args=None
                      ) -> Iterable[PredictionResult]:
        import tensorflow as tf

        for chunk in batch:
            pixels = np.frombuffer(b"".join(p for _, p in chunk), np.uint8)
            images = pixels.reshape((len(chunk),) + self._shape).astype(np.float32) / 255.0
            outputs = model(**{self._input_key: tf.constant(images)})
            yield PredictionResult([item_id for item_id, _ in chunk],
                                   outputs[self._output_key].numpy())

    def batch_elements_kwargs(self) -> Dict[str, Any]:
        # Elements are chunks already: RunInference must not batch them again.
        return {"min_batch_size": 1, "max_batch_size": 1}

    def get_num_bytes(self, batch: Sequence[Chunk]) -> int:
        return sum(len(p) for chunk in batch for _, p in chunk)


@beam.typehints.with_output_types(Tuple[str, str])
class _ImagePath(beam.DoFn):
    """(record, row) → (item_id, image path); a row without an id is a dead letter."""

    def __init__(self, id_column: str, image_path: str):
        self._id = id_column
        self._path = image_path

    def process(self, element):
        record, row = element
        item_id = str(row.get(self._id) or "").strip()
        if not item_id:
            yield dl.tagged(ITEMS, "missing_item_id", f"no {self._id}", record)
            return
        try:
            path = fill_image_path(self._path, row)
        except KeyError as err:
            yield dl.tagged(ITEMS, "missing_field", f"image path needs column {err}", record)
            return
        beam.metrics.Metrics.counter(dl.NAMESPACE, f"rows_valid/{ITEMS}").inc()
        yield item_id, path


def _first_per_item(element):
    item_id, paths = element
    paths = sorted(paths)
    for extra in paths[1:]:
        yield dl.tagged(ITEMS, "duplicate_item", f"{item_id} listed again", f"{item_id},{extra}")
    yield item_id, paths[0]


def _to_rows(result: PredictionResult):
    counter = beam.metrics.Metrics.counter(dl.NAMESPACE, "embed/embedded")
    for item_id, vector in zip(result.example, result.inference):
        counter.inc()
        yield {ITEM_ID: item_id, EMBEDDING: [float(v) for v in vector], HAS_IMAGE: 1}


def _count_item(row: Dict[str, Any]) -> Dict[str, Any]:
    beam.metrics.Metrics.counter(dl.NAMESPACE, "embed/items").inc()
    return row


class EmbedItems(beam.PTransform):
    """(item_id, image features) from LoadItemImages → one embedding row per item."""

    def __init__(self, handler: EmbedBatchHandler, embedding_dim: int, batch_size: int = 256):
        super().__init__()
        self._handler = handler
        self._dim = int(embedding_dim)
        self._batch_size = int(batch_size)

    def expand(self, images):
        with_image, without = images | "HasImage" >> beam.Partition(
            lambda kv, _: 0 if kv[1][HAS_IMAGE_KEY] else 1, 2)
        embedded = (
            with_image
            | "Pixels" >> beam.Map(lambda kv: (kv[0], kv[1][DEFAULT_IMAGE_KEY]))
            | "Batch" >> beam.BatchElements(min_batch_size=min(32, self._batch_size),
                                            max_batch_size=self._batch_size)
            | "RunInference" >> RunInference(self._handler)
            | "ToRows" >> beam.FlatMap(_to_rows))
        zero = [0.0] * self._dim
        blank = without | "ZeroEmbedding" >> beam.Map(
            lambda kv: {ITEM_ID: kv[0], EMBEDDING: zero, HAS_IMAGE: 0})
        return ((embedded, blank)
                | "Merge" >> beam.Flatten()
                | "Count" >> beam.Map(_count_item))


def model_spec(model_dir: str, signature: str = "embed", input_key: str = "images",
               output_key: str = EMBEDDING,
               image_shape: Optional[Sequence[int]] = None) -> Tuple[Tuple[int, int, int], int]:
    """(image shape, embedding width) of an embedder, read before the job is built.

    The shape comes from ``image_shape``, else the encoder's ``encoder.json``,
    else the signature's static input shape; the width from one call on a
    blank image, so any SavedModel embedder works.

    Raises:
        ValueError: the image shape cannot be determined.
    """
    import tensorflow as tf
    from trainer import image_encoder

    fn = tf.saved_model.load(model_dir).signatures[signature]
    if image_shape is None:
        try:
            image_shape = image_encoder.read_metadata(model_dir)["image_shape"]
        except tf.errors.NotFoundError:
            image_shape = fn.structured_input_signature[1][input_key].shape[1:]
            if None in image_shape:
                raise ValueError(f"{model_dir}: pass image_shape; the signature takes "
                                 f"{image_shape}")
    shape = tuple(int(d) for d in image_shape)
    probe = fn(**{input_key: tf.zeros((1,) + shape, tf.float32)})[output_key]
    return shape, int(probe.shape[-1])


def run(items: str, images_root: str, model_dir: str, output_dir: str, *,
        file_format: str = "csv", id_column: str = "item_id", image_path: str = "image_path",
        signature: str = "embed", input_key: str = "images", output_key: str = EMBEDDING,
        image_shape: Optional[Sequence[int]] = None, batch_size: int = 256,
        num_shards: int = 1, expected_width: Optional[int] = None,
        beam_args: Optional[Sequence[str]] = None) -> dict:
    """Runs the embed job; returns its report (also written to ``report.json``).

    Args:
        items: Item table file or glob (CSV with header, JSONL or Parquet).
        images_root: Folder relative image paths resolve against.
        model_dir: SavedModel embedder (see the module docstring).
        output_dir: Replaced by this run's outputs.
        file_format: ``csv``, ``jsonl`` or ``parquet``.
        id_column: Item id column.
        image_path: A column holding the image path, or a pattern of item
            columns such as ``"images/{article_id[:3]}/{article_id}.jpg"``
            (H&M; see ``shoprec.dataset.image_path``).
        signature, input_key, output_key: How to call the embedder.
        image_shape: (H, W, 3) photos are resized to; default: from the model.
        batch_size: Images per RunInference call.
        num_shards: Output shards per format.
        expected_width: The embedding width the caller needs (e.g. the
            registry feature's); None: any.
        beam_args: Pass-through Beam flags.

    Raises:
        ValueError: the embedder's output width is not ``expected_width``.
    """
    shape, dim = model_spec(model_dir, signature, input_key, output_key, image_shape)
    if expected_width is not None and dim != expected_width:
        raise ValueError(f"embed: {model_dir} outputs {dim} floats per image, "
                         f"{expected_width} are needed")
    clear(output_dir)
    prefix = FileSystems.join(output_dir, PREFIX)
    required = list(dict.fromkeys([id_column, *pattern_columns(image_path)]))
    start = time.time()
    pipeline = beam.Pipeline(options=pipeline_options(beam_args))
    read = pipeline | "ReadItems" >> ReadTable(items, file_format, ITEMS, required=required)
    paths = read.main | "ImagePaths" >> beam.ParDo(
        _ImagePath(id_column, image_path)).with_outputs(
            dl.DEAD_LETTER_TAG, main="main")
    unique = (paths.main
              | "GroupById" >> beam.GroupByKey()
              | "OnePerItem" >> beam.FlatMap(_first_per_item).with_outputs(
                  dl.DEAD_LETTER_TAG, main="main"))
    loaded = unique.main | "LoadItemImages" >> LoadItemImages(images_root, shape)
    handler = EmbedBatchHandler(model_dir, shape, signature, input_key, output_key)
    rows = loaded.main | "Embed" >> EmbedItems(handler, dim, batch_size)
    _ = (rows
         | "EncodeExamples" >> beam.Map(encode_example)
         | "WriteTFRecords" >> beam.io.WriteToTFRecord(
             prefix, file_name_suffix=".tfrecord.gz", num_shards=num_shards,
             compression_type=CompressionTypes.GZIP))
    _ = rows | "WriteParquet" >> beam.io.WriteToParquet(
        prefix, parquet_schema(), file_name_suffix=".parquet", num_shards=num_shards)
    _ = ((read.dead_letter, paths[dl.DEAD_LETTER_TAG], unique[dl.DEAD_LETTER_TAG],
          loaded.dead_letter)
         | "FlattenDeadLetters" >> beam.Flatten()
         | "DeadLetterJson" >> beam.Map(dl.DeadLetter.to_json)
         | "WriteDeadLetters" >> beam.io.WriteToText(
             FileSystems.join(output_dir, "dead_letter"), file_name_suffix=".jsonl",
             num_shards=1, shard_name_template=""))
    result = pipeline.run()
    result.wait_until_finish()
    counts = dl.counts_from_result(result)
    seconds = time.time() - start
    report = {"counts": counts, "seconds": round(seconds, 2),
              "items_per_s": round(counts.get("embed/items", 0) / seconds, 1),
              "image_shape": list(shape), "embedding_dim": dim, "model_dir": model_dir,
              "outputs": {"tfrecord": prefix + "-*.tfrecord.gz", "parquet": prefix + "-*.parquet",
                          "dead_letter": FileSystems.join(output_dir, "dead_letter.jsonl")}}
    with FileSystems.create(FileSystems.join(output_dir, "report.json"),
                            compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(json.dumps(report, indent=2, sort_keys=True).encode("utf-8"))
    return report
