"""Pairs joined with their users by key, in hash buckets of the user id, into raw examples.

Scoring ranks (user, item) pairs with the user's row and history and the
item's row. Per-element overhead, not the work, dominates a Beam job of small
rows, so nothing here moves one element per pair or per user: pairs travel
as Arrow tables, the users and history tables as Arrow tables of (user id,
serialized example) records read a file batch at a time, and both are split
into ``buckets`` hash buckets of the user id (:func:`bucket_of`) and joined
by bucket (CoGroupByKey). A worker holds one bucket's users and pairs at a
time, never the users table; the bucket count grows with the inputs' size
(:func:`join_buckets`). Within a bucket, the rows of the users with pairs
are decoded in one ``tf.io.parse_example`` call, and each pair's example is
assembled from the user's and the item's parts (:mod:`pipelines.pair_examples`),
byte for byte the row assembler's.
"""

from __future__ import annotations

import contextlib
import gc
import zlib
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io import fileio

from pipelines import dead_letter, examples
from pipelines.chunk_coder import ChunkCoder
from pipelines.pair_columns import ColumnChunk, PairColumns
from pipelines.pair_examples import PairExamples, UserPart
from pipelines.rows import query_row
from shoprec.core import registry as F

# A table of pairs: what ReadPairs yields and the join reads.
PAIRS_SCHEMA = pa.schema([("user_id", pa.string()), ("item_id", pa.string())])
# Stored bytes of the joined inputs (pairs, users, history) per bucket.
BUCKET_BYTES = 32 << 20
# TFRecords per read batch of a side table.
READ_BATCH = 4096

# A batch of a side table's records: (user id, serialized example of its table row).
RECORDS_SCHEMA = pa.schema([("user_id", pa.string()), ("record", pa.binary())])


class ExampleChunk(NamedTuple):
    """Raw examples of whole users: row ``k`` is (user, item, example)."""

    user_ids: pa.Array  # string
    item_ids: pa.Array  # string
    examples: List[bytes]


# Sized by its bytes where the job declares it (pipelines.chunk_coder).
beam.coders.registry.register_coder(ExampleChunk, ChunkCoder)


def pairs_table(pairs: Sequence[Tuple[str, str]]) -> pa.Table:
    """(user_id, item_id) pairs as a table of :data:`PAIRS_SCHEMA`."""
    return pa.table({"user_id": pa.array([u for u, _ in pairs], pa.string()),
                     "item_id": pa.array([i for _, i in pairs], pa.string())},
                    schema=PAIRS_SCHEMA)


def records(rows: Sequence[Mapping[str, Any]], key: str, registry: F.Registry) -> pa.Table:
    """Table rows as the records the join reads (:data:`RECORDS_SCHEMA`): (``row[key]``,
    the row's example)."""
    return pa.table([pa.array([row[key] for row in rows], pa.string()),
                     pa.array([examples.encode(row, list(row), registry) for row in rows],
                              pa.binary())], schema=RECORDS_SCHEMA)


def record_lookup(tables: Sequence[pa.Table], user_ids: pa.Array) -> List[Optional[bytes]]:
    """Each of ``user_ids``' record in ``tables`` (:data:`RECORDS_SCHEMA`), or None.

    Looked up in Arrow (``index_in``), not through a dict of every record; an
    id the tables hold twice gets its last record, as a dict built in order would.
    """
    ids, records = (pa.chunked_array([c for t in tables for c in t.column(name).chunks],
                                     RECORDS_SCHEMA.field(name).type).combine_chunks()
                    for name in RECORDS_SCHEMA.names)
    # index_in finds an id's first position: among the ids last first, its last.
    from_last = pc.index_in(user_ids, value_set=ids.take(pa.array(
        np.arange(len(ids) - 1, -1, -1))))
    return records.take(pc.subtract(pa.scalar(len(ids) - 1, from_last.type),
                                    from_last)).to_pylist()


def bucket_of(user_id: str, buckets: int) -> int:
    """The join bucket of a user: a CRC-32 of the id, the same in every process."""
    return zlib.crc32(user_id.encode("utf-8")) % buckets if buckets > 1 else 0


def join_buckets(patterns: Sequence[str], bucket_bytes: int = BUCKET_BYTES) -> int:
    """Buckets for the join: one per ``bucket_bytes`` of the joined inputs' stored files."""
    import tensorflow as tf

    size = sum(tf.io.gfile.stat(path).length for pattern in patterns
               for path in tf.io.gfile.glob(pattern))
    return max(1, -(-size // bucket_bytes))


class ReadRecords(beam.PTransform):
    """TFRecord files of an ingest table → tables of :data:`RECORDS_SCHEMA`, one per read batch.

    The records are read by TensorFlow (``.gz`` files as GZIP) and only the
    ``key`` feature is parsed here; a row is decoded where it is used.
    """

    def __init__(self, pattern: str, key: str):
        super().__init__()
        self._pattern = pattern
        self._key = key

    def expand(self, pbegin):
        return (pbegin
                | "Match" >> fileio.MatchFiles(self._pattern)
                | "Read" >> beam.FlatMap(_read_records, self._key))


def _read_records(metadata, key: str):
    import tensorflow as tf

    spec = {key: tf.io.FixedLenFeature([], tf.string)}
    compression = "GZIP" if metadata.path.endswith(".gz") else ""
    for batch in tf.data.TFRecordDataset(metadata.path, compression).batch(READ_BATCH):
        ids = tf.io.parse_example(batch, spec)[key].numpy()
        # A key that is not UTF-8 fails here, as decoding it would.
        yield pa.table([pa.array(ids, pa.binary()).cast(pa.string()),
                        pa.array(batch.numpy(), pa.binary())], schema=RECORDS_SCHEMA)


def _by_bucket(table: pa.Table, buckets: int):
    """A table of pairs or records → (bucket, its rows), one table per bucket present."""
    if buckets <= 1:
        yield 0, table
        return
    users = table.column("user_id").combine_chunks().dictionary_encode()
    lookup = np.array([bucket_of(u, buckets) for u in users.dictionary.to_pylist()], np.int64)
    of_row = lookup[users.indices.to_numpy(zero_copy_only=False)]
    order = np.argsort(of_row, kind="stable")
    sorted_buckets = of_row[order]
    starts = np.flatnonzero(np.r_[True, sorted_buckets[1:] != sorted_buckets[:-1]])
    for begin, end in zip(starts, np.r_[starts[1:], len(order)]):
        yield int(sorted_buckets[begin]), table.take(pa.array(order[begin:end]))


class BuildRawExamples(beam.PTransform):
    """Joins pairs with user/item attributes and encodes raw serving examples.

    Input: tables of pairs (:data:`PAIRS_SCHEMA`). Output ``examples``:
    :class:`ExampleChunk` s of whole users, up to ``batch_size`` rows each
    (a user with more pairs alone); ``dead_letter``: the unknown items.

    The users and their history are joined by key, in ``buckets`` buckets
    (see the module docstring). The items are a side input: every worker holds
    the catalogue, as retrieval does. A pair naming an unknown item is a dead
    letter; an unknown user is scored with the registry's user defaults (a new
    user still gets recommendations). History features are the user's history
    after their last logged event (ingest's history table), empty for a user
    it does not know.

    With ``columns``, the chunks are :class:`pipelines.pair_columns.ColumnChunk` s
    of raw feature columns (for a model's ``serving_columns``) instead.

    Args:
        users: Tables of the users table's records (:class:`ReadRecords`).
        items: (item_id, item-table row), the catalogue.
        registry: The run's registry.
        history: Tables of the history table's records, or None.
        buckets: Hash buckets of the join.
        batch_size: Rows per chunk.
        columns: Build column chunks, not serialized examples.
    """

    def __init__(self, users, items, registry: F.Registry, history=None, *,
                 buckets: int = 1, batch_size: int = 1024, columns: bool = False):
        super().__init__()
        self._users = users
        self._items = items
        self._registry = registry
        self._history = history
        self._buckets = int(buckets)
        self._batch_size = int(batch_size)
        self._columns = columns

    def expand(self, pairs):
        buckets = self._buckets
        history = self._history
        if history is None:
            history = pairs.pipeline | "NoHistory" >> beam.Create([])
        return ({"pairs": pairs | "PairsByBucket" >> beam.FlatMap(_by_bucket, buckets),
                 "user": self._users | "UsersByBucket" >> beam.FlatMap(_by_bucket, buckets),
                 "history": history | "HistoryByBucket" >> beam.FlatMap(_by_bucket, buckets)}
                | "JoinUsers" >> beam.CoGroupByKey()
                | "Join" >> beam.ParDo(_JoinBucket(self._registry, self._batch_size,
                                                   self._columns),
                                       items=beam.pvalue.AsDict(self._items))
                # The chunks' type picks their coder (pipelines.chunk_coder).
                .with_output_types(ColumnChunk if self._columns else ExampleChunk)
                .with_outputs(dead_letter.DEAD_LETTER_TAG, main="examples"))


class _JoinBucket(beam.DoFn):
    """(bucket, {pairs: tables, user: record tables, history: record tables}) → example chunks."""

    def __init__(self, registry: F.Registry, batch_size: int, columns: bool = False):
        self._registry = registry
        self._batch_size = batch_size
        self._columns = columns
        self._assemble = self._gather = None
        # Per worker: each catalogue item's row and part, built on first use.
        self._item_parts: Dict[str, Tuple[Any, ...]] = {}

    def setup(self):
        self._assemble = PairExamples(self._registry)
        self._gather = PairColumns(self._registry)

    def _rows(self, records: Sequence[Optional[bytes]], user_ids: Sequence[str],
              names: Sequence[str]) -> Dict[str, Dict[str, Any]]:
        """The table rows of ``user_ids`` with a record (``records[k]``, user k's or
        None), decoded in one call."""
        found = [(u, r) for u, r in zip(user_ids, records) if r is not None]
        return dict(zip([u for u, _ in found], examples.decode_many(
            [r for _, r in found], self._registry, names)))

    def process(self, bucket_and_groups, items):
        _, groups = bucket_and_groups
        tables = list(groups["pairs"])
        if not tables:
            return
        pairs = pa.concat_tables(tables)
        user_codes = pairs.column("user_id").combine_chunks().dictionary_encode()
        # Ordered by user code (stable): each user's pairs are consecutive, and
        # the codes (first appearance) ascend with the rows.
        order = pa.array(np.argsort(user_codes.indices.to_numpy(zero_copy_only=False),
                                    kind="stable"))
        user_ids = user_codes.dictionary.take(user_codes.indices.take(order))
        item_ids = pairs.column("item_id").combine_chunks().take(order)
        item_codes = item_ids.dictionary_encode()
        user_index = user_codes.indices.take(order).to_numpy(zero_copy_only=False)
        item_index = item_codes.indices.to_numpy(zero_copy_only=False)
        catalogue = [self._item_part(i, items) for i in item_codes.dictionary.to_pylist()]
        unknown = np.array([part is None for part in catalogue], bool)
        if unknown.any():
            bad = pa.array(unknown[item_index])
            for user_id, item_id in zip(user_ids.filter(bad).to_pylist(),
                                        item_ids.filter(bad).to_pylist()):
                yield dead_letter.tagged("pairs", "unknown_item",
                                         f"item {item_id!r} not in catalogue",
                                         f"{user_id},{item_id}")
            keep = ~unknown[item_index]
            user_ids, item_ids = user_ids.filter(pa.array(keep)), item_ids.filter(pa.array(keep))
            user_index = user_index[keep]
            item_index = (np.cumsum(~unknown) - 1)[item_index[keep]]
            catalogue = [part for part in catalogue if part is not None]
        if not len(user_index):
            return
        wanted = user_codes.dictionary.to_pylist()
        users = record_lookup(list(groups["user"]), user_codes.dictionary)
        parts: Sequence[UserPart] = ()
        if self._columns and self._gather.users_from_table:
            # The users' columns straight from their records: no row per user.
            user_columns = self._gather.table_users(wanted, users)
        else:
            history = record_lookup(list(groups["history"]), user_codes.dictionary)
            parts = self._user_parts(wanted, users, history)
            if self._columns:
                user_columns = self._gather.users(parts)
        if self._columns:
            # Each user's and item's columns once for the bucket; a chunk takes its rows.
            item_rows = [row for _, row, _ in catalogue]
            item_columns = self._gather.items(item_rows)
            catalogue_ids = [item_id for item_id, _, _ in catalogue]
        # Built chunk by chunk: a bucket's pairs are held as ids, a chunk's as
        # serialized examples or columns.
        for begin, end in _chunks(np.bincount(user_index, minlength=len(wanted)),
                                  self._batch_size):
            # The chunk's users are consecutive codes: only theirs are passed on.
            # Its ids are copied out of the bucket's arrays: a slice pickles
            # (and Beam pickles a sample of elements to size them) with the
            # whole bucket's buffers.
            first, last = int(user_index[begin]), int(user_index[end - 1])
            ids = (pa.concat_arrays([user_ids.slice(begin, end - begin)]),
                   pa.concat_arrays([item_ids.slice(begin, end - begin)]))
            if self._columns:
                yield ColumnChunk(*ids, self._gather.columns(
                    parts, user_index[begin:end], item_columns, item_rows, catalogue_ids,
                    item_index[begin:end], user_columns))
            else:
                yield ExampleChunk(*ids, self._assemble.examples(
                    parts[first:last + 1], user_index[begin:end] - first, catalogue,
                    item_index[begin:end]))

    def _user_parts(self, user_ids: Sequence[str], users: Sequence[Optional[bytes]],
                    histories: Sequence[Optional[bytes]]) -> List[UserPart]:
        """Each user's part (query row; with examples, its runs), from its decoded rows
        (``users[k]`` and ``histories[k]``: user k's records or None)."""
        registry = self._registry
        with _collector_paused():
            rows = self._rows(users, user_ids, registry.source_names(F.Source.USER))
            history = self._rows(histories, user_ids, registry.history_table_names())
            if self._columns:
                return [UserPart(u, rows.get(u), history.get(u),
                                 query_row(u, rows.get(u), history.get(u), registry), ())
                        for u in user_ids]
            return [self._assemble.user(u, rows.get(u), history.get(u)) for u in user_ids]

    def _item_part(self, item_id: str, items: Mapping[str, Mapping[str, Any]]):
        """(item id, row, its part), or None for an item not in the catalogue."""
        part = self._item_parts.get(item_id)
        if part is None:
            item = items.get(item_id)
            if item is None:
                return None
            part = self._item_parts[item_id] = (item_id, item, self._assemble.item(item))
        return part


@contextlib.contextmanager
def _collector_paused():
    """Pauses Python's cyclic garbage collector while a bucket's rows are built.

    Tens of thousands of small dicts (decoded rows, query rows) would trigger
    full collections, each scanning every object of the worker (TensorFlow's
    included): in a score job at 50x the demo's pairs, a third of the join's
    CPU. The rows hold no reference cycles; the collector runs again after.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _chunks(counts: np.ndarray, batch_size: int):
    """(begin, end) row ranges of whole users (``counts`` rows each, in order), up to
    ``batch_size`` rows (a user with more alone)."""
    begin = end = 0
    for count in counts.tolist():
        if end > begin and end - begin + count > batch_size:
            yield begin, end
            begin = end
        end += count
    if end > begin:
        yield begin, end
