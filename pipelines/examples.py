"""tf.Example encoding of the rows the stages hand each other.

Raw examples: ingest (training data) and scoring build them with
:func:`encode`, so the bytes the model sees at scoring are produced by the same
code as the bytes TFT analysed. Embedding rows: the embed stage's table of one
photo embedding per item, which ingest joins by item id.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import tensorflow as tf
from google.protobuf.message import DecodeError

from shoprec.core import registry as F


# Columns of the embed stage's table (TFRecord and Parquet alike).
EMBED_ITEM_ID, EMBED_VECTOR, EMBED_HAS_IMAGE = "item_id", "embedding", "has_image"


def _value_feature(feature_dtype: str, value: Any) -> tf.train.Feature:
    if isinstance(value, (list, tuple)):
        return _list_feature(feature_dtype, value)
    if feature_dtype == "string":
        data = value if isinstance(value, bytes) else str(value).encode("utf-8")
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))
    if feature_dtype == "int64":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))


def _list_feature(feature_dtype: str, values) -> tf.train.Feature:
    if feature_dtype == "string":
        data = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values]
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=data))
    if feature_dtype == "int64":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def encode(row: Mapping[str, Any], names: Iterable[str], registry: F.Registry) -> bytes:
    """Serializes ``row[name]`` for each registry feature name (plus metadata).

    Args:
        row: Values keyed by registry feature name (a list for a list
            feature); the registry's timestamp and sampled keys are written
            too when present.
        names: Registry feature names to write; each must be in ``row``.
        registry: The registry the names belong to.

    Raises:
        KeyError: a named feature is missing from ``row``.
    """
    feats: Dict[str, tf.train.Feature] = {}
    for name in names:
        feature = registry.column(name)
        value = row[name]
        feats[name] = (_list_feature(feature.dtype, value) if feature.is_list or feature.shape
                       else _value_feature(feature.dtype, value))
    for meta in (registry.timestamp_key, registry.sampled_key):
        if meta in row:
            feats[meta] = _value_feature("int64", row[meta])
    # Deterministic: map entries in key order, so the same row is the same bytes
    # whichever stage built it (ingest and scoring are compared byte for byte).
    example = tf.train.Example(features=tf.train.Features(feature=feats))
    return example.SerializeToString(deterministic=True)


_ONE_BYTE = [bytes((i,)) for i in range(0x80)]


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _ONE_BYTE[n]  # field lengths, mostly
    out = []
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class Encoder:
    """:func:`encode`'s exact bytes, with each (feature, value) serialized once and reused.

    A serialized ``Example`` is its ``Features`` message's length-prefixed
    bytes, and those are the map's entries one after the other, in key order
    when deterministic. Each entry depends on its own (name, value) only, so
    the entries are cached and a row's example is a join of cached bytes: a
    candidate's item attributes, embedding and user side repeat across the
    rows of a batch, and are serialized once per worker instead of per row.

    Args:
        names: As :func:`encode`.
        registry: As :func:`encode`.
        max_entries: The cache is emptied when it grows past this many entries.
    """

    def __init__(self, names: Iterable[str], registry: F.Registry, max_entries: int = 500_000):
        self._names = tuple(sorted(set(names)))
        self._registry = registry
        self._meta = tuple(m for m in (registry.timestamp_key, registry.sampled_key) if m)
        self._cache: Dict[Any, bytes] = {}
        self._max = int(max_entries)

    def _entry(self, name: str, meta: bool, value: Any) -> bytes:
        spec = None if meta else self._registry.column(name)
        if spec is not None and spec.dtype == "string" and not (spec.is_list or spec.shape) \
                and isinstance(value, str):
            return _string_entry(name, value)
        if self.int_scalar(name, meta) and type(value) is int and 0 <= value < INT_LIMIT:
            return int_entry(name, value)
        if meta:
            feature = _value_feature("int64", value)
        else:
            feature = (_list_feature(spec.dtype, value) if spec.is_list or spec.shape
                       else _value_feature(spec.dtype, value))
        return tf.train.Features(feature={name: feature}).SerializeToString(deterministic=True)

    def __call__(self, row: Mapping[str, Any]) -> bytes:
        """The serialized example of ``row`` (as :func:`encode`).

        Raises:
            KeyError: a named feature is missing from ``row``.
        """
        metas = [m for m in self._meta if m in row]
        keys = sorted(set(self._names) | set(metas)) if metas else self._names
        return framed(self.entries(row, keys, metas))

    def entries(self, row: Mapping[str, Any], names: Iterable[str],
                metas: Iterable[str] = ()) -> bytes:
        """The map entries of ``names`` (in the order given), the body of a serialized example.

        :func:`framed` of all of a row's entries in key order is its example;
        a caller that knows which entries repeat (a user's across their
        candidates) joins cached bodies instead of encoding whole rows.

        Args:
            row: As :func:`encode`.
            names: Registry feature names, each in ``row``.
            metas: Those of ``names`` that are metadata keys (int64).

        Raises:
            KeyError: a named feature is missing from ``row``.
        """
        if len(self._cache) > self._max:
            self._cache.clear()
        return b"".join([self.cached_entry(name, name in metas, row[name]) for name in names])

    def int_scalar(self, name: str, meta: bool) -> bool:
        """Whether ``name`` (``meta``: a metadata key) is written as one int64, so that
        :func:`int_entry` of a non-negative int is its entry."""
        if meta:
            return True
        spec = self._registry.column(name)
        return spec.dtype == "int64" and not (spec.is_list or spec.shape)

    def cached_entry(self, name: str, meta: bool, value: Any) -> bytes:
        """The map entry of ``name`` = ``value`` (``meta``: a metadata key), from the cache."""
        # The key holds the value's type: 1, 1.0 and True are equal keys but
        # not the same string feature.
        hashable = tuple(value) if isinstance(value, (list, tuple)) else value
        key = (name, meta, type(value), hashable)
        entry = self._cache.get(key)
        if entry is None:
            if isinstance(value, (list, tuple)) and any(
                    type(v) is not type(value[0]) for v in value):
                return self._entry(name, meta, value)  # mixed types: not cached
            entry = self._cache[key] = self._entry(name, meta, value)
        return entry


def _field(tag: bytes, data: bytes) -> bytes:
    n = len(data)
    return tag + (_ONE_BYTE[n] if n < 0x80 else _varint(n)) + data


def _string_entry(name: str, value: str) -> bytes:
    """A ``Features`` map entry of one string, as protobuf writes it, without building protos.

    Ids are the values that repeat least (a user's id is in only their
    rows), so their entries are the ones the cache misses most; the wire
    format of one string is short: the map entry (field 1) holds the key
    (field 1) and the ``Feature`` (field 2), whose ``bytes_list`` (field 1)
    holds the value (field 1). The encoder tests hold it to ``encode``.
    """
    feature = _field(b"\n", _field(b"\n", value.encode("utf-8")))
    return _field(b"\n", _field(b"\n", name.encode("utf-8")) + _field(b"\x12", feature))


_INT_PREFIXES: Dict[Any, bytes] = {}


INT_LIMIT = 1 << 63  # int_entry writes 0 <= value < INT_LIMIT


def int_entry(name: str, value: int) -> bytes:
    """A ``Features`` map entry of one non-negative int64, as protobuf writes it.

    Timestamps are unique per row: every one is a cache miss. The
    ``Feature``'s ``int64_list`` (field 3) holds the value packed (field 1).
    """
    varint = _varint(value)
    prefix = _INT_PREFIXES.get((name, len(varint)))
    if prefix is None:
        # Every length inside depends on the varint's length only.
        feature = _field(b"\x1a", _field(b"\n", varint))
        entry = _field(b"\n", _field(b"\n", name.encode("utf-8")) + _field(b"\x12", feature))
        prefix = _INT_PREFIXES[name, len(varint)] = entry[:-len(varint)]
    return prefix + varint


def head(size: int) -> bytes:
    """The first bytes of a serialized example of ``size`` bytes of entries: tag and length."""
    return b"\n" + _varint(size)


def framed(body: bytes) -> bytes:
    """A serialized example from its map entries (:meth:`Encoder.entries`, in key order)."""
    return head(len(body)) + body


def decode(serialized: bytes, registry: F.Registry,
           names: Optional[Iterable[str]] = None) -> Dict[str, Any]:
    """Inverse of :func:`encode` (strings come back as str, list features as lists).

    Args:
        serialized: A serialized example.
        registry: Its registry.
        names: Decode only these features (those present); None: all.
    """
    example = tf.train.Example.FromString(serialized)
    out: Dict[str, Any] = {}
    features = example.features.feature
    pairs = (features.items() if names is None
             else [(n, features[n]) for n in names if n in features])
    for name, feat in pairs:
        kind = feat.WhichOneof("kind")
        feature = registry.by_name.get(name)  # a state column: a string, like an unknown
        values = list(getattr(feat, kind).value) if kind else []
        if kind == "bytes_list":
            values = [v.decode("utf-8") for v in values]
        vector = feature is not None and (feature.is_list or feature.shape)
        out[name] = values if vector else values[0]
    return out


def decode_many(serialized: Sequence[bytes], registry: F.Registry,
                names: Iterable[str]) -> List[Dict[str, Any]]:
    """``[decode(s, registry) for s in serialized]``, parsed in one ``tf.io.parse_example`` call.

    For a table's records, each of which holds every one of ``names`` (the
    names its writer encoded); the same values and types as :func:`decode`.

    Raises:
        tf.errors.InvalidArgumentError: a record lacks a name or is no example.
    """
    names = list(names)
    if not serialized:
        return []
    parsed = tf.io.parse_example(tf.constant(list(serialized)), registry.table_spec(names))
    columns = []
    for name in names:
        feature, value = registry.column(name), parsed[name]
        if isinstance(value, tf.SparseTensor):
            value = tf.RaggedTensor.from_sparse(value).to_list()
        else:
            value = value.numpy().tolist()
        if feature.dtype == "string":
            value = ([[v.decode("utf-8") for v in values] for values in value]
                     if feature.is_list or feature.shape else [v.decode("utf-8") for v in value])
        columns.append(value)
    return [dict(zip(names, row)) for row in zip(*columns)]


def encode_embedding(row: Mapping[str, Any]) -> bytes:
    """One row of the embed stage's table (item id, embedding, has_image) as a tf.Example."""
    feature = {EMBED_ITEM_ID: _value_feature("string", row[EMBED_ITEM_ID]),
               EMBED_VECTOR: _list_feature("float32", row[EMBED_VECTOR]),
               EMBED_HAS_IMAGE: _value_feature("int64", row[EMBED_HAS_IMAGE])}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def decode_embedding(serialized: bytes) -> Dict[str, Any]:
    """Inverse of :func:`encode_embedding`.

    Raises:
        KeyError: a column is missing. ValueError: the bytes are not a tf.Example.
    """
    try:
        feature = tf.train.Example.FromString(serialized).features.feature
    except DecodeError as err:
        raise ValueError(str(err)) from err
    for name in (EMBED_ITEM_ID, EMBED_VECTOR, EMBED_HAS_IMAGE):
        if name not in feature:
            raise KeyError(name)
    return {EMBED_ITEM_ID: feature[EMBED_ITEM_ID].bytes_list.value[0].decode("utf-8"),
            EMBED_VECTOR: list(feature[EMBED_VECTOR].float_list.value),
            EMBED_HAS_IMAGE: int(feature[EMBED_HAS_IMAGE].int64_list.value[0])}


def read_table(pattern: str, registry: F.Registry) -> List[Dict[str, Any]]:
    """Every row of gzip TFRecord shards of raw examples, decoded, in memory.

    For tables that fit in memory (ingest's item, user and history tables);
    a Beam job reads them with ``pipelines.score.ReadSideTable`` instead.
    """
    files = tf.io.gfile.glob(pattern)
    return [decode(r.numpy(), registry)
            for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
