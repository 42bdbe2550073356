"""Raw tf.Example encoding shared by ingest (training data) and scoring.

Both stages build raw examples with these functions, so the bytes the model
sees at scoring are produced by the same code as the bytes TFT analysed.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping

import tensorflow as tf

from transforms import features as F


def _value_feature(feature_dtype: str, value: Any) -> tf.train.Feature:
    if feature_dtype == "string":
        data = value if isinstance(value, bytes) else str(value).encode("utf-8")
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))
    if feature_dtype == "int64":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))


def encode(row: Mapping[str, Any], names: Iterable[str]) -> bytes:
    """Serializes ``row[name]`` for each registry feature name (plus timestamp).

    Args:
        row: Values keyed by registry feature name; ``timestamp`` (unix seconds)
            is written too when present.
        names: Registry feature names to write; each must be in ``row``.

    Raises:
        KeyError: a named feature is missing from ``row``.
    """
    feats: Dict[str, tf.train.Feature] = {}
    for name in names:
        feats[name] = _value_feature(F.BY_NAME[name].dtype, row[name])
    if F.TIMESTAMP_KEY in row:
        feats[F.TIMESTAMP_KEY] = _value_feature("int64", row[F.TIMESTAMP_KEY])
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def decode(serialized: bytes) -> Dict[str, Any]:
    """Inverse of :func:`encode` for scalar features (strings come back as str)."""
    example = tf.train.Example.FromString(serialized)
    out: Dict[str, Any] = {}
    for name, feat in example.features.feature.items():
        kind = feat.WhichOneof("kind")
        (value,) = getattr(feat, kind).value
        if kind == "bytes_list" and not (name in F.BY_NAME and F.BY_NAME[name].kind == F.Kind.IMAGE):
            value = value.decode("utf-8")
        out[name] = value
    return out


def example_names(include_labels: bool = True) -> list:
    """Registry names a full raw example carries, in registry order."""
    return [f.name for f in F.FEATURES if include_labels or f.kind != F.Kind.LABEL]


def source_names(source: F.Source) -> list:
    """Registry names of one side table (items or users), key first."""
    key = F.ITEM_KEY if source == F.Source.ITEM else F.USER_KEY
    return [key] + [f.name for f in F.of_source(source)]
