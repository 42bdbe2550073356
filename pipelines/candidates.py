"""Candidate retrieval: the catalogue's embeddings, and the top N by dot product.

Every catalogue item is embedded once with the exported ``item_embedding``
signature, on batches, into one :class:`Catalogue` every worker holds (a
catalogue larger than ``recommend.max_catalogue_items`` fails with a message
naming the limit). :func:`top_n` scores a batch of users against all of it
in blocks of items (``queries @ items.T``) and keeps the best with
``tf.math.top_k``: TFRS ``BruteForce``'s maths, exact.

Two indexes answer ``search(queries, n, excluded)`` the same way:
:class:`ExactIndex` (``top_n``) and :class:`FaissIndex` (faiss, inner
product: HNSW, IVF or flat), built by :func:`build_index` from the
``recommend`` settings. :func:`overlap` counts how many of the exact top N an
approximate search found: its recall@N, measured in the job on the users
:func:`in_recall_sample` picks and reported by :func:`index_report`.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any, Dict, List, NamedTuple, Sequence, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import PredictionResult, RunInference

from pipelines import examples
from pipelines.inference import ChunkHandler
from shoprec.core import registry as F

# Items scored per matrix product: bounds a batch's score matrix to
# user_batch x _ITEM_BLOCK floats whatever the catalogue's size.
_ITEM_BLOCK = 65536


class Catalogue(NamedTuple):
    """Every item's id (sorted) and retrieval embedding, row i for id i."""

    ids: Tuple[str, ...]
    vectors: np.ndarray


def top_n(queries: np.ndarray, items: np.ndarray, n: int,
          excluded: Sequence[Sequence[int]] = (), block: int = _ITEM_BLOCK
          ) -> Tuple[np.ndarray, np.ndarray]:
    """Exact top ``n`` items per query by dot product, in blocks of items.

    Args:
        queries: [Q, D] query embeddings.
        items: [I, D] item embeddings.
        n: Items kept per query (at most I).
        excluded: Per query, item indices that may not be returned.
        block: Items per matrix product.

    Returns:
        (scores [Q, n'], indices [Q, n']), best first; ties go to the lower
        index; an excluded item is never returned (its slot, when fewer than
        ``n`` items remain, holds index -1 and score -inf).
    """
    import tensorflow as tf

    n = min(int(n), len(items))
    best_scores = np.full((len(queries), 0), -np.inf, np.float32)
    best_index = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(items), block):
        chunk = items[start:start + block]
        scores = (queries @ chunk.T).astype(np.float32)
        for q, skip in enumerate(excluded):
            scores[q, [i - start for i in skip if start <= i < start + len(chunk)]] = -np.inf
        index = np.broadcast_to(np.arange(start, start + len(chunk)), scores.shape)
        # Earlier blocks first: on a tie, top_k keeps the lower position, which
        # is the lower item index.
        scores = np.concatenate([best_scores, scores], axis=1)
        index = np.concatenate([best_index, index], axis=1)
        top = tf.math.top_k(scores, k=min(n, scores.shape[1]))
        best_scores = top.values.numpy()
        best_index = np.take_along_axis(index, top.indices.numpy(), axis=1)
    best_index = np.where(np.isneginf(best_scores), -1, best_index)
    return best_scores, best_index


class ExactIndex:
    """Every item scored: :func:`top_n` over the catalogue's vectors."""

    def __init__(self, vectors: np.ndarray, block: int = _ITEM_BLOCK):
        self._vectors = np.asarray(vectors, np.float32)
        self._block = int(block)

    def search(self, queries: np.ndarray, n: int, excluded: Sequence[Sequence[int]] = ()
               ) -> Tuple[np.ndarray, np.ndarray]:
        """As :func:`top_n`."""
        return top_n(queries, self._vectors, n, excluded, self._block)


class FaissIndex:
    """An approximate inner-product index over the catalogue's vectors (faiss).

    Args:
        vectors: [I, D] item embeddings; row i is item index i.
        settings: ``shoprec.core.config.FaissConfig``.
    """

    def __init__(self, vectors: np.ndarray, settings):
        import faiss

        vectors = np.ascontiguousarray(vectors, np.float32)
        self._size, dim = vectors.shape
        self._settings = settings
        if settings.kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = settings.ef_construction
        elif settings.kind == "ivf":
            self._quantizer = faiss.IndexFlatIP(dim)  # held here: it must outlive the index
            index = faiss.IndexIVFFlat(self._quantizer, dim, nlist(self._size, settings.nlist),
                                       faiss.METRIC_INNER_PRODUCT)
            index.train(vectors)
            index.nprobe = min(settings.nprobe, index.nlist)
        else:
            index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        self._index = index

    def search(self, queries: np.ndarray, n: int, excluded: Sequence[Sequence[int]] = ()
               ) -> Tuple[np.ndarray, np.ndarray]:
        """The index's top ``n`` per query, as :func:`top_n` returns them.

        Excluded items are filtered from a longer list (``n`` plus the most
        any query excludes), so each query still gets ``n`` when it can.
        """
        n = min(int(n), self._size)
        extra = max((len(e) for e in excluded), default=0)
        fetch = min(n + extra, self._size)
        if self._settings.kind == "hnsw":
            # HNSW returns at most efSearch results per query.
            self._index.hnsw.efSearch = max(self._settings.ef_search, fetch)
        scores, index = self._index.search(np.ascontiguousarray(queries, np.float32), fetch)
        out_scores = np.full((len(queries), n), -np.inf, np.float32)
        out_index = np.full((len(queries), n), -1, np.int64)
        for q in range(len(queries)):
            skip = set(excluded[q]) if q < len(excluded) else set()
            keep = [j for j, i in enumerate(index[q]) if i >= 0 and i not in skip][:n]
            out_scores[q, :len(keep)] = scores[q, keep]
            out_index[q, :len(keep)] = index[q, keep]
        return out_scores, out_index


def nlist(items: int, configured: int) -> int:
    """IVF lists: ``configured``, or ``4 * sqrt(items)`` capped at ``items / 39``.

    faiss's k-means wants at least 39 training points per list; the catalogue
    is the training set.
    """
    if configured:
        return max(1, min(configured, items))
    return max(1, min(int(4 * np.sqrt(items)), items // 39))


def build_index(vectors: np.ndarray, settings):
    """The index ``recommend.index`` names, over ``vectors``.

    Args:
        vectors: [I, D] item embeddings.
        settings: ``shoprec.core.config.RecommendConfig``.
    """
    if settings.index == "faiss":
        return FaissIndex(vectors, settings.faiss)
    return ExactIndex(vectors)


def overlap(approximate: np.ndarray, exact: np.ndarray) -> Tuple[int, int]:
    """(exact top-N items the approximate search also returned, exact top-N items).

    Their ratio is the approximate index's recall@N; -1 slots do not count.
    """
    found = total = 0
    for got, want in zip(approximate, exact):
        want = set(int(i) for i in want if i >= 0)
        found += len(want & set(int(i) for i in got))
        total += len(want)
    return found, total


def pairs_examples(chunk: Sequence[Tuple[Any, bytes]]) -> Dict[str, List[bytes]]:
    """A chunk of (key, serialized raw example): the signatures' ``examples`` input."""
    return {"examples": [s for _, s in chunk]}


def pairs_bytes(chunk: Sequence[Tuple[Any, bytes]]) -> int:
    return sum(len(s) for _, s in chunk)


def catalogue(pairs: List[Tuple[str, np.ndarray]], limit: int) -> Catalogue:
    """(item_id, embedding) pairs → the :class:`Catalogue`, or a clear error past ``limit``."""
    if len(pairs) > limit:
        raise ValueError(f"recommend: the catalogue has {len(pairs)} items; every worker holds "
                         f"all their embeddings, and recommend.max_catalogue_items is {limit}")
    pairs = sorted(pairs, key=lambda kv: kv[0])
    return Catalogue(tuple(k for k, _ in pairs),
                     np.stack([v for _, v in pairs]).astype(np.float32))


class EmbedItems(beam.PTransform):
    """(item_id, item row) → the singleton :class:`Catalogue` of their embeddings."""

    def __init__(self, model_dir: str, registry: F.Registry, batch_size: int, limit: int):
        super().__init__()
        self._model_dir = model_dir
        self._registry = registry
        self._batch_size = int(batch_size)
        self._limit = int(limit)

    def expand(self, items):
        registry = self._registry
        names = registry.candidate_names()

        def vectors(result: PredictionResult):
            for (item_id, _), vector in zip(result.example, result.inference["embedding"]):
                yield item_id, np.asarray(vector, np.float32)

        return (items
                | "ItemExamples" >> beam.MapTuple(
                    lambda item_id, row: (item_id, examples.encode(row, names, registry)))
                | "Batch" >> beam.BatchElements(min_batch_size=1,
                                                max_batch_size=self._batch_size)
                | "Embed" >> RunInference(ChunkHandler(
                    self._model_dir, "item_embedding", pairs_examples, pairs_bytes))
                | "Vectors" >> beam.FlatMap(vectors)
                | "ToList" >> beam.combiners.ToList()
                | "Catalogue" >> beam.Map(catalogue, self._limit))


def in_recall_sample(user_id: str, share: float) -> bool:
    """Whether the user is among the ``share`` whose retrieval is also checked exactly.

    A hash of the id, not the batch: the same users whatever the runner.
    """
    return zlib.crc32(user_id.encode()) % 10000 < share * 10000


def index_report(rec, counts: Dict[str, int]) -> Dict[str, Any]:
    """The retrieval index and, for an approximate one, its recall@N against exact.

    ``recall_at_n`` is over the sampled users' exact top N (None: no user
    was sampled).
    """
    out: Dict[str, Any] = {"index": rec.index, "n": rec.tower_quota}
    if rec.index == "exact":
        return out
    relevant = counts.get("recommend/index_recall_relevant", 0)
    return dict(out, settings=dataclasses.asdict(rec.faiss),
                recall_users=counts.get("recommend/index_recall_users", 0),
                recall_at_n=(counts.get("recommend/index_recall_found", 0) / relevant
                             if relevant else None))
