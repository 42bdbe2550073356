"""Sampled negatives for purchase-only logs: K per positive, popularity-weighted, seeded.

A positive bought on day d gets K distinct negatives drawn from the items
available then: the items bought by anyone in the ``window_days`` days before
d, weighted by how often. Only earlier days count, so a purchase can never
shape the negatives of an example at or before its own time (a positive on the
log's first day gets none; ``negatives/short`` counts such positives). Items
the same user bought that day are never drawn (they are not negatives). Each
negative copies the positive's user and timestamp, has every label 0 and
``sampled = 1``.

Draws depend only on the seed and the positive itself (a stable hash, not
Python's salted ``hash``), so a re-run on any runner samples the same items.
Positives and candidates meet per day (``CoGroupByKey``): a worker holds one
day's candidates, never the whole log.
"""

from __future__ import annotations

import hashlib
from typing import Any, Dict, Iterable, List, Sequence, Set, Tuple

import apache_beam as beam
import numpy as np

from pipelines import dead_letter as dl
from shoprec.core import registry as F

DAY_S = 86400
# Draws per wanted negative before giving up on a tiny candidate set.
_MAX_DRAWS_PER_NEGATIVE = 20


def stable_seed(*parts: Any) -> int:
    """A 64-bit seed from ``parts`` that is the same in every process."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def draw(items: Sequence[str], weights: Sequence[float], k: int, exclude: Set[str],
         seed: int) -> List[str]:
    """Up to ``k`` distinct items, drawn by weight, none in ``exclude``.

    Draws with replacement and skips repeats, which is popularity-weighted
    sampling without replacement at O(k log n) per positive.
    """
    allowed = sum(1 for item in items if item not in exclude)
    want = min(k, allowed)
    if want <= 0:
        return []
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    rng = np.random.default_rng(seed)
    chosen: List[str] = []
    picked: Set[str] = set()
    for _ in range(_MAX_DRAWS_PER_NEGATIVE * k):
        index = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
        item = items[min(index, len(items) - 1)]
        if item in exclude or item in picked:
            continue
        chosen.append(item)
        picked.add(item)
        if len(chosen) == want:
            return chosen
    # A few heavy items kept being redrawn: finish exactly, by Gumbel top-k over the rest.
    rest = [i for i, item in enumerate(items) if item not in exclude and item not in picked]
    keys = np.log(np.asarray(weights, dtype=np.float64)[rest]) + rng.gumbel(size=len(rest))
    for j in np.argsort(-keys)[:want - len(chosen)]:
        chosen.append(items[rest[j]])
    return chosen


def sample_day(candidates: Iterable[Tuple[str, int]], positives: Iterable[Dict[str, Any]],
               per_positive: int, seed: int, label_names: Sequence[str],
               sampled_key: str) -> List[Dict[str, Any]]:
    """Negatives for one day's positives.

    Args:
        candidates: (item, purchases) pairs from the days of the window; an
            item may appear once per day.
        positives: The day's positive rows.
        per_positive: K.
        seed: Run seed.
        label_names: Labels to set to 0.
        sampled_key: Name of the sampled flag.
    """
    weights: Dict[str, int] = {}
    for item, count in candidates:
        weights[item] = weights.get(item, 0) + count
    items = sorted(weights)  # Grouping order varies by runner; sorting makes draws stable.
    item_weights = [weights[i] for i in items]
    positives = list(positives)
    bought: Dict[str, Set[str]] = {}
    for row in positives:
        bought.setdefault(row[F.USER_KEY], set()).add(row[F.ITEM_KEY])
    out = []
    for row in sorted(positives, key=lambda r: (r[F.USER_KEY], r[F.ITEM_KEY])):
        user, ts = row[F.USER_KEY], row[F.TIMESTAMP_KEY]
        chosen = draw(items, item_weights, per_positive, bought[user],
                      stable_seed(seed, user, row[F.ITEM_KEY], ts))
        if len(chosen) < per_positive:
            beam.metrics.Metrics.counter(dl.NAMESPACE, "negatives/short").inc()
        for item in chosen:
            negative = {F.USER_KEY: user, F.ITEM_KEY: item, F.TIMESTAMP_KEY: ts, sampled_key: 1}
            negative.update({name: 0 for name in label_names})
            out.append(negative)
    return out


class SampleNegatives(beam.PTransform):
    """Positive rows → sampled negative rows (see the module docstring).

    Args:
        per_positive: K negatives per positive.
        window_days: Days of purchases before the positive's day that make
            the candidate set.
        seed: Run seed.
        registry: Labels to zero and the sampled key.
    """

    def __init__(self, per_positive: int, window_days: int, seed: int, registry: F.Registry):
        super().__init__()
        if per_positive < 1 or window_days < 1:
            raise ValueError("per_positive and window_days must be >= 1")
        self._k = int(per_positive)
        self._window = int(window_days)
        self._seed = int(seed)
        # The negative's own event labels; a user-table label comes with the user's row.
        self._labels = tuple(f.name for f in registry.event_labels())
        self._sampled_key = registry.sampled_key

    def expand(self, positives):
        window, k, seed = self._window, self._k, self._seed
        labels, sampled_key = self._labels, self._sampled_key

        def spread(day_item_count):
            (day, item), count = day_item_count
            # Bought on `day`: a candidate for the positives of the next `window` days.
            for later in range(day + 1, day + 1 + window):
                yield later, (item, count)

        candidates = (positives
                      | "DayItem" >> beam.Map(
                          lambda r: ((r[F.TIMESTAMP_KEY] // DAY_S, r[F.ITEM_KEY]), 1))
                      | "CountDayItem" >> beam.CombinePerKey(sum)
                      | "SpreadOverWindow" >> beam.FlatMap(spread))
        by_day = positives | "KeyByDay" >> beam.Map(lambda r: (r[F.TIMESTAMP_KEY] // DAY_S, r))

        def sample(day_and_groups):
            _, groups = day_and_groups
            if not groups["positives"]:
                return []
            negatives = sample_day(groups["candidates"], groups["positives"], k, seed, labels,
                                   sampled_key)
            beam.metrics.Metrics.counter(dl.NAMESPACE, "negatives/sampled").inc(len(negatives))
            return negatives

        return ({"candidates": candidates, "positives": by_day}
                | "JoinByDay" >> beam.CoGroupByKey()
                | "Sample" >> beam.FlatMap(sample))
