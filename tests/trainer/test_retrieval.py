"""trainer.retrieval: the in-batch softmax loss against a numpy re-derivation."""

import numpy as np
import pytest
import tensorflow as tf

from shoprec.core.model_config import RetrievalConfig
from trainer import retrieval

TEMPERATURE = 0.5


def _towers(correction: bool) -> retrieval.TwoTower:
    config = RetrievalConfig(enabled=True, embedding_dim=2, tower_units=(),
                             temperature=TEMPERATURE, sampling_bias_correction=correction)
    layer = retrieval.TwoTower(config, ["u"], ["i"], num_candidates=3)
    parts = {"u": tf.ones([1, 2]), "i": tf.ones([1, 2])}
    layer.query_embedding(parts), layer.candidate_embedding(parts)
    # Identity towers: embeddings are the normalised inputs.
    for tower in (layer.query_tower, layer.candidate_tower):
        tower.set_weights([np.eye(2, dtype=np.float32), np.zeros(2, np.float32)])
    return layer


U = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
I = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
IDS = np.array([0, 0, 2])
POSITIVE = np.array([1.0, 1.0, 0.0], np.float32)
Q = np.array([0.5, 0.1, 0.25], np.float32)


def _expected(correction: bool) -> np.ndarray:
    q = U / np.linalg.norm(U, axis=1, keepdims=True)
    c = I / np.linalg.norm(I, axis=1, keepdims=True)
    logits = q @ c.T / TEMPERATURE
    if correction:
        logits = logits - np.log(Q[IDS])[None, :]
    for r in range(3):
        for col in range(3):
            # Rows 0 and 1 share item 0: each is masked as the other's negative.
            if col != r and IDS[col] == IDS[r]:
                logits[r, col] = -np.inf
    log_softmax = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    return -np.diag(log_softmax) * POSITIVE


@pytest.mark.parametrize("correction", [False, True])
def test_loss_is_in_batch_softmax_with_corrections(correction):
    layer = _towers(correction)
    layer.set_candidate_probabilities(Q)
    loss = layer.per_example_loss({"u": tf.constant(U), "i": tf.constant(I)},
                                  tf.constant(POSITIVE), tf.constant(IDS))
    np.testing.assert_allclose(loss.numpy(), _expected(correction), rtol=1e-5, atol=1e-6)
    assert loss.numpy()[2] == 0.0  # not a positive pair: only a candidate


def test_embeddings_are_unit_norm_and_missing_features_fail():
    layer = _towers(False)
    emb = layer.query_embedding({"u": tf.constant(U)})
    np.testing.assert_allclose(np.linalg.norm(emb.numpy(), axis=1), 1.0, rtol=1e-6)
    with pytest.raises(KeyError, match="'u'"):
        layer.query_embedding({"i": tf.constant(I)})


def test_candidate_probabilities_are_smoothed_batch_shares():
    # Counts (3, 0, 1) + 1 = (4, 1, 2) of 7; a batch of 2 draws each 2 x share.
    q = retrieval.candidate_probabilities([0, 0, 0, 2], 3, batch_size=2)
    np.testing.assert_allclose(q, [1.0, 2 / 7, 4 / 7], rtol=1e-6)


def test_catalogue_keeps_first_occurrence_sorted_by_id():
    ids, emb = retrieval.catalogue([5, 2, 5, 9], np.arange(8).reshape(4, 2))
    assert ids.tolist() == [2, 5, 9]
    assert emb.tolist() == [[2, 3], [0, 1], [6, 7]]
