"""Exact retrieval: top_n against a NumPy brute force, in blocks, with ties and exclusions."""

import numpy as np
import pytest

from pipelines import candidates


def _brute_force(queries, items, n, excluded):
    scores = queries @ items.T
    out_scores, out_index = [], []
    for q, row in enumerate(scores):
        allowed = [i for i in range(len(items)) if i not in set(excluded[q])]
        # Best first; equal scores: the lower index first.
        order = sorted(allowed, key=lambda i: (-row[i], i))[:n]
        out_index.append(order)
        out_scores.append(row[order])
    return np.array(out_scores, np.float32), np.array(out_index)


@pytest.mark.parametrize("block", [1, 7, 64, 1000])
def test_top_n_is_the_brute_force_for_any_block(block):
    rng = np.random.default_rng(3)
    # Small integer embeddings: exact float32 products and many tied scores.
    queries = rng.integers(-2, 3, (9, 4)).astype(np.float32)
    items = rng.integers(-2, 3, (50, 4)).astype(np.float32)
    excluded = [[int(i) for i in rng.choice(50, 5, replace=False)] for _ in range(9)]
    scores, index = candidates.top_n(queries, items, 12, excluded, block=block)
    expected_scores, expected_index = _brute_force(queries, items, 12, excluded)
    np.testing.assert_array_equal(index, expected_index)
    np.testing.assert_array_equal(scores, expected_scores)


def test_too_few_items_left_are_marked_minus_one():
    queries = np.ones((1, 2), np.float32)
    items = np.array([[1, 0], [2, 0], [3, 0]], np.float32)
    scores, index = candidates.top_n(queries, items, 3, [[2, 0]])
    assert index.tolist() == [[1, -1, -1]]
    assert scores[0, 0] == 2.0 and np.isneginf(scores[0, 1:]).all()


def test_the_catalogue_is_sorted_and_its_limit_is_named():
    cat = candidates.catalogue([("b", np.array([1.0, 0.0])), ("a", np.array([0.0, 1.0]))], 2)
    assert cat.ids == ("a", "b")
    np.testing.assert_array_equal(cat.vectors, [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="recommend.max_catalogue_items is 1"):
        candidates.catalogue([("a", np.zeros(2)), ("b", np.zeros(2))], 1)
