"""Raw feature columns of many (user, item) pairs, from their users' and items' parts.

The column twin of :mod:`pipelines.pair_examples`: where that module joins
the serialized runs of a user's and an item's part into one tf.Example per
pair, this one gathers the same values into one array per raw feature for a
whole chunk of pairs, what the exported ``serving_columns`` signature takes
(``trainer.export.column_specs``): no example is built, serialized or parsed.

The values come from the row assembler, as the examples' do: a user's part
is :func:`pipelines.rows.query_row` (built once per user), an item's part its
item-table row (once per item), and a pair's own values (the history match
counts, the pair aggregates) :func:`pipelines.rows.raw_row` of that pair —
only where the registry has them. Each value is typed as ``examples.encode``
would write it (strings by ``str``, ints by ``int``, floats by ``float``), so
the two signatures read identical inputs
(``tests/pipelines/test_pair_columns.py``). The users' and the items' columns
are built once (one row per user or item) and a chunk's rows are taken from
them by index in numpy, a list feature's values by its rows' offsets. Where
the users' part is their table rows' own columns (no history, aggregates nor
pair values: :attr:`PairColumns.users_from_table`), the users' columns are
parsed from their records as columns (:meth:`PairColumns.table_users`), with
no row dict nor query row per user.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, NamedTuple, Optional, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa

from pipelines.chunk_coder import ChunkCoder
from pipelines.pair_examples import UserPart, part_names
from pipelines.parse import default_user
from pipelines.rows import raw_row
from shoprec.core import registry as F

_NUMPY = {"string": object, "int64": np.int64, "float32": np.float32}


class ColumnChunk(NamedTuple):
    """Raw feature columns of whole users' pairs: row ``k`` is (user, item, columns[.][k])."""

    user_ids: pa.Array  # string
    item_ids: pa.Array  # string
    columns: Dict[str, np.ndarray]


# Sized by its arrays' bytes where the job declares it (pipelines.chunk_coder).
beam.coders.registry.register_coder(ColumnChunk, ChunkCoder)


def _strings(values: Sequence[Any]) -> list:
    """Values as ``examples.encode`` writes a string feature: bytes kept, others ``str``."""
    return [v if type(v) is str or isinstance(v, bytes) else str(v) for v in values]


class PairColumns:
    """The raw feature columns of pairs, by parts (module docstring).

    Args:
        registry: The run's registry: its served raw features
            (``registry.example_names(include_labels=False)``).
    """

    def __init__(self, registry: F.Registry):
        self._registry = registry
        names = registry.example_names(include_labels=False)
        items, pair = part_names(registry)
        self._features = {n: registry.column(n) for n in names}
        self._dtypes = {n: _NUMPY[f.dtype] for n, f in self._features.items()}
        self._item_names = tuple(n for n in names if n in items)
        self._pair_names = tuple(n for n in names if n in pair)
        self._user_names = tuple(n for n in names if n not in items and n not in pair)
        # A query row takes these names from the user's table row (or its
        # defaults) over its history and aggregates: with no pair values to
        # compute from query rows, the user part is the users table's columns
        # (fixed-shape ones: a table row holds no lists).
        self.users_from_table = (
            not self._pair_names
            and set(self._user_names) <= set(registry.source_names(F.Source.USER))
            and not any(self._features[n].is_list for n in self._user_names))

    def _gather(self, rows: Sequence[Mapping[str, Any]],
                names: Sequence[str]) -> Dict[str, np.ndarray]:
        """Each of ``names`` over ``rows``, row ``k`` at position ``k`` (a list feature as
        its flat values and ``<name>__lengths``)."""
        out: Dict[str, np.ndarray] = {}
        for name in names:
            f, dtype = self._features[name], self._dtypes[name]
            values = [row[name] for row in rows]
            if f.is_list:
                flat = [v for row in values for v in row]
                out[name] = np.array(_strings(flat) if dtype is object else flat, dtype=dtype)
                out[name + F.LENGTHS_SUFFIX] = np.array([len(v) for v in values], np.int64)
            else:
                # Numbers convert in numpy (float(v) and int(v) alike); strings as encoded.
                out[name] = np.array(_strings(values) if dtype is object else values,
                                     dtype=dtype).reshape((len(rows),) + f.shape)
        return out

    def _take(self, columns: Mapping[str, np.ndarray], names: Sequence[str],
              index: np.ndarray) -> Dict[str, np.ndarray]:
        """Rows ``index`` of :meth:`_gather`'s ``columns``, in numpy: a list feature's
        values by its rows' offsets, not row by row in Python."""
        out: Dict[str, np.ndarray] = {}
        for name in names:
            values = columns[name]
            if self._features[name].is_list:
                lengths = columns[name + F.LENGTHS_SUFFIX]
                taken = lengths[index]
                # Value j of taken row k sits at starts[index[k]] + j; ``shift``
                # turns each taken row's first output position into its start.
                ends = np.cumsum(taken)
                shift = (np.cumsum(lengths) - lengths)[index] - (ends - taken)
                out[name] = values[np.arange(ends[-1] if len(ends) else 0)
                                   + np.repeat(shift, taken)]
                out[name + F.LENGTHS_SUFFIX] = taken
            else:
                out[name] = values[index]
        return out

    def rows(self, rows: Sequence[Mapping[str, Any]]) -> Dict[str, np.ndarray]:
        """The columns of whole raw rows (``pipelines.rows.raw_row``'s), row ``k`` at ``k``."""
        return self._gather(rows, self._user_names + self._item_names + self._pair_names)

    def items(self, rows: Sequence[Mapping[str, Any]]) -> Dict[str, np.ndarray]:
        """The item part's columns of item-table ``rows``, row ``k`` at ``k``: built once
        for all the pairs that index them."""
        return self._gather(rows, self._item_names)

    def users(self, users: Sequence[UserPart]) -> Dict[str, np.ndarray]:
        """The user part's columns of users' parts (their query rows), user ``k`` at ``k``:
        built once for all the pairs that index them."""
        return self._gather([u.query for u in users], self._user_names)

    def table_users(self, user_ids: Sequence[str],
                    records: Sequence[Optional[bytes]]) -> Dict[str, np.ndarray]:
        """:meth:`users` of ``user_ids``, straight from their users-table records.

        Only where :attr:`users_from_table`. ``records[k]`` is user k's
        serialized table row, or None (a user without one has ``default_user``'s
        values, as in its query row); the records are parsed as columns in one
        ``tf.io.parse_example`` call, with no row dict nor query row per user:
        at scale a user's dicts cost more than its share of the signature.
        """
        import tensorflow as tf

        names = self._user_names
        if not user_ids:
            return self._gather([], names)
        found = list(records)
        known = np.fromiter((r is not None for r in found), bool, len(found))
        present, missing = np.flatnonzero(known), np.flatnonzero(~known)
        parts = []
        if len(present):
            parsed = tf.io.parse_example(tf.constant([r for r in found if r is not None]),
                                         self._registry.table_spec(names))
            parts.append(self._parsed_columns(parsed))
        if len(missing):
            parts.append(self._gather([default_user(user_ids[k], self._registry)
                                       for k in missing.tolist()], names))
        columns = parts[0] if len(parts) == 1 else {
            name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        if not len(missing):  # every user has a record: the columns are in order
            return columns
        # User k sits at position[k] of the present users, then the missing.
        position = np.empty(len(user_ids), np.int64)
        position[np.concatenate([present, missing])] = np.arange(len(user_ids))
        return self._take(columns, names, position)

    def _parsed_columns(self, parsed: Mapping[str, Any]) -> Dict[str, np.ndarray]:
        """``tf.io.parse_example``'s dense tensors as :meth:`_gather` lays its columns
        out, with its types (strings decoded to ``str``, as ``examples.decode`` gives them)."""
        out: Dict[str, np.ndarray] = {}
        for name, value in parsed.items():
            values = value.numpy()
            if self._dtypes[name] is object:
                values = np.array([v.decode("utf-8") for v in values.ravel().tolist()],
                                  dtype=object).reshape(values.shape)
            out[name] = values.astype(self._dtypes[name], copy=False)
        return out

    def columns(self, users: Sequence[UserPart], user_index: Sequence[int],
                items: Mapping[str, np.ndarray], item_rows: Sequence[Mapping[str, Any]],
                item_ids: Sequence[str], item_index: Sequence[int],
                user_columns: Optional[Mapping[str, np.ndarray]] = None
                ) -> Dict[str, np.ndarray]:
        """The columns of pairs (``users[user_index[k]]``, item ``item_index[k]``).

        Args:
            users: The users' parts (``PairExamples.user``: query row included).
            user_index: Per pair, its user's position in ``users``.
            items: :meth:`items` of ``item_rows``.
            item_rows: Item-table rows.
            item_ids: Their ids (the item key of each row).
            item_index: Per pair, its item's position in ``item_rows``.
            user_columns: :meth:`users` of ``users`` when the caller has it
                (many chunks of the same users); None: built here.
        """
        user_index = np.asarray(user_index, np.int64)
        item_index = np.asarray(item_index, np.int64)
        if user_columns is None:
            user_columns = self.users(users)
        out = self._take(user_columns, self._user_names, user_index)
        out.update(self._take(items, self._item_names, item_index))
        if self._pair_names:
            rows = [raw_row({F.USER_KEY: users[u].user_id, F.ITEM_KEY: item_ids[i]},
                            users[u].user, item_rows[i], users[u].history, self._registry,
                            users[u].query)
                    for u, i in zip(user_index.tolist(), item_index.tolist())]
            out.update(self._gather(rows, self._pair_names))
        return out


def concat(chunks: Sequence[ColumnChunk]) -> Dict[str, np.ndarray]:
    """Several chunks' columns as one batch (list features' values and lengths alike)."""
    if len(chunks) == 1:
        return chunks[0].columns
    return {name: np.concatenate([c.columns[name] for c in chunks])
            for name in chunks[0].columns}


def column_bytes(chunks: Sequence[ColumnChunk]) -> int:
    """A batch's size for Beam's batching: its columns' array bytes."""
    return sum(sum(a.nbytes for a in c.columns.values()) for c in chunks)
