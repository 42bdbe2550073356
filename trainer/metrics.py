"""Evaluation metrics in numpy, exact over whole arrays (``trainer.evaluation`` applies them).

Computing them outside the distributed training loop keeps them exact:
streaming Keras AUC is approximate (thresholded) and is wrong under
MultiWorkerMirroredStrategy (tensorflow/tensorflow#48152).
"""

from __future__ import annotations

import math
from typing import Collection, Dict, Mapping, Sequence

import numpy as np

# Same clipping Keras applies, so log loss here matches training's loss.
_EPSILON = 1e-7


def auc(labels, scores) -> float:
    """Area under the ROC curve via the rank-sum (Mann-Whitney U) statistic.

    Tied scores get the average of the ranks they span, i.e. a tied
    positive/negative pair counts one half.

    Args:
        labels: 0/1 array.
        scores: Array of the same length; any monotone score works.

    Returns:
        AUC in [0, 1], or nan when only one class is present.
    """
    labels = np.asarray(labels, dtype=np.float64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    positives = labels > 0.5
    n_pos = int(positives.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # 1-based rank of each distinct score = ranks before it + mean of the ones it spans.
    average_rank = np.cumsum(counts) - counts + (counts + 1) / 2.0
    ranks = average_rank[inverse]
    rank_sum = ranks[positives].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(labels, probs) -> float:
    """Mean binary cross-entropy of probabilities (clipped away from 0 and 1).

    Returns:
        The mean loss, or nan for empty input.
    """
    labels = np.asarray(labels, dtype=np.float64).ravel()
    probs = np.clip(np.asarray(probs, dtype=np.float64).ravel(), _EPSILON, 1.0 - _EPSILON)
    if labels.shape != probs.shape:
        raise ValueError(f"labels {labels.shape} and probs {probs.shape} differ in shape")
    if labels.size == 0:
        return math.nan
    return float(-np.mean(labels * np.log(probs) + (1.0 - labels) * np.log(1.0 - probs)))


def weighted_auc(positive_weights, negative_weights, scores) -> float:
    """AUC where each example counts as a positive and as a negative with weights.

    ``sum_{i != j} w+_i w-_j H(s_i - s_j) / sum_{i != j} w+_i w-_j`` with H = 1, 1/2
    or 0 for a win, tie or loss. With 0/1 labels (``w+ = y``, ``w- = 1 - y``) it
    is :func:`auc`; with ``w+ = q``, ``w- = 1 - q`` for true probabilities ``q``
    it is the AUC expected under those probabilities (soft labels).

    Returns:
        The AUC, or nan when no pair has weight.
    """
    pos = np.asarray(positive_weights, dtype=np.float64).ravel()
    neg = np.asarray(negative_weights, dtype=np.float64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if not pos.shape == neg.shape == scores.shape:
        raise ValueError("weights and scores differ in shape")
    _, inverse = np.unique(scores, return_inverse=True)
    pos_at = np.bincount(inverse, weights=pos)  # positive weight per distinct score
    neg_at = np.bincount(inverse, weights=neg)
    neg_below = np.cumsum(neg_at) - neg_at
    # Pairs of an example with itself tie; they are taken out of both sums.
    self_pairs = float(np.sum(pos * neg))
    wins = float(np.sum(pos_at * (neg_below + 0.5 * neg_at))) - 0.5 * self_pairs
    total = float(pos.sum() * neg.sum()) - self_pairs
    return wins / total if total > 0 else math.nan


def gauc(labels, scores, groups) -> float:
    """Group AUC: per-group AUC averaged with weights = the group's examples.

    Groups (users) whose examples are all of one class have no AUC and are
    left out of both the sum and the weights.

    Returns:
        GAUC, or nan when no group has both classes.
    """
    labels = np.asarray(labels, dtype=np.float64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    groups = np.asarray(groups).ravel()
    if not labels.shape == scores.shape == groups.shape:
        raise ValueError("labels, scores and groups differ in shape")
    order = np.argsort(groups, kind="stable")
    labels, scores, groups = labels[order], scores[order], groups[order]
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]]) if groups.size else []
    ends = np.r_[starts[1:], groups.size] if groups.size else []
    total = weight = 0.0
    for lo, hi in zip(starts, ends):
        value = auc(labels[lo:hi], scores[lo:hi])
        if not math.isnan(value):
            total += (hi - lo) * value
            weight += hi - lo
    return float(total / weight) if weight else math.nan


def calibration(labels, predictions) -> float:
    """Mean prediction / mean label (1 is calibrated); nan when the mean label is 0."""
    labels = np.asarray(labels, dtype=np.float64).ravel()
    predictions = np.asarray(predictions, dtype=np.float64).ravel()
    if labels.size == 0 or labels.mean() == 0:
        return math.nan
    return float(predictions.mean() / labels.mean())


def multiclass_log_loss(labels, probabilities) -> float:
    """Mean ``-log p[label]`` of class probabilities ``[n, C]`` (clipped like log_loss)."""
    labels = np.asarray(labels, dtype=np.int64).ravel()
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if labels.size == 0:
        return math.nan
    picked = probabilities[np.arange(labels.size), labels]
    return float(-np.mean(np.log(np.clip(picked, _EPSILON, 1.0))))


def accuracy(labels, probabilities) -> float:
    """Share of examples whose most probable class is the label."""
    labels = np.asarray(labels, dtype=np.int64).ravel()
    if labels.size == 0:
        return math.nan
    return float(np.mean(np.argmax(probabilities, axis=-1) == labels))


def _label_ranks(labels, probabilities) -> np.ndarray:
    """1-based rank of each label's class: 1 + classes scored strictly higher.

    Ties go the label's way (a tied class does not push it down).
    """
    labels = np.asarray(labels, dtype=np.int64).ravel()
    probabilities = np.asarray(probabilities, dtype=np.float64)
    own = probabilities[np.arange(labels.size), labels]
    return 1 + np.sum(probabilities > own[:, None], axis=1)


def top_k_accuracy(labels, probabilities, k: int) -> float:
    """Share of examples whose label is among the ``k`` most probable classes."""
    if np.asarray(labels).size == 0:
        return math.nan
    return float(np.mean(_label_ranks(labels, probabilities) <= k))


def class_ndcg_at_k(labels, probabilities, k: int) -> float:
    """NDCG@k of the classes ranked by probability, one relevant class (the label).

    With one relevant class the ideal DCG is 1, so an example scores
    ``1 / log2(rank + 1)`` when its label ranks within k, else 0.
    """
    if np.asarray(labels).size == 0:
        return math.nan
    ranks = _label_ranks(labels, probabilities)
    return float(np.mean(np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)))


def macro_f1(labels, probabilities) -> float:
    """Unweighted mean over classes of F1 = 2 TP / (2 TP + FP + FN), predicting the argmax.

    Over the classes that occur as a label or a prediction (a class neither
    has nor gets has no F1), as scikit-learn's ``f1_score(average='macro')``.
    """
    labels = np.asarray(labels, dtype=np.int64).ravel()
    if labels.size == 0:
        return math.nan
    predicted = np.argmax(probabilities, axis=-1).ravel()
    scores = []
    for c in np.union1d(labels, predicted):
        tp = np.sum((predicted == c) & (labels == c))
        fp = np.sum((predicted == c) & (labels != c))
        fn = np.sum((predicted != c) & (labels == c))
        scores.append(2.0 * tp / (2.0 * tp + fp + fn))
    return float(np.mean(scores))


def precision_recall(labels, scores, threshold: float) -> Dict[str, float]:
    """Precision and recall of calling ``scores >= threshold`` positive.

    Returns:
        ``{precision, recall}``; precision is nan when nothing is called
        positive, recall when there is no positive.
    """
    labels = np.asarray(labels, dtype=np.float64).ravel() > 0.5
    called = np.asarray(scores, dtype=np.float64).ravel() >= threshold
    tp = float(np.sum(called & labels))
    return {"precision": tp / called.sum() if called.any() else math.nan,
            "recall": tp / labels.sum() if labels.any() else math.nan}


def rmse(labels, predictions) -> float:
    labels = np.asarray(labels, dtype=np.float64).ravel()
    if labels.size == 0:
        return math.nan
    return float(np.sqrt(np.mean((np.asarray(predictions, np.float64).ravel() - labels) ** 2)))


def recall_at_k(query_embeddings, candidate_embeddings, true_candidates, ks) -> Dict[str, float]:
    """Retrieval Recall@K of each positive pair against a whole candidate catalogue.

    A pair counts as retrieved at K when fewer than K catalogue candidates score
    strictly higher (dot product) than its true candidate.

    Args:
        query_embeddings: ``[n, d]``, one row per positive pair.
        candidate_embeddings: ``[m, d]``, the catalogue.
        true_candidates: ``[n]`` row index into the catalogue of each pair's candidate.
        ks: Cut-offs.

    Returns:
        ``{'recall_at_<k>': share}``; nan values when there are no pairs.
    """
    queries = np.asarray(query_embeddings, dtype=np.float64)
    candidates = np.asarray(candidate_embeddings, dtype=np.float64)
    true_candidates = np.asarray(true_candidates, dtype=np.int64).ravel()
    if true_candidates.size == 0:
        return {f"recall_at_{k}": math.nan for k in ks}
    scores = queries @ candidates.T
    true_scores = scores[np.arange(true_candidates.size), true_candidates]
    higher = np.sum(scores > true_scores[:, None], axis=1)
    return {f"recall_at_{k}": float(np.mean(higher < k)) for k in ks}


def ranking_metrics(recommended: Mapping[str, Sequence[str]],
                    relevant: Mapping[str, Collection[str]], k: int,
                    catalogue_size: int) -> Dict[str, float]:
    """Top-K list quality against what each user actually did, averaged over users.

    Over every user with at least one relevant item (one who has none cannot
    tell a good list from a bad one); a user with no list scores 0.

    - recall: relevant items in the top K / relevant items;
    - hit_rate: 1 when any of the top K is relevant;
    - ndcg: sum of 1 / log2(rank + 1) over relevant ranks, over the best
      possible sum for the user's number of relevant items (at most K);
    - map: the mean of precision@rank over relevant ranks, divided by
      min(relevant items, K) (the Kaggle H&M MAP@12);
    - coverage: distinct items recommended to anyone / catalogue size.

    Args:
        recommended: {user: items, best first}.
        relevant: {user: the items that count as hits}.
        k: The cut-off.
        catalogue_size: Items that could have been recommended.

    Returns:
        ``{users, recall, hit_rate, ndcg, map, coverage}``; nan metrics with no users.
    """
    users = [u for u, items in relevant.items() if items]
    totals = dict.fromkeys(("recall", "hit_rate", "ndcg", "map"), 0.0)
    for user in users:
        rel = set(relevant[user])
        hits = [item in rel for item in list(recommended.get(user, ()))[:k]]
        found = sum(hits)
        totals["recall"] += found / len(rel)
        totals["hit_rate"] += float(found > 0)
        ideal = sum(1.0 / math.log2(r + 2) for r in range(min(len(rel), k)))
        totals["ndcg"] += sum(1.0 / math.log2(r + 2) for r, h in enumerate(hits) if h) / ideal
        precision, seen = 0.0, 0
        for rank, hit in enumerate(hits, start=1):
            if hit:
                seen += 1
                precision += seen / rank
        totals["map"] += precision / min(len(rel), k)
    shown = {item for user_items in recommended.values() for item in list(user_items)[:k]}
    out = {name: (total / len(users) if users else math.nan) for name, total in totals.items()}
    out.update(users=len(users), coverage=len(shown) / catalogue_size if catalogue_size else 0.0)
    return out
