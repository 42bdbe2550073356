"""Each user's list: every source's candidates, their union ranked, the top K.

:class:`Recommend` is the per-user part of the recommend job
(``pipelines.recommend``): users with their rows, history and pair states in;
for each, the towers' nearest items (with a two-tower source) and every other
source's list at the cut-off (``pipelines.sources``), their union built into
raw examples by the row assembler ingest uses (``pipelines.rows``), ranked by
the blend of the serving signature's outputs, the category cap, the top K —
and every candidate with its sources and rank.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import PredictionResult, RunInference

from pipelines import dead_letter as dl
from pipelines import examples, sources
from pipelines.candidate_sources import CandidateState
from pipelines.candidates import (ExactIndex, build_index, in_recall_sample, overlap,
                                  pairs_bytes, pairs_examples)
from pipelines.inference import COLUMNS_SIGNATURE, ChunkHandler
from pipelines.pair_columns import PairColumns
from pipelines.rows import query_row, raw_row
from shoprec.core import registry as F
from shoprec.core.recommend_config import RETRIEVAL, TWO_TOWER


class UserContext(NamedTuple):
    """What ranking a user needs: their row, history and latest pair states at the cut-off."""

    user_id: str
    user: Optional[Dict[str, Any]]
    history: Optional[Dict[str, Any]]
    pairs: Tuple[Tuple[str, sources.State], ...]


class Candidate(NamedTuple):
    """One candidate of one user, on its way to the ranker."""

    item_id: str
    retrieval_score: float  # the two towers' dot product (0 without towers)
    category: Any  # for the category cap
    example: Any  # the raw ranking example: serialized, or its raw row for columns
    sources: str  # the sources that proposed it, comma-separated in config order


def _ranking_examples(chunk) -> Dict[str, List[bytes]]:
    return {"examples": [c.example for _, candidates in chunk for c in candidates]}


def _ranking_bytes(chunk) -> int:
    return sum(len(c.example) for _, candidates in chunk for c in candidates)


class _RankingColumns:
    """A chunk's candidate rows as ``serving_columns``' inputs (picklable)."""

    def __init__(self, registry: F.Registry):
        self._registry = registry
        self._gather = None

    def __call__(self, chunk) -> Dict[str, np.ndarray]:
        if self._gather is None:
            self._gather = PairColumns(self._registry)
        return self._gather.rows([c.example for _, candidates in chunk for c in candidates])


def _ranking_rows(chunk) -> int:
    # Beam's batch sizing: about a raw example's bytes per candidate.
    return 400 * sum(len(candidates) for _, candidates in chunk)


def user_contexts(key_and_groups) -> Iterable[UserContext]:
    """CoGroupByKey of users, history and pair states → one context per known user."""
    user_id, groups = key_and_groups
    users, history, pairs = list(groups["user"]), list(groups["history"]), list(groups["pairs"])
    if not users and not history and not pairs:
        return
    yield UserContext(user_id, users[0] if users else None, history[0] if history else None,
                      tuple(pairs[0]) if pairs else ())


class _Retrieve(beam.DoFn):
    """Users (with their query embeddings, where there are towers) → each user's
    candidates from every source, as raw ranking examples.

    Args:
        registry: The run's registry.
        settings: ``recommend_settings(config)``.
        plan: ``pipelines.sources.plan(config)``.
        columns: Keep each candidate's raw row for ``serving_columns``
            instead of serializing it.
    """

    def __init__(self, registry: F.Registry, settings, plan: sources.Plan,
                 columns: bool = False):
        self._registry = registry
        self._settings = settings
        self._plan = plan
        self._towers = settings.source(TWO_TOWER)
        self._category = settings.category_feature
        self._order = [s.name for s in settings.sources]
        self._encode = (None if columns else
                        examples.Encoder(registry.example_names(include_labels=False), registry))
        self._indexed = None
        self._position: Dict[str, int] = {}
        self._index = self._exact = None

    def _recall(self, contexts, queries, excluded, index) -> None:
        """Counts how many of the exact top N the index found, for the sampled users."""
        share, n = self._settings.faiss.recall_sample, self._towers.quota
        sample = [j for j, ctx in enumerate(contexts) if in_recall_sample(ctx.user_id, share)]
        if not sample:
            return
        _, exact = self._exact.search(queries[sample], n, [excluded[j] for j in sample])
        found, total = overlap(index[sample], exact)
        counter = beam.metrics.Metrics.counter
        counter(dl.NAMESPACE, "recommend/index_recall_users").inc(len(sample))
        counter(dl.NAMESPACE, "recommend/index_recall_found").inc(found)
        counter(dl.NAMESPACE, "recommend/index_recall_relevant").inc(total)

    def _tower_lists(self, contexts, queries, skips, catalogue) -> List[sources.Ranked]:
        """Each user's two-tower list: the index's nearest, excluded items masked."""
        if self._indexed is not catalogue:  # once per side-input value, not per batch
            self._position = {item_id: i for i, item_id in enumerate(catalogue.ids)}
            self._index = build_index(catalogue.vectors, self._settings)
            self._exact = ExactIndex(catalogue.vectors)
            self._indexed = catalogue
        position = self._position
        excluded = [[position[i] for i in skip if i in position] for skip in skips]
        scores, index = self._index.search(queries, self._towers.quota, excluded)
        if self._settings.index != "exact":
            self._recall(contexts, queries, excluded, index)
        return [[(catalogue.ids[i], float(s)) for s, i in zip(row_s, row_i) if i >= 0]
                for row_s, row_i in zip(scores, index)]

    def process(self, batch, catalogue, rows, cut, **tables):
        registry, p, tables = self._registry, self._plan, sources.Tables(**tables)
        if isinstance(batch, PredictionResult):
            contexts = [ctx for ctx, _ in batch.example]
            queries = np.asarray(batch.inference["embedding"], np.float32)
        else:
            contexts, queries = list(batch), None
        pairs = [dict(ctx.pairs) for ctx in contexts]
        skips = [sources.excluded(pp, cut, p) for pp in pairs]
        beam.metrics.Metrics.counter(dl.NAMESPACE, "recommend/excluded_items").inc(
            sum(len(s) for s in skips))
        towers = (self._tower_lists(contexts, queries, skips, catalogue) if queries is not None
                  else [None] * len(contexts))
        chunk = []
        for j, ctx in enumerate(contexts):
            lists, scores = sources.propose(pairs[j], ctx.user, cut, p, tables, towers=towers[j],
                                            skip=skips[j])
            proposed = sources.union(lists)
            retrieval: Dict[str, float] = {}
            if queries is not None:
                position = self._position
                ids = list(proposed)
                dots = catalogue.vectors[[position[i] for i in ids]] @ queries[j]
                retrieval = dict(zip(ids, map(float, dots)))
                scores[self._towers.name] = retrieval
            query = query_row(ctx.user_id, ctx.user, ctx.history, registry)
            candidates = []
            for event in sources.candidate_rows(ctx.user_id, cut, proposed, scores, pairs[j],
                                                tables, p):
                by = event.pop(sources.PROPOSED)
                item_id = event[F.ITEM_KEY]
                row = raw_row(event, ctx.user, rows[item_id], ctx.history, registry, query)
                candidates.append(Candidate(
                    item_id, retrieval.get(item_id, 0.0), row.get(self._category),
                    row if self._encode is None else self._encode(row),
                    ",".join(n for n in self._order if n in by)))
            chunk.append((ctx.user_id, candidates))
        yield chunk


class _TopK(beam.DoFn):
    """Ranked candidates → the user's top K rows (blend, category cap)."""

    def __init__(self, k: int, blend: Sequence[Tuple[str, float]], temperature: float,
                 outputs: Sequence[str], max_per_category: int, category_feature: Optional[str]):
        self._k = int(k)
        self._blend = tuple(blend)
        self._temperature = float(temperature)
        self._outputs = tuple(outputs)
        self._cap = int(max_per_category)
        self._category = category_feature

    def _score(self, outputs: Dict[str, float], retrieval_score: float) -> float:
        """``prod p_o ** w_o``, with ``retrieval`` standing for ``exp(s / T)``.

        ``exp(s / T)`` is the two towers' unnormalised softmax over the
        catalogue (T: the temperature they were trained with), an estimate of
        how likely the user is to pick the item at all, exposure included.
        """
        score = 1.0
        for name, weight in self._blend:
            if name == RETRIEVAL:
                score *= math.exp(weight * retrieval_score / self._temperature)
            else:
                score *= max(outputs[name], 0.0) ** weight
        return score

    def _pick(self, ordered: List[dict]) -> List[dict]:
        if not self._cap:
            return ordered[:self._k]
        counts: Dict[Any, int] = {}
        picked, skipped = [], []
        for row in ordered:
            value = row["_category"]
            if counts.get(value, 0) < self._cap:
                counts[value] = counts.get(value, 0) + 1
                picked.append(row)
            else:
                skipped.append(row)
            if len(picked) == self._k:
                break
        beam.metrics.Metrics.counter(dl.NAMESPACE, "recommend/capped").inc(len(skipped))
        if len(picked) < self._k and skipped:
            # Too few categories among the candidates: fill with the best of the rest.
            beam.metrics.Metrics.counter(dl.NAMESPACE, "recommend/cap_relaxed").inc()
            picked = sorted(picked + skipped[:self._k - len(picked)],
                            key=lambda r: ordered.index(r))
        return picked

    def process(self, result: PredictionResult):
        offset = 0
        for user_id, candidates in result.example:
            rows = []
            for c in candidates:
                out = {name: float(result.inference[name][offset]) for name in self._outputs}
                offset += 1
                rows.append(dict(out, user_id=user_id, item_id=c.item_id,
                                 score=self._score(out, c.retrieval_score),
                                 retrieval_score=c.retrieval_score, sources=c.sources,
                                 _category=c.category))
            ordered = sorted(rows, key=lambda r: (-r["score"], r["item_id"]))
            for rank, row in enumerate(ordered, start=1):
                yield beam.pvalue.TaggedOutput(CANDIDATES, {
                    "user_id": user_id, "item_id": row["item_id"], "sources": row["sources"],
                    "score": row["score"], "rank": rank})
            picked = self._pick(ordered)
            if len(picked) < self._k:
                beam.metrics.Metrics.counter(dl.NAMESPACE, "recommend/short").inc()
            beam.metrics.Metrics.counter(dl.NAMESPACE, "recommend/users").inc()
            beam.metrics.Metrics.counter(dl.NAMESPACE, "recommend/candidates").inc(len(rows))
            for rank, row in enumerate(picked, start=1):
                row.pop("_category")
                yield dict(row, rank=rank)


CANDIDATES = "candidates"


class RecommendOutputs(NamedTuple):
    rows: beam.PCollection  # each user's top K (see the module docstring)
    candidates: beam.PCollection  # every candidate: user_id, item_id, sources, score, rank


class Recommend(beam.PTransform):
    """User contexts → their top-K rows, and every candidate with its sources.

    Stages: BatchUsers → [UserExamples → EmbedUsers (``user_embedding``), with
    a two-tower source] → Retrieve (every source's list, their union) → Rank
    (``serving_columns`` fed the candidates' raw rows as columns, or
    ``serving_default`` fed them serialized) → TopK.

    Args:
        model_dir: The exported model.
        registry: The run's registry.
        settings: ``shoprec.core.config.recommend_settings(config)``.
        plan: ``pipelines.sources.plan(config)``.
        outputs: Serving outputs to write per row (``p_<task>``).
        temperature: The retrieval temperature the towers were trained with.
        catalogue: Singleton PCollection of :class:`Catalogue` (None: no towers).
        items: (item_id, item row) of every catalogue item.
        state: The candidate sources' state at the cut-off
            (``pipelines.candidate_sources.CandidateState``, its ``popular``
            with the segmented lists too).
        cut: Singleton PCollection of the cut-off.
        columns: Rank with the model's ``serving_columns``; False:
            ``serving_default`` (a model exported before it existed).
    """

    def __init__(self, model_dir: str, registry: F.Registry, settings, plan: sources.Plan,
                 outputs: Sequence[str], *, temperature: float, catalogue, items,
                 state: CandidateState, cut, columns: bool = False):
        super().__init__()
        self._temperature = temperature
        self._model_dir = model_dir
        self._registry = registry
        self._settings = settings
        self._plan = plan
        self._outputs = tuple(outputs)
        self._catalogue = catalogue
        self._items = items
        self._state = state
        self._cut = cut
        self._columns = columns

    def expand(self, contexts) -> RecommendOutputs:
        registry, rec = self._registry, self._settings
        encode = examples.Encoder(registry.query_names(), registry)

        def query_chunk(batch: List[UserContext]):
            rows = [query_row(c.user_id, c.user, c.history, registry) for c in batch]
            return [(c, encode(r)) for c, r in zip(batch, rows)]

        batches = contexts | "BatchUsers" >> beam.BatchElements(
            min_batch_size=1, max_batch_size=rec.user_batch)
        catalogue = None
        if self._catalogue is not None:
            batches = (batches
                       | "UserExamples" >> beam.Map(query_chunk)
                       | "EmbedUsers" >> RunInference(ChunkHandler(
                           self._model_dir, "user_embedding", pairs_examples, pairs_bytes)))
            catalogue = beam.pvalue.AsSingleton(self._catalogue)
        state = self._state
        ranker = (ChunkHandler(self._model_dir, COLUMNS_SIGNATURE, _RankingColumns(registry),
                               _ranking_rows) if self._columns else
                  ChunkHandler(self._model_dir, "serving_default", _ranking_examples,
                               _ranking_bytes))
        out = (batches
               | "Retrieve" >> beam.ParDo(
                   _Retrieve(registry, rec, self._plan, self._columns), catalogue=catalogue,
                   rows=beam.pvalue.AsDict(self._items),
                   cut=beam.pvalue.AsSingleton(self._cut), **state.side_inputs())
               | "Rank" >> RunInference(ranker)
               | "TopK" >> beam.ParDo(_TopK(rec.k, rec.blend, self._temperature, self._outputs,
                                            rec.max_per_category, rec.category_feature))
               .with_outputs(CANDIDATES, main="rows"))
        return RecommendOutputs(out.rows, out[CANDIDATES])
