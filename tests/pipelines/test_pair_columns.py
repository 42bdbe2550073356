"""Columns gathered from user and item parts are the raw features of the row assembler's
examples.

For every pair of the small shop of ``test_pair_examples.py`` (history lists,
counts and match counts, a user x category aggregate, known and unknown users,
with and without a history), the columns, turned into features the way the
``serving_columns`` signature does, equal ``tf.io.parse_example`` of the
assembled examples, value for value.
"""

import itertools

import numpy as np
import tensorflow as tf

from pipelines import examples
from pipelines.pair_columns import ColumnChunk, PairColumns, concat
from pipelines.pair_examples import PairExamples, UserPart
from pipelines.rows import query_row
from shoprec.core import generated_shop
from shoprec.core import registry as F
from tests.pipelines.test_pair_examples import HISTORY, ITEMS, REGISTRY, USERS
from trainer import export


def _features(tensors):
    """Dense values, a sparse list as its per-row lists of values."""
    out = {}
    for name, value in tensors.items():
        if isinstance(value, tf.SparseTensor):
            dense = tf.RaggedTensor.from_sparse(value).to_list()
            out[name] = [[v.decode() if isinstance(v, bytes) else v for v in row]
                         for row in dense]
        else:
            out[name] = [v.decode() if isinstance(v, bytes) else v
                         for v in value.numpy().tolist()]
    return out


def test_every_pairs_columns_are_its_examples_features():
    users = ["u1", "u2", "u3", "u4"]
    pairs = list(itertools.product(range(len(users)), range(len(ITEMS))))
    assemble, gather = PairExamples(REGISTRY), PairColumns(REGISTRY)
    parts = [assemble.user(u, USERS.get(u), HISTORY.get(u)) for u in users]
    catalogue = [(item["item_id"], item, assemble.item(item)) for item in ITEMS]
    user_index = [u for u, _ in pairs]
    item_index = [i for _, i in pairs]
    serialized = assemble.examples(parts, user_index, catalogue, item_index)
    columns = gather.columns(parts, user_index, gather.items(ITEMS), ITEMS,
                             [item["item_id"] for item in ITEMS], item_index)
    spec = REGISTRY.raw_feature_spec(include_labels=False)
    # One tensor per served raw feature (a list as its values and lengths), and
    # nothing else: what the signature's inputs name.
    assert sorted(columns) == sorted(s.name for s in export.column_specs(REGISTRY))
    parsed = _features(tf.io.parse_example(tf.constant(serialized), spec))
    fed = _features(export.column_features(
        {name: tf.constant(value) for name, value in columns.items()}, REGISTRY))
    assert parsed.keys() == fed.keys()
    for name in parsed:
        if name == "item_image_embedding":
            np.testing.assert_allclose(fed[name], parsed[name])
        else:
            assert fed[name] == parsed[name], name
    # The history lists and match counts really vary across the pairs.
    assert len({tuple(row) for row in fed["hist_items"]}) == 3
    assert set(fed["hist_category_matches"]) == {0.0, 1.0, 2.0}


def test_chunks_concatenate_into_one_batch():
    gather, assemble = PairColumns(REGISTRY), PairExamples(REGISTRY)
    parts = [assemble.user(u, USERS.get(u), HISTORY.get(u)) for u in ("u1", "u2")]
    ids = [item["item_id"] for item in ITEMS]
    items = gather.items(ITEMS)
    one = gather.columns(parts, [0, 0], items, ITEMS, ids, [0, 1])
    two = gather.columns(parts, [1], items, ITEMS, ids, [2])
    both = gather.columns(parts, [0, 0, 1], items, ITEMS, ids, [0, 1, 2])
    batch = concat([ColumnChunk(None, None, one), ColumnChunk(None, None, two)])
    assert batch.keys() == both.keys()
    for name in both:
        np.testing.assert_array_equal(batch[name], both[name])
    # u1's three history items twice, then u2's one.
    assert batch["hist_items__lengths"].tolist() == [3, 3, 1]


def test_rows_taken_in_any_order_keep_each_users_lists():
    # The users' columns are built once and taken by index in numpy: repeated,
    # out of order, a user without a history (empty lists) between the others.
    gather, assemble = PairColumns(REGISTRY), PairExamples(REGISTRY)
    users = ["u1", "u2", "u3", "u4"]
    parts = [assemble.user(u, USERS.get(u), HISTORY.get(u)) for u in users]
    index = [2, 0, 2, 3, 1, 0, 3]
    ids = [item["item_id"] for item in ITEMS]
    columns = gather.columns(parts, index, gather.items(ITEMS), ITEMS, ids, [0] * len(index))
    lengths = columns["hist_items__lengths"]
    ends = np.cumsum(lengths)
    lists = [columns["hist_items"][end - n:end].tolist() for n, end in zip(lengths, ends)]
    assert lists == [parts[k].query["hist_items"] for k in index]
    assert columns["user_id"].tolist() == [users[k] for k in index]
    # Lists of several items and empty ones (a user without a history) alike.
    assert 0 in lengths.tolist() and max(lengths.tolist()) > 1


def test_users_parsed_from_their_records_are_their_query_rows_columns():
    # Without history features the user part is the users table's own columns:
    # parsed from the records, they equal the query rows' columns, value and
    # type, for users with a record and without one (defaults), in any order.
    registry = generated_shop.REGISTRY
    gather = PairColumns(registry)
    assert gather.users_from_table and not PairColumns(REGISTRY).users_from_table
    names = registry.source_names(F.Source.USER)
    records = {u: examples.encode(row, names, registry) for u, row in USERS.items()}
    users = ["u3", "u2", "u1", "u4", "u1"]
    parts = [UserPart(u, USERS.get(u), None, query_row(u, USERS.get(u), None, registry), ())
             for u in users]
    expected = gather.users(parts)
    got = gather.table_users(users, [records.get(u) for u in users])
    assert got.keys() == expected.keys() == {"user_id", "user_age", "user_region",
                                             "user_membership"}
    for name in expected:
        assert got[name].dtype == expected[name].dtype, name
        assert got[name].tolist() == expected[name].tolist(), name
    assert got["user_region"].tolist()[:3] == ["south", parts[1].query["user_region"], "north"]
    assert got["user_age"].tolist()[2] == 30.0
    assert all(type(v) is str for v in got["user_membership"].tolist())
    # Every user with a record: the parsed columns as they are.
    both = gather.table_users(["u3", "u1"], [records["u3"], records["u1"]])
    assert {n: v.tolist() for n, v in both.items()} == {
        n: v.tolist() for n, v in gather.users([parts[0], parts[2]]).items()}
