"""Related items: for every catalogue item, the items a product page shows beside it.

An item's list is its co-occurrence neighbours at the cut-off (the first
``co_occurrence`` source's: the items most often in the same baskets, best
first), then — where those run short, as for an item new to the catalogue or
never bought with anything — its nearest items by the item tower's
embeddings (cosine), then its category's best-sellers (the most events of
the relevance label's type in ``popularity_days``); never the item itself.
Each row says which of the three it came from.

Output rows: ``item_id``, ``rank`` (1 = best), ``related_item_id``, ``score``
(the similarity, or the recent count) and ``source`` (``co_occurrence``,
``two_tower`` or ``category_popular``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa

from pipelines import sources
from pipelines.candidate_sources import TopFn
from pipelines.candidates import ExactIndex
from shoprec.core.recommend_config import CO_OCCURRENCE, TWO_TOWER

CATEGORY_POPULAR = "category_popular"
SCHEMA = pa.schema([("item_id", pa.string()), ("rank", pa.int32()),
                    ("related_item_id", pa.string()), ("score", pa.float32()),
                    ("source", pa.string())])


def related(item_id: str, lists: Sequence[Tuple[str, sources.Ranked]], k: int
            ) -> List[Dict[str, Any]]:
    """The first ``k`` distinct items of ``lists`` in order, never ``item_id`` itself.

    Args:
        item_id: The item whose list this is.
        lists: (source name, its ranked list) in the order they are tried.
        k: Items kept.
    """
    out: List[Dict[str, Any]] = []
    seen = {item_id}
    for name, ranked in lists:
        for other, score in ranked:
            if other in seen:
                continue
            seen.add(other)
            out.append({"item_id": item_id, "rank": len(out) + 1, "related_item_id": other,
                        "score": float(score), "source": name})
            if len(out) == k:
                return out
    return out


def nearest(vectors: np.ndarray, rows: Sequence[int], k: int) -> List[sources.Ranked]:
    """The ``k`` nearest items by cosine to each of ``rows`` (itself excluded), exact.

    Returns:
        Per row, [(item index, cosine)], best first.
    """
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.maximum(norms, 1e-12)
    scores, index = ExactIndex(unit).search(unit[list(rows)], k + 1,
                                            [[r] for r in rows])
    return [[(int(i), float(s)) for s, i in zip(rs, ri) if i >= 0][:k]
            for rs, ri in zip(scores, index)]


class RelatedItems(beam.PTransform):
    """(item_id, item row) → every catalogue item's related items (module docstring).

    Args:
        plan: The candidate plan (its first co_occurrence source, popularity window).
        category: The item feature whose best-sellers fill a short list.
        k: Related items per item.
        neighbours: ((source name, cut, item), neighbours) at the cut-off.
        states: ((cut, item), item state) at the cut-off.
        cut: Singleton PCollection of the cut-off.
        catalogue: Singleton PCollection of the towers' ``Catalogue`` (None:
            no towers: co-occurrence, then the category's best-sellers).
    """

    def __init__(self, plan: sources.Plan, category: Optional[str], k: int, *, neighbours,
                 states, cut, catalogue=None):
        super().__init__()
        self._plan = plan
        self._category = category
        self._k = int(k)
        self._neighbours = neighbours
        self._states = states
        self._cut = cut
        self._catalogue = catalogue

    def expand(self, items):
        p, k, category = self._plan, self._k, self._category
        co = next((s.name for s in p.sources if s.source_kind == CO_OCCURRENCE), None)

        def by_category(kv, states, cut):
            item_id, row = kv
            count = sources.popularity(states.get((cut, item_id)), p)
            if count > 0:
                yield row.get(category), (item_id, float(count))

        best = (items
                | "CategoryCounts" >> beam.FlatMap(
                    by_category, states=beam.pvalue.AsDict(self._states),
                    cut=beam.pvalue.AsSingleton(self._cut))
                | "CategoryBest" >> beam.CombinePerKey(TopFn(k + 1)))

        def towers(batch, catalogue):
            position = {item_id: i for i, item_id in enumerate(catalogue.ids)}
            found = nearest(catalogue.vectors, [position[i] for i, _ in batch], k)
            for (item_id, row), ranked in zip(batch, found):
                yield item_id, row, [(catalogue.ids[i], s) for i, s in ranked]

        if self._catalogue is not None:
            with_towers = (items
                           | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=256)
                           | "TowerNeighbours" >> beam.FlatMap(
                               towers, catalogue=beam.pvalue.AsSingleton(self._catalogue)))
        else:
            with_towers = items | "NoTowers" >> beam.MapTuple(lambda i, row: (i, row, []))

        def lists(item_and_towers, neighbours, best, cut):
            item_id, row, nearest_items = item_and_towers
            return related(item_id, [
                (CO_OCCURRENCE, neighbours.get((co, cut, item_id), ()) if co else ()),
                (TWO_TOWER, nearest_items),
                (CATEGORY_POPULAR, best.get(row.get(category), ()))], k)

        return (with_towers
                | "Related" >> beam.FlatMap(
                    lists, neighbours=beam.pvalue.AsDict(self._neighbours),
                    best=beam.pvalue.AsDict(best), cut=beam.pvalue.AsSingleton(self._cut)))
