"""The two towers' candidates at past cut-offs, from the last published model.

Label mode ``candidates`` builds the ranker's examples in ingest, before this
run trains its towers; a daily run has the towers of the model an earlier day
published (``models/CURRENT``), and :class:`TowerCandidates` proposes theirs:
for every (user, cut-off) it is given, the user's query row at the cut-off
(their row and their history from the events strictly before it, the same
point-in-time state an example there gets) goes through the published model's
``user_embedding``, and the catalogue's items (its ``item_embedding``, once)
are searched exactly for the source's quota, the user's excluded items left
out. The query embedding rides along, so every other candidate's towers' score
(a ``two_tower.score`` signal) is its dot product too.
"""

from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import PredictionResult, RunInference

from pipelines import examples
from pipelines.candidates import Catalogue, EmbedItems, ExactIndex, pairs_bytes, pairs_examples
from pipelines.history import AddHistory
from pipelines.inference import ChunkHandler
from pipelines.rows import query_row
from shoprec.core import registry as F

# Carries a probe's user row and excluded items through AddHistory, which
# passes an example's other keys along untouched.
_USER_ROW, _EXCLUDED = "_user_row", "_excluded"


class Towers(NamedTuple):
    """One (user, cut-off)'s two-tower list and the query embedding it came from."""

    ranked: List[Tuple[str, float]]
    query: np.ndarray

    def scores(self, catalogue: Catalogue, items: Sequence[str]) -> Dict[str, float]:
        """The towers' score of each of ``items``: its dot product with the query."""
        position = {item_id: i for i, item_id in enumerate(catalogue.ids)}
        ids = [i for i in items if i in position]
        dots = catalogue.vectors[[position[i] for i in ids]] @ self.query
        return dict(zip(ids, map(float, dots)))


class _Search(beam.DoFn):
    """Query embeddings → each (user, cut-off)'s exact top ``quota`` of the catalogue."""

    def __init__(self, quota: int):
        self._quota = int(quota)
        self._indexed = self._index = None
        self._position: Dict[str, int] = {}

    def process(self, result: PredictionResult, catalogue: Catalogue):
        if self._indexed is not catalogue:
            self._position = {item_id: i for i, item_id in enumerate(catalogue.ids)}
            self._index = ExactIndex(catalogue.vectors)
            self._indexed = catalogue
        keys = [key for key, _ in result.example]
        queries = np.asarray(result.inference["embedding"], np.float32)
        excluded = [[self._position[i] for i in skip if i in self._position]
                    for _, _, skip in keys]
        scores, index = self._index.search(queries, self._quota, excluded)
        for (user_id, cut, _), query, row_s, row_i in zip(keys, queries, scores, index):
            ranked = [(catalogue.ids[i], float(s)) for s, i in zip(row_s, row_i) if i >= 0]
            yield (user_id, cut), Towers(ranked, query)


class TowerOutputs(NamedTuple):
    lists: beam.PCollection  # ((user_id, cut), Towers)
    catalogue: beam.PCollection  # singleton Catalogue of the published item tower


class TowerCandidates(beam.PTransform):
    """(user_id, user row, {cut: excluded items}) → :class:`TowerOutputs`.

    Args:
        model_dir: The published model (its retrieval signatures).
        registry: The run's registry (the query and item rows).
        quota: The two-tower source's quota.
        history: (interaction event types, bucket seconds) of the data set's
            history, or None when the registry has no history features.
        events: Clean event dicts (the history before each cut-off).
        items: (item_id, item-table row) of the catalogue.
        batch_size: Users per embedding call.
        limit: ``recommend.max_catalogue_items``.
    """

    def __init__(self, model_dir: str, registry: F.Registry, quota: int,
                 history: Optional[Tuple[Sequence[str], int]], events: beam.PCollection,
                 items: beam.PCollection, batch_size: int, limit: int):
        super().__init__()
        self._model_dir = model_dir
        self._registry = registry
        self._quota = quota
        self._history = history
        self._events = events
        self._items = items
        self._batch_size = batch_size
        self._limit = limit

    def expand(self, users):
        registry = self._registry
        encode = examples.Encoder(registry.query_names(), registry)

        def probes(user):
            user_id, row, cuts = user
            for cut, excluded in cuts.items():
                yield {F.USER_KEY: user_id, F.TIMESTAMP_KEY: cut, _USER_ROW: row,
                       _EXCLUDED: tuple(sorted(excluded))}

        probed = users | "Probes" >> beam.FlatMap(probes)
        if self._history is not None:
            interactions, bucket_s = self._history
            with_history = probed | "History" >> AddHistory(
                registry, interactions, bucket_s, self._events, self._items)
        else:
            with_history = probed | "NoHistory" >> beam.Map(lambda probe: (probe, None))

        def query(probe_and_history) -> Tuple[Any, bytes]:
            probe, history = probe_and_history
            user_id, cut = probe[F.USER_KEY], probe[F.TIMESTAMP_KEY]
            row = query_row(user_id, probe[_USER_ROW], history, registry)
            return (user_id, cut, probe[_EXCLUDED]), encode(row)

        catalogue = self._items | "EmbedItems" >> EmbedItems(
            self._model_dir, registry, self._batch_size, self._limit)
        lists = (with_history
                 | "QueryRows" >> beam.Map(query)
                 | "Batch" >> beam.BatchElements(min_batch_size=1,
                                                 max_batch_size=self._batch_size)
                 | "EmbedUsers" >> RunInference(ChunkHandler(
                     self._model_dir, "user_embedding", pairs_examples, pairs_bytes))
                 | "Search" >> beam.ParDo(_Search(self._quota),
                                          catalogue=beam.pvalue.AsSingleton(catalogue)))
        return TowerOutputs(lists, catalogue)
