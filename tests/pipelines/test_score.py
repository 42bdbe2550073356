"""The Score composite on rows made by hand: join, one signature call per batch, rank.

The model is a toy SavedModel whose serving signature reads the raw
examples' ``item_price`` (p_click = price / 100) and ``user_age``
(p_conversion = age / 1000), so every score and rank below is worked out by
hand. The pairs and side tables come from ``beam.Create``: no input files
(but for :class:`score.ReadPairs`, which reads a CSV file).
"""

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import tensorflow as tf
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import pair_join, score
from pipelines.options import pipeline_options
from shoprec.core import generated_shop as shop
from shoprec.core.model_config import TaskConfig

R = shop.REGISTRY
WIDTH = R.embedding_feature().width
TASKS = (TaskConfig("click", "click"), TaskConfig("conversion", "conversion"))


class _Toy(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, examples):
        parsed = tf.io.parse_example(examples, {
            "item_price": tf.io.FixedLenFeature([], tf.float32),
            "user_age": tf.io.FixedLenFeature([], tf.float32)})
        return {"p_click": parsed["item_price"] / 100.0,
                "p_conversion": parsed["user_age"] / 1000.0}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("toy") / "model")
    toy = _Toy()
    tf.saved_model.save(toy, path, signatures={"serving_default": toy.serve})
    return path


def _item(item_id, price):
    return item_id, {"item_id": item_id, "item_category": "c", "item_brand": "b",
                     "item_colour": "red", "item_price": price,
                     "item_image_embedding": [0.0] * WIDTH, "item_has_image": 0}


def _rounded(row):
    return dict(row, p_click=round(row["p_click"], 5), p_conversion=round(row["p_conversion"], 5))


def _rows(tables):
    """Score's tables as rows (one dict per scored pair)."""
    return tables | "Rows" >> beam.FlatMap(lambda table: table.to_pylist())


@pytest.mark.parametrize("buckets", [1, 3])
def test_scores_and_ranks_within_user(model_dir, buckets):
    users = [{"user_id": "u1", "user_age": 40.0, "user_region": "north",
              "user_membership": "gold"}]
    items = [_item("i1", 10.0), _item("i2", 30.0), _item("i3", 20.0)]
    pairs = [("u1", "i1"), ("u1", "i2"), ("u1", "i3"), ("u2", "i1"), ("u2", "i9")]
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        # Two tables: one user's pairs arrive in both.
        scored = (p
                  | "Pairs" >> beam.Create([pair_join.pairs_table(pairs[:2]),
                                            pair_join.pairs_table(pairs[2:])])
                  | score.Score(model_dir, R, TASKS, {}, "p_click", batch_size=2,
                                users=p | "Users" >> beam.Create(
                                    [pair_join.records(users, "user_id", R)]),
                                items=p | "Items" >> beam.Create(items), buckets=buckets))
        # u1 (age 40): i2 (0.30) > i3 (0.20) > i1 (0.10). u2 is not in the users
        # table: the registry's default age 35; i9 is not in the catalogue.
        assert_that(_rows(scored.main) | beam.Map(_rounded), equal_to([
            {"user_id": "u1", "item_id": "i2", "p_click": 0.3, "p_conversion": 0.04, "rank": 1},
            {"user_id": "u1", "item_id": "i3", "p_click": 0.2, "p_conversion": 0.04, "rank": 2},
            {"user_id": "u1", "item_id": "i1", "p_click": 0.1, "p_conversion": 0.04, "rank": 3},
            {"user_id": "u2", "item_id": "i1", "p_click": 0.1, "p_conversion": 0.035,
             "rank": 1}]), label="Scores")
        assert_that(scored.dead_letter | beam.Map(lambda d: (d.input, d.reason, d.record)),
                    equal_to([("pairs", "unknown_item", "u2,i9")]), label="DeadLetters")


def test_ties_rank_by_item_id(model_dir):
    items = [_item("b", 10.0), _item("a", 10.0)]
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        scored = (p
                  | "Pairs" >> beam.Create([pair_join.pairs_table([("u", "b"), ("u", "a")])])
                  | score.Score(model_dir, R, TASKS, {}, "p_click", batch_size=64,
                                users=p | "Users" >> beam.Create([]),
                                items=p | "Items" >> beam.Create(items)))
        assert_that(_rows(scored.main) | beam.Map(lambda r: (r["item_id"], r["rank"])),
                    equal_to([("a", 1), ("b", 2)]))


def test_read_pairs_parses_blocks_and_dead_letters_bad_records(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text('user_id,item_id\nu1,i1\n u2 ,i2\r\nonly-one-field\n"u,3",i3\n'
                    'u4,\na,b,c\nu5,i5\n')
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        read = p | score.ReadPairs(str(tmp_path / "*.csv"))
        assert_that(_rows(read.pairs), equal_to([
            {"user_id": "u1", "item_id": "i1"}, {"user_id": "u2", "item_id": "i2"},
            {"user_id": "u,3", "item_id": "i3"}, {"user_id": "u5", "item_id": "i5"}]),
            label="Pairs")
        assert_that(read[score.dead_letter.DEAD_LETTER_TAG]
                    | beam.Map(lambda d: (d.reason, d.record)),
                    equal_to([("bad_pair", "only-one-field"), ("bad_pair", "u4,"),
                              ("bad_pair", "a,b,c")]), label="DeadLetters")


def test_a_multiclass_task_has_probabilities_best_class_and_name():
    task = TaskConfig("colour", "item_colour", type="multiclass")
    # Three classes: the vocabulary has two tokens, index 2 is its OOV bucket;
    # row 2 ties classes 0 and 1: the lower index, as numpy.argmax.
    probabilities = [[0.1, 0.7, 0.2], [0.2, 0.1, 0.7], [0.4, 0.4, 0.2]]
    lists, best, names = score._task_columns(task, probabilities, ["red", "blue"])
    np.testing.assert_allclose(lists.to_pylist(), probabilities)
    assert best.type == pa.int32() and best.to_pylist() == [1, 2, 0]
    assert names.to_pylist() == ["blue", None, "red"]


def test_ranked_order_is_arrows_three_key_sort():
    # Ties in score (within and across users), a NaN, -0.0 against 0.0, a
    # repeated pair (stable order), ids unordered and non-ASCII: the lexsort
    # over ranks gives the row order Arrow's sort_indices gives.
    users = pa.array(["u2", "ü", "u10", "u2", "u2", "u10", "ü", "u2", "u2"])
    items = pa.array(["b", "a", "c", "a", "c", "a", "b", "d", "a"])
    scores = np.array([0.5, 0.1, 0.0, 0.5, np.nan, -0.0, 0.1, 0.9, 0.5], np.float32)
    table = pa.table({"u": users, "s": scores, "i": items})
    expected = pc.sort_indices(table, [("u", "ascending"), ("s", "descending"),
                                       ("i", "ascending")]).to_pylist()
    # By hand: u10 (0.0 c and -0.0 a tie: a, c), u2 (0.9 d; 0.5 a twice in
    # input order, then b; NaN last), ü (0.1 a, b).
    assert expected == [5, 2, 7, 3, 8, 0, 4, 1, 6]
    order, user_ranks = score.ranked_order(users, scores, items)
    assert order.tolist() == expected
    assert user_ranks.tolist() == [0, 0, 1, 1, 1, 1, 1, 2, 2]


def test_ranked_order_of_many_distinct_ids_is_the_two_key_sorts():
    # 2**15 distinct users and items need 30 bits of ranks beside the score's
    # 33: the order then comes from numpy.lexsort, not the one-key sort, and
    # is Arrow's all the same.
    n = 1 << 15
    rng = np.random.default_rng(7)
    users = pa.array([f"u{k:05d}" for k in rng.permutation(n)] + ["u00001"] * 8)
    items = pa.array([f"i{k:05d}" for k in rng.permutation(n)] + ["i2", "i1"] * 4)
    scores = rng.integers(0, 4, n + 8).astype(np.float32)  # many ties
    table = pa.table({"u": users, "s": scores, "i": items})
    expected = pc.sort_indices(table, [("u", "ascending"), ("s", "descending"),
                                       ("i", "ascending")]).to_numpy()
    order, _ = score.ranked_order(users, scores, items)
    np.testing.assert_array_equal(order, expected)
    # One user's nine rows: by score descending, then item id.
    one = [k for k in expected.tolist() if users[k].as_py() == "u00001"]
    assert len(one) == 9 and one == sorted(one, key=lambda k: (-scores[k], items[k].as_py()))
