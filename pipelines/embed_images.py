"""Embed job: item photos → one learned embedding per item.

Stages (stable labels): ReadItems (ReadTable) → EmbedImages (the composite:
ImagePaths → OnePerItem → LoadItemImages → Batch → RunInference → ToRows)
→ WriteTFRecords / WriteParquet / WriteDeadLetters.

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

import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import PredictionResult, RunInference

from pipelines import dead_letter as dl
from pipelines.examples import EMBED_HAS_IMAGE as HAS_IMAGE
from pipelines.examples import EMBED_ITEM_ID as ITEM_ID
from pipelines.examples import EMBED_VECTOR as EMBEDDING
from pipelines.examples import encode_embedding
from pipelines.images import DEFAULT_IMAGE_KEY, LoadItemImages
from pipelines.inference import ChunkHandler
from pipelines.options import new_pipeline, run_job
from pipelines.outputs import Outputs
from pipelines.parse import HAS_IMAGE_KEY
from pipelines.read import ReadTable
from pipelines.sinks import parquet_rows, text_file
from shoprec.core.errors import ConfigError
from shoprec.core.images import image_path as fill_image_path
from shoprec.core.images import pattern_columns
from shoprec.core.layout import JSONL_SUFFIX, PARQUET_SUFFIX, REPORT_FILE, TFRECORD_SUFFIX
from shoprec.io import encoder_metadata
from shoprec.io.outputs import clear, write_report

ITEMS = "items"
PREFIX = "embeddings"
Chunk = List[Tuple[str, bytes]]  # (item_id, uint8 pixels) pairs moved as one element


def parquet_schema() -> pa.Schema:
    return pa.schema([(ITEM_ID, pa.string()), (EMBEDDING, pa.list_(pa.float32())),
                      (HAS_IMAGE, pa.int64())])


class _Images:
    """Picklable ``chunk of (item_id, uint8 pixels) → {input_key: float32 images in [0, 1]}``."""

    def __init__(self, shape: Sequence[int], input_key: str):
        self._shape = tuple(int(d) for d in shape)
        self._key = input_key

    def __call__(self, chunk: Chunk) -> Dict[str, np.ndarray]:
        pixels = np.frombuffer(b"".join(p for _, p in chunk), np.uint8)
        return {self._key: pixels.reshape((len(chunk),) + self._shape).astype(np.float32) / 255.0}


def _pixel_bytes(chunk: Chunk) -> int:
    return sum(len(p) for _, p in chunk)


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


def _to_rows(result: PredictionResult, output_key: str):
    counter = beam.metrics.Metrics.counter(dl.NAMESPACE, "embed/embedded")
    for (item_id, _), vector in zip(result.example, result.inference[output_key]):
        counter.inc()
        yield {ITEM_ID: item_id, EMBEDDING: [float(v) for v in vector], HAS_IMAGE: 1}


def _count_item(row: Dict[str, Any]) -> Dict[str, Any]:
    beam.metrics.Metrics.counter(dl.NAMESPACE, "embed/items").inc()
    return row


class EmbedImages(beam.PTransform):
    """(record, item row) pairs → one embedding row per item, plus dead letters.

    Stages: ImagePaths → OnePerItem → LoadItemImages → HasImage → Batch →
    RunInference → ToRows, with ZeroEmbedding for items without a usable photo.

    Args:
        images_root: Folder relative image paths resolve against.
        model_dir: The SavedModel embedder.
        image_shape: (H, W, 3) photos are resized to.
        embedding_dim: Its output width (zero vectors are this wide).
        id_column: Item id column.
        image_path: Image path column or pattern (``shoprec.core.images``).
        signature, input_key, output_key: How to call the embedder.
        batch_size: Images per signature call.
        allowed_prefixes: Where absolute image paths and URLs may point.
    """

    def __init__(self, images_root: str, model_dir: str, image_shape: Sequence[int],
                 embedding_dim: int, *, id_column: str, image_path: str, signature: str,
                 input_key: str, output_key: str, batch_size: int,
                 allowed_prefixes: Sequence[str] = ()):
        super().__init__()
        self._root = images_root
        self._allowed = tuple(allowed_prefixes)
        self._shape = tuple(int(d) for d in image_shape)
        self._dim = int(embedding_dim)
        self._id_column = id_column
        self._image_path = image_path
        self._output_key = output_key
        self._batch_size = int(batch_size)
        self._handler = ChunkHandler(model_dir, signature, _Images(self._shape, input_key),
                                     _pixel_bytes)

    def expand(self, items) -> Outputs:
        paths = items | "ImagePaths" >> beam.ParDo(
            _ImagePath(self._id_column, self._image_path)).with_outputs(
                dl.DEAD_LETTER_TAG, main="main")
        unique = (paths.main
                  | "GroupById" >> beam.GroupByKey()
                  | "OnePerItem" >> beam.FlatMap(_first_per_item).with_outputs(
                      dl.DEAD_LETTER_TAG, main="main"))
        loaded = unique.main | "LoadItemImages" >> LoadItemImages(
            self._root, self._shape, allowed_prefixes=self._allowed)
        with_image, without = loaded.main | "HasImage" >> beam.Partition(
            lambda kv, _: 0 if kv[1][HAS_IMAGE_KEY] else 1, 2)
        embedded = (
            with_image
            | "Pixels" >> beam.Map(lambda kv: (kv[0], kv[1][DEFAULT_IMAGE_KEY]))
            | "Batch" >> beam.BatchElements(min_batch_size=min(32, self._batch_size),
                                            max_batch_size=self._batch_size)
            | "RunInference" >> RunInference(self._handler)
            | "ToRows" >> beam.FlatMap(_to_rows, self._output_key))
        zero = [0.0] * self._dim
        blank = without | "ZeroEmbedding" >> beam.Map(
            lambda kv: {ITEM_ID: kv[0], EMBEDDING: zero, HAS_IMAGE: 0})
        rows = ((embedded, blank)
                | "Merge" >> beam.Flatten()
                | "Count" >> beam.Map(_count_item))
        dead = ((paths[dl.DEAD_LETTER_TAG], unique[dl.DEAD_LETTER_TAG], loaded.dead_letter)
                | "FlattenDeadLetters" >> beam.Flatten())
        return Outputs(rows, dead)


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

    fn = tf.saved_model.load(model_dir).signatures[signature]
    if image_shape is None:
        metadata = encoder_metadata.read(model_dir)
        if metadata is not None:
            image_shape = metadata["image_shape"]
        else:
            image_shape = fn.structured_input_signature[1][input_key].shape[1:]
            if None in image_shape:
                raise ValueError(f"{model_dir}: pass image_shape; the signature takes "
                                 f"{image_shape}")
    shape = tuple(int(d) for d in image_shape)
    probe = fn(**{input_key: tf.zeros((1,) + shape, tf.float32)})[output_key]
    return shape, int(probe.shape[-1])


def build(pipeline: beam.Pipeline, items: str, images_root: str, model_dir: str,
          output_dir: str, shape: Sequence[int], dim: int, *, file_format: str = "csv",
          id_column: str = "item_id", image_path: str = "image_path",
          signature: str = "embed", input_key: str = "images", output_key: str = EMBEDDING,
          batch_size: int = 256, num_shards: int = 1,
          allowed_prefixes: Sequence[str] = ()) -> None:
    """Adds the embed job to ``pipeline``: read the items, :class:`EmbedImages`, write.

    Args: as :func:`run`'s; ``shape`` and ``dim`` are the embedder's photo
    shape and output width (:func:`model_spec`).
    """
    prefix = FileSystems.join(output_dir, PREFIX)
    required = list(dict.fromkeys([id_column, *pattern_columns(image_path)]))
    read = pipeline | "ReadItems" >> ReadTable(items, file_format, ITEMS, required=required)
    embedded = read.main | "EmbedImages" >> EmbedImages(
        images_root, model_dir, shape, dim, id_column=id_column, image_path=image_path,
        signature=signature, input_key=input_key, output_key=output_key,
        batch_size=batch_size, allowed_prefixes=allowed_prefixes)
    _ = (embedded.main
         | "EncodeExamples" >> beam.Map(encode_embedding)
         | "WriteTFRecords" >> beam.io.WriteToTFRecord(
             prefix, file_name_suffix=TFRECORD_SUFFIX, num_shards=num_shards,
             compression_type=CompressionTypes.GZIP))
    _ = embedded.main | "WriteParquet" >> parquet_rows(prefix, parquet_schema(), PARQUET_SUFFIX,
                                                       num_shards)
    _ = ((read.dead_letter, embedded.dead_letter)
         | "FlattenDeadLetters" >> beam.Flatten()
         | "DeadLetterJson" >> beam.Map(dl.DeadLetter.to_json)
         | "WriteDeadLetters" >> text_file(FileSystems.join(output_dir, "dead_letter"),
                                           JSONL_SUFFIX))


def run(items: str, images_root: str, model_dir: str, output_dir: str, *,
        file_format: str = "csv", id_column: str = "item_id", image_path: str = "image_path",
        signature: str = "embed", input_key: str = "images", output_key: str = EMBEDDING,
        image_shape: Optional[Sequence[int]] = None, batch_size: int = 256,
        num_shards: int = 1, expected_width: Optional[int] = None,
        allowed_prefixes: Sequence[str] = (),
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
            (H&M; see ``shoprec.core.images.image_path``).
        signature, input_key, output_key: How to call the embedder.
        image_shape: (H, W, 3) photos are resized to; default: from the model.
        batch_size: Images per RunInference call.
        num_shards: Output shards per format.
        expected_width: The embedding width the caller needs (e.g. the
            registry feature's); None: any.
        allowed_prefixes: Where absolute image paths and URLs may point
            (``inputs.allowed_image_prefixes``); empty: only under ``images_root``.
        beam_args: Pass-through Beam flags.

    Raises:
        ValueError: the embedder's output width is not ``expected_width``.
    """
    shape, dim = model_spec(model_dir, signature, input_key, output_key, image_shape)
    if expected_width is not None and dim != expected_width:
        raise ConfigError(f"{model_dir} outputs {dim} floats per image, {expected_width} "
                          f"are needed (the registry's embedding width)")
    clear(output_dir)
    prefix = FileSystems.join(output_dir, PREFIX)
    start = time.time()
    pipeline = new_pipeline(beam_args)
    build(pipeline, items, images_root, model_dir, output_dir, shape, dim,
          file_format=file_format, id_column=id_column, image_path=image_path,
          signature=signature, input_key=input_key, output_key=output_key,
          batch_size=batch_size, num_shards=num_shards, allowed_prefixes=allowed_prefixes)
    result = run_job(pipeline)
    counts = dl.counts_from_result(result)
    seconds = time.time() - start
    report = {"counts": counts, "seconds": round(seconds, 2),
              "items_per_s": round(counts.get("embed/items", 0) / seconds, 1),
              "image_shape": list(shape), "embedding_dim": dim, "model_dir": model_dir,
              "outputs": {"tfrecord": prefix + "-*" + TFRECORD_SUFFIX,
                          "parquet": prefix + "-*" + PARQUET_SUFFIX,
                          "dead_letter": FileSystems.join(output_dir,
                                                          "dead_letter" + JSONL_SUFFIX)}}
    write_report(FileSystems.join(output_dir, REPORT_FILE), report)
    return report
