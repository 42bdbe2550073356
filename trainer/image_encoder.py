"""An image encoder learned from the catalogue itself.

Pretrained weights cannot be downloaded here, so the encoder is trained on a
real item-attribute task: a small CNN reads an item's photo and predicts its
attributes (category and colour for the generated shop; product type and
colour group for H&M), one softmax head per attribute. The layer before the
heads is the item embedding. Accuracy is measured on held-out *items*, next
to the rate of always answering the most frequent training class. A
behaviour head (``trainer.behaviour``) may regress besides what shoppers do
with each item, so that the embedding also carries what no label names; its
held-out Pearson r and R^2 are reported per target column.

The export is a SavedModel with two signatures over float32 images
``[N, H, W, 3]`` in [0, 1]: ``embed`` → ``embedding [N, D]`` and ``predict``
→ per attribute ``<name>_probabilities [N, K]`` and ``<name> [N]`` (class
name), plus ``behaviour [N, C]`` with a behaviour head (each column
standardized as the report's ``behaviour.standardized_by``).
``assets.extra/encoder.json`` records the image shape, classes and the
training report (``shoprec.io.encoder_metadata``). ``pipelines.embed_images``
runs it over a catalogue.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import numpy as np
import tensorflow as tf

from shoprec.core.errors import InputEmptyError
from shoprec.core.images import image_path as fill_path
from shoprec.io import encoder_metadata, photos, tables
from shoprec.io.outputs import clear
from trainer import behaviour as B

OTHER_CLASS = "(other)"
# The behaviour head's output name (beside one per attribute).
BEHAVIOUR = "behaviour"


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Architecture and training of the encoder.

    Attributes:
        filters: Conv filters per block (3x3 conv, ReLU, 2x2 max pool).
        embedding_dim: Width D of the embedding.
        dropout: Dropout between the embedding and the heads (training only).
        epochs: Passes over the training items (at least; see ``min_steps``).
        min_steps: Training steps at least: small catalogues get more epochs,
            since a few hundred items are only a handful of steps per epoch.
        batch_size: Images per step.
        learning_rate: Adam step size.
        holdout_fraction: Items kept out of training to measure accuracy.
        seed: Seeds the split, the initial weights and the shuffling.
        flip: Random horizontal flips in training (photos are left/right symmetric).
    """

    filters: Tuple[int, ...] = (32, 64, 96)
    embedding_dim: int = 32
    dropout: float = 0.2
    epochs: int = 12
    min_steps: int = 600
    batch_size: int = 64
    learning_rate: float = 2e-3
    holdout_fraction: float = 0.2
    seed: int = 0
    flip: bool = True


@dataclasses.dataclass
class Catalogue:
    """Item photos with attribute labels.

    Attributes:
        ids: Item ids, one per image.
        images: float32 [N, H, W, 3] in [0, 1].
        labels: {attribute: int class index [N]}.
        classes: {attribute: class names, index order}.
        skipped: (item id, reason) of items whose photo could not be used.
    """

    ids: np.ndarray
    images: np.ndarray
    labels: Dict[str, np.ndarray]
    classes: Dict[str, List[str]]
    skipped: List[Tuple[str, str]]


def load_catalogue(items_path: str, images_root: str, attributes: Sequence[str],
                   image_shape: Tuple[int, int, int], id_column: str = "item_id",
                   image_path: str = "image_path", file_format: str = "csv",
                   min_class_count: int = 1, limit: Optional[int] = None,
                   allowed_prefixes: Sequence[str] = ()) -> Catalogue:
    """Reads an item file and the photos it points at.

    Args:
        items_path: Item file (``file_format``) naming ``id_column`` and every attribute.
        images_root: Folder relative image paths resolve against.
        attributes: Columns to predict.
        image_shape: (height, width, 3) every photo is resized to.
        id_column: Item id column (kept as a string).
        image_path: The data set's image path: a column holding it, or a
            pattern such as ``"images/{article_id[:3]}/{article_id}.jpg"``
            (``shoprec.core.images.image_path``).
        file_format: ``csv``, ``jsonl`` or ``parquet``.
        min_class_count: Classes with fewer items are merged into ``(other)``.
        limit: Read at most this many rows.
        allowed_prefixes: Where absolute image paths and URLs may point.

    Returns:
        The catalogue; items with a missing or undecodable photo, and lines
        that are no row, are skipped with their reason (``shoprec.io.photos``
        and ``shoprec.io.tables`` reasons: the embed job's dead-letter reasons,
        ``image_path_outside_root`` included).

    Raises:
        InputEmptyError: the file has no rows, or no item has a usable photo.
    """
    ids, pixels, kept, skipped = [], [], [], []
    for item in tables.read_rows(items_path, file_format, limit):
        if isinstance(item, tables.BadRow):
            skipped.append(("", item.reason))
            continue
        row = {k: "" if v is None else str(v) for k, v in item[1].items()}
        item_id = row[id_column]
        photo = photos.load(images_root, fill_path(image_path, row), image_shape,
                            allowed_prefixes)
        if photo.pixels is None:
            skipped.append((item_id, photo.reason))
            continue
        pixels.append(np.frombuffer(photo.pixels, np.uint8))
        ids.append(item_id)
        kept.append(row)
    if not kept:
        reasons = dict(Counter(reason for _, reason in skipped))
        raise InputEmptyError(f"{items_path}: no item has a usable photo under {images_root} "
                              f"(skipped: {reasons or 'none, the file has no rows'})")
    images = np.stack(pixels).reshape((-1,) + tuple(image_shape)).astype(np.float32) / 255.0
    labels, classes = {}, {}
    for name in attributes:
        counts = Counter(row[name] for row in kept)
        names = sorted(c for c, n in counts.items() if n >= min_class_count)
        if len(names) < len(counts):
            names.append(OTHER_CLASS)
        index = {c: i for i, c in enumerate(names)}
        labels[name] = np.array([index.get(row[name], len(names) - 1) for row in kept], np.int64)
        classes[name] = names
    return Catalogue(np.array(ids), images, labels, classes, skipped)


def generated_catalogue(raw_dir: str, image_shape: Tuple[int, int, int] = (32, 32, 3),
                        attributes: Sequence[str] = ("category", "colour")) -> Catalogue:
    """The generated shop's items (``raw/items.csv`` + ``raw/images``)."""
    return load_catalogue(os.path.join(raw_dir, "items.csv"), raw_dir, attributes, image_shape)


HM_IMAGE_PATH = "images/{article_id[:3]}/{article_id}.jpg"


def hm_catalogue(hm_dir: str, image_shape: Tuple[int, int, int] = (48, 32, 3),
                 attributes: Sequence[str] = ("product_type_name", "colour_group_name"),
                 min_class_count: int = 20, limit: Optional[int] = None) -> Catalogue:
    """H&M articles (``articles.csv`` + ``images/0XX/<article_id>.jpg``, 85x128 photos)."""
    return load_catalogue(os.path.join(hm_dir, "articles.csv"), hm_dir, attributes, image_shape,
                          id_column="article_id", image_path=HM_IMAGE_PATH,
                          min_class_count=min_class_count, limit=limit)


def split_items(n: int, holdout_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(train, held-out) item indices: a seeded random split of whole items."""
    order = np.random.default_rng(seed).permutation(n)
    n_holdout = max(1, int(round(n * holdout_fraction)))
    return np.sort(order[n_holdout:]), np.sort(order[:n_holdout])


def build_model(image_shape: Tuple[int, int, int], num_classes: Mapping[str, int],
                config: EncoderConfig = EncoderConfig(),
                behaviour_columns: int = 0) -> tf.keras.Model:
    """CNN → embedding → one logit head per attribute (and a linear behaviour head
    of ``behaviour_columns`` outputs, if any); outputs a dict keyed by head."""
    images = tf.keras.Input(shape=tuple(image_shape), name="images")
    x = images
    for filters in config.filters:
        x = tf.keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = tf.keras.layers.MaxPool2D(2)(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    embedding = tf.keras.layers.Dense(config.embedding_dim, activation="relu",
                                      name="embedding")(x)
    hidden = tf.keras.layers.Dropout(config.dropout)(embedding)
    outputs = {name: tf.keras.layers.Dense(k, name=name)(hidden)
               for name, k in num_classes.items()}
    if behaviour_columns:
        outputs[BEHAVIOUR] = tf.keras.layers.Dense(behaviour_columns, name=BEHAVIOUR)(hidden)
    return tf.keras.Model(images, outputs, name="image_encoder")


def embedder(model: tf.keras.Model) -> tf.keras.Model:
    """The encoder up to its embedding layer."""
    return tf.keras.Model(model.input, model.get_layer("embedding").output)


def train_encoder(images: np.ndarray, labels: Mapping[str, np.ndarray],
                  config: EncoderConfig = EncoderConfig(),
                  num_classes: Optional[Mapping[str, int]] = None,
                  held_out: Optional[np.ndarray] = None,
                  behaviour: Optional[B.Targets] = None, behaviour_weight: float = 1.0
                  ) -> Tuple[tf.keras.Model, dict]:
    """Trains on a split of the items and reports accuracy on the held-out rest.

    Args:
        images: float32 [N, H, W, 3] in [0, 1].
        labels: {attribute: int class index [N]}.
        config: Architecture and training settings.
        num_classes: {attribute: K}; default: max label + 1.
        held_out: bool [N]: the items to hold out (never trained on, the
            accuracy's items), e.g. those a model task holds out; default: a
            seeded ``holdout_fraction`` of the items.
        behaviour: Behaviour targets per item (``trainer.behaviour``), or
            None for attribute heads only. Each column is standardized on the
            training teachers; the loss is :func:`trainer.behaviour.masked_mse`.
            Without a target column or a training teacher there is no head,
            and the report's ``behaviour.skipped`` says why.
        behaviour_weight: Its loss weight; each attribute head's is 1.

    Returns:
        (model, report): the report has, per attribute, held-out ``accuracy``
        and ``majority_rate`` (held-out items in the most frequent training
        class), with behaviour targets ``behaviour`` (per column Pearson r
        and R^2 on held-out teachers, teacher counts), the item counts and
        training seconds.

    Raises:
        ValueError: no attribute and no behaviour column to learn, or a bad
            ``held_out``.
    """
    tf.keras.utils.set_random_seed(config.seed)
    num_classes = dict(num_classes or {k: int(v.max()) + 1 for k, v in labels.items()})
    if held_out is None:
        train, held_out = split_items(len(images), config.holdout_fraction, config.seed)
    else:
        mask = np.asarray(held_out, bool)
        if mask.shape != (len(images),) or mask.all() or not mask.any():
            raise ValueError(f"held_out must mark some but not all of the {len(images)} items")
        train, held_out = np.flatnonzero(~mask), np.flatnonzero(mask)
    targets = dict(labels)
    losses = {k: tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
              for k in num_classes}
    weights = {k: 1.0 for k in num_classes}
    columns, skipped = B.usable_columns(behaviour, train)
    if columns:
        scale = B.standardize(behaviour, train)
        targets[BEHAVIOUR] = np.concatenate(
            [scale.values, behaviour.weight[:, None]], axis=1).astype(np.float32)
        losses[BEHAVIOUR], weights[BEHAVIOUR] = B.masked_mse, float(behaviour_weight)
    if not losses:
        raise ValueError("nothing to learn: no attribute and no behaviour target column")
    model = build_model(images.shape[1:], num_classes, config, len(columns))
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate), loss=losses,
                  loss_weights=weights, metrics={k: "accuracy" for k in num_classes})

    def batches(indices: np.ndarray, training: bool) -> tf.data.Dataset:
        data = tf.data.Dataset.from_tensor_slices(
            (images[indices], {k: v[indices] for k, v in targets.items()}))
        if training:
            data = data.shuffle(len(indices), seed=config.seed)
            if config.flip:
                data = data.map(lambda x, y: (tf.image.random_flip_left_right(x), y))
        return data.batch(config.batch_size).prefetch(2)

    steps_per_epoch = -(-len(train) // config.batch_size)
    epochs = max(config.epochs, -(-config.min_steps // steps_per_epoch))
    start = time.time()
    model.fit(batches(train, True), epochs=epochs, verbose=0)
    seconds = time.time() - start
    predicted = model.predict(batches(held_out, False), verbose=0)
    heads = {}
    for name, y in labels.items():
        majority = np.bincount(y[train], minlength=num_classes[name]).argmax()
        heads[name] = {
            "accuracy": float(np.mean(predicted[name].argmax(axis=1) == y[held_out])),
            "majority_rate": float(np.mean(y[held_out] == majority)),
            "classes": num_classes[name]}
    report = {"heads": heads}
    if columns:
        report[BEHAVIOUR] = B.held_out_report(scale, predicted[BEHAVIOUR], train, held_out,
                                              behaviour_weight)
    elif skipped:
        report[BEHAVIOUR] = {"skipped": skipped}
    report.update({"train_items": int(len(train)),
                   "held_out_items": int(len(held_out)), "epochs": epochs,
                   "train_seconds": round(seconds, 1),
                   "image_shape": list(images.shape[1:]), "config": dataclasses.asdict(config)})
    return model, report


class _Serving(tf.Module):
    """What the SavedModel carries: the Keras model and the class names."""

    def __init__(self, model: tf.keras.Model, classes: Mapping[str, Sequence[str]]):
        super().__init__()
        self.model = model
        self.embedder = embedder(model)
        self.class_names = {k: tf.constant(list(v)) for k, v in classes.items()}
        spec = tf.TensorSpec([None, *model.input.shape[1:]], tf.float32, name="images")
        self.embed = tf.function(self._embed, input_signature=[spec])
        self.predict = tf.function(self._predict, input_signature=[spec])

    def _embed(self, images):
        return {"embedding": self.embedder(images, training=False)}

    def _predict(self, images):
        logits = self.model(images, training=False)
        out = {}
        for name, names in self.class_names.items():
            out[f"{name}_probabilities"] = tf.nn.softmax(logits[name])
            out[name] = tf.gather(names, tf.argmax(logits[name], axis=1))
        if BEHAVIOUR in logits:  # standardized as the report's behaviour.standardized_by
            out[BEHAVIOUR] = logits[BEHAVIOUR]
        return out


def export(model: tf.keras.Model, export_dir: str,
           classes: Optional[Mapping[str, Sequence[str]]] = None,
           report: Optional[dict] = None) -> str:
    """Writes the SavedModel (``embed`` and ``predict`` signatures) and its metadata.

    Args:
        model: From :func:`train_encoder` / :func:`build_model`.
        export_dir: Replaced if it exists.
        classes: {attribute: class names}; default: the class indices as names.
        report: Training report to keep beside the model.

    Returns:
        ``export_dir``.
    """
    heads = [k for k in model.output.keys() if k != BEHAVIOUR]
    classes = {k: list(classes[k]) if classes else
               [str(i) for i in range(model.output[k].shape[-1])] for k in heads}
    clear(export_dir)
    serving = _Serving(model, classes)
    tf.saved_model.save(serving, export_dir, signatures={
        "embed": serving.embed, "predict": serving.predict, "serving_default": serving.embed})
    encoder_metadata.write(export_dir, {
        "image_shape": list(model.input.shape[1:]),
        "embedding_dim": int(model.get_layer("embedding").output.shape[-1]),
        "classes": classes, "report": report})
    return export_dir


def embed(export_dir: str, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Embeddings [N, D] of float32 images [N, H, W, 3] with an exported encoder."""
    signature = tf.saved_model.load(export_dir).signatures["embed"]
    parts = [signature(images=tf.constant(images[i:i + batch_size]))["embedding"].numpy()
             for i in range(0, len(images), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
