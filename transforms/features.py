"""The feature registry: one frozen record per feature.

Ingest validates and joins rows with it, ``preprocessing_fn`` featurizes from
it, the trainer builds its inputs and heads from it, and scoring builds raw
examples from it. Adding a feature means adding one record here; nothing else
keeps a parallel list.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Dict, Optional, Tuple


class Kind(str, enum.Enum):
    """How a feature is featurized and consumed by the model."""

    ID = "id"  # High-cardinality identifier: vocabulary + OOV buckets + embedding.
    CATEGORICAL = "categorical"  # Low-cardinality string: vocabulary + embedding.
    NUMERIC = "numeric"  # Float: z-score (optionally after log1p).
    IMAGE = "image"  # Fixed-size RGB pixels: uint8 bytes raw, float [0, 1] transformed.
    FLAG = "flag"  # 0/1 integer passed through as float.
    LABEL = "label"  # 0/1 integer target; never a model input.


class Source(str, enum.Enum):
    """The table a feature's raw value comes from."""

    EVENT = "event"
    USER = "user"
    ITEM = "item"


@dataclasses.dataclass(frozen=True)
class Feature:
    """One feature, as every stage sees it.

    Attributes:
        name: Feature key in raw and transformed tf.Examples.
        source: Table the raw value is read from.
        kind: Featurization and model treatment.
        column: Column name in the source file (defaults to ``name``).
        required: Whether a row missing this value is a dead letter.
        oov_buckets: Out-of-vocabulary buckets (ID / CATEGORICAL).
        top_k: Cap on vocabulary size, most frequent first (None: no cap).
        embedding_dim: Embedding width in the model (ID / CATEGORICAL).
        min_value: Inclusive lower bound for NUMERIC validation.
        max_value: Inclusive upper bound for NUMERIC validation.
        log: Apply log1p before the z-score (heavy-tailed numerics).
        default: Value used when an optional raw value is missing.
        image_shape: (height, width, channels) for IMAGE.
    """

    name: str
    source: Source
    kind: Kind
    column: Optional[str] = None
    required: bool = True
    oov_buckets: int = 1
    top_k: Optional[int] = None
    embedding_dim: int = 8
    min_value: Optional[float] = None
    max_value: Optional[float] = None
    log: bool = False
    default: object = None
    image_shape: Tuple[int, int, int] = ()

    @property
    def source_column(self) -> str:
        return self.column or self.name

    @property
    def dtype(self) -> str:
        """Raw tf.Example dtype: 'string', 'int64' or 'float32'."""
        if self.kind in (Kind.ID, Kind.CATEGORICAL, Kind.IMAGE):
            return "string"
        if self.kind in (Kind.FLAG, Kind.LABEL):
            return "int64"
        return "float32"

    @property
    def vocab_filename(self) -> str:
        return f"vocab_{self.name}"

    @property
    def image_bytes(self) -> int:
        h, w, c = self.image_shape
        return h * w * c


IMAGE_SHAPE = (16, 16, 3)

FEATURES: Tuple[Feature, ...] = (
    Feature("user_id", Source.EVENT, Kind.ID, oov_buckets=16, embedding_dim=16),
    Feature("item_id", Source.EVENT, Kind.ID, oov_buckets=16, embedding_dim=16),
    Feature("user_age", Source.USER, Kind.NUMERIC, column="age", min_value=0, max_value=120,
            required=False, default=35.0),
    Feature("user_region", Source.USER, Kind.CATEGORICAL, column="region", required=False,
            default="unknown"),
    Feature("user_membership", Source.USER, Kind.CATEGORICAL, column="membership",
            required=False, default="none"),
    Feature("item_category", Source.ITEM, Kind.CATEGORICAL, column="category"),
    Feature("item_brand", Source.ITEM, Kind.CATEGORICAL, column="brand", oov_buckets=4),
    Feature("item_colour", Source.ITEM, Kind.CATEGORICAL, column="colour"),
    Feature("item_price", Source.ITEM, Kind.NUMERIC, column="price", min_value=0.0,
            max_value=1e6, log=True),
    Feature("item_image", Source.ITEM, Kind.IMAGE, image_shape=IMAGE_SHAPE),
    Feature("item_has_image", Source.ITEM, Kind.FLAG),
    Feature("click", Source.EVENT, Kind.LABEL),
    Feature("conversion", Source.EVENT, Kind.LABEL),
)

BY_NAME: Dict[str, Feature] = {f.name: f for f in FEATURES}

USER_KEY = "user_id"
ITEM_KEY = "item_id"
# Raw-example metadata carried for splitting and scoring, never a model input.
TIMESTAMP_KEY = "timestamp"


def of_kind(*kinds: Kind) -> Tuple[Feature, ...]:
    return tuple(f for f in FEATURES if f.kind in kinds)


def of_source(source: Source) -> Tuple[Feature, ...]:
    return tuple(f for f in FEATURES if f.source == source)


def labels() -> Tuple[Feature, ...]:
    return of_kind(Kind.LABEL)


def inputs() -> Tuple[Feature, ...]:
    """Features the model consumes (everything but labels)."""
    return tuple(f for f in FEATURES if f.kind != Kind.LABEL)


def image_feature() -> Feature:
    (feature,) = of_kind(Kind.IMAGE)
    return feature


def raw_feature_spec(include_labels: bool = True) -> dict:
    """``tf.io.parse_example`` spec for raw examples written by ingest.

    Imported lazily so ingest workers that never touch TensorFlow stay light.
    """
    import tensorflow as tf

    dtypes = {"string": tf.string, "int64": tf.int64, "float32": tf.float32}
    spec = {}
    for f in FEATURES:
        if f.kind == Kind.LABEL and not include_labels:
            continue
        spec[f.name] = tf.io.FixedLenFeature([], dtypes[f.dtype])
    return spec
