"""Recommend job: the top K of the whole catalogue for every user.

Stages (stable labels): ReadItems → EmbedItems (``pipelines.candidates``: the
``item_embedding`` signature on batches, one catalogue matrix; with a
two-tower source or the retrieval blend); ReadEvents (the clean log ingest
wrote) → Sources (``pipelines.candidate_sources``: every source's state at
the cut-off: the eval start, or with ``as_of: end`` a second after the log's
last event); ReadUsers + ReadHistory + the users' pair states → JoinUsers
(CoGroupByKey: no user table is held whole in memory) → SegmentPopular →
Recommend (the composite :class:`Recommend`: [EmbedUsers →] Retrieve → Rank →
TopK) → WriteRecommendations, WriteCandidates; RelatedItems
(``pipelines.related``) → WriteRelated; WriteNeighbours; and with
``--bq_table`` WriteBigQuery (``pipelines.bigquery``: the run date's
partition, replaced).

Each source of ``recommend.sources`` proposes its quota of items per user
(``pipelines.sources``: the towers' nearest, exact or with ``recommend.index:
faiss`` approximate, built once per worker; the user's own items; items
bought with theirs; best-sellers; items sharing an attribute with theirs),
none the exclusion rule removes (an ``exclude_label`` event in the
``exclude_days`` before the cut-off); their union, each candidate with its
sources, ranks and signals, is built into raw examples by the row assembler
ingest uses (``pipelines.rows``) and goes through the serving signature, and
the blend of its outputs ranks them. With faiss, a
``recommend.faiss.recall_sample`` share of the users (picked by a hash of
their id) is also retrieved exactly and the counters give the index's
recall@quota against exact. Items come only from the current item table, so
an item no longer listed is never recommended. Every worker holds the
catalogue's embeddings, item rows and the sources' catalogue-sized tables.
The model is the published one (the version ``models/CURRENT`` names), not
this run's ``train/model``; the report names the version.

Outputs: ``recommend/recommendations-*.parquet``, one row per (user, rank):
``user_id``, ``rank`` (1 = best), ``item_id``, ``score`` (the blend),
``retrieval_score`` (the two towers' dot product; 0 without towers),
``sources`` (those that proposed it) and each ranked output (``p_<task>``);
``recommend/candidates-*.parquet``: every candidate of every user with its
sources, blended score and rank; ``recommend/related-*.parquet``
(``pipelines.related``); ``recommend/neighbours-*.parquet``: each
co-occurrence source's neighbours at the cut-off.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import time
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.ml.inference.base import PredictionResult, RunInference

from pipelines import bigquery
from pipelines import dead_letter as dl
from pipelines import examples
from pipelines import sources
from pipelines.candidate_sources import CandidateSources, CandidateState, SegmentPopular
from pipelines.candidates import (EmbedItems, ExactIndex, build_index, in_recall_sample,
                                  index_report, overlap, pairs_bytes, pairs_examples)
from pipelines.event_log import ReadEvents
from pipelines.inference import ChunkHandler, signature_names
from pipelines.options import pipeline_options
from pipelines.rows import query_row, raw_row
from pipelines.related import SCHEMA as RELATED_SCHEMA, RelatedItems
from pipelines.score import ReadSideTable
from shoprec.core import registry as F
from shoprec.core.config import Config, RETRIEVAL, TWO_TOWER, recommend_settings
from shoprec.core.errors import ConfigError, StageOrderError
from shoprec.core.layout import PARQUET_SUFFIX
from shoprec.io import models
from shoprec.io.outputs import clear, require_success, write_report


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
    example: bytes  # the raw ranking example
    sources: str  # the sources that proposed it, comma-separated in config order


def _ranking_examples(chunk) -> Dict[str, List[bytes]]:
    return {"examples": [c.example for _, candidates in chunk for c in candidates]}


def _ranking_bytes(chunk) -> int:
    return sum(len(c.example) for _, candidates in chunk for c in candidates)


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
    """

    def __init__(self, registry: F.Registry, settings, plan: sources.Plan):
        self._registry = registry
        self._settings = settings
        self._plan = plan
        self._towers = settings.source(TWO_TOWER)
        self._category = settings.category_feature
        self._order = [s.name for s in settings.sources]
        self._encode = examples.Encoder(registry.example_names(include_labels=False), registry)
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
                    self._encode(row), ",".join(n for n in self._order if n in by)))
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
    (``serving_default``) → TopK.

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
    """

    def __init__(self, model_dir: str, registry: F.Registry, settings, plan: sources.Plan,
                 outputs: Sequence[str], *, temperature: float, catalogue, items,
                 state: CandidateState, cut):
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
        out = (batches
               | "Retrieve" >> beam.ParDo(
                   _Retrieve(registry, rec, self._plan), catalogue=catalogue,
                   rows=beam.pvalue.AsDict(self._items),
                   cut=beam.pvalue.AsSingleton(self._cut), **state.side_inputs())
               | "Rank" >> RunInference(ChunkHandler(
                   self._model_dir, "serving_default", _ranking_examples, _ranking_bytes))
               | "TopK" >> beam.ParDo(_TopK(rec.k, rec.blend, self._temperature, self._outputs,
                                            rec.max_per_category, rec.category_feature))
               .with_outputs(CANDIDATES, main="rows"))
        return RecommendOutputs(out.rows, out[CANDIDATES])


def output_names(config: Config) -> List[str]:
    """The serving outputs each recommendation row carries: every task's but multiclass."""
    names = [f"p_{t.name}" for t in config.model.tasks if t.type != "multiclass"]
    if config.model.architecture == "esmm":
        names.append(f"p_{config.model.esmm.cvr_output}")
    return names


def schema(outputs: Sequence[str]) -> pa.Schema:
    """Parquet schema of the recommendations (see the module docstring)."""
    return pa.schema([("user_id", pa.string()), ("rank", pa.int32()), ("item_id", pa.string()),
                      ("score", pa.float32()), ("retrieval_score", pa.float32()),
                      ("sources", pa.string())]
                     + [(name, pa.float32()) for name in outputs])


NEIGHBOURS_SCHEMA = pa.schema([("source", pa.string()), ("item_id", pa.string()),
                               ("neighbour", pa.string()), ("score", pa.float32())])
CANDIDATES_SCHEMA = pa.schema([("user_id", pa.string()), ("item_id", pa.string()),
                               ("sources", pa.string()), ("score", pa.float32()),
                               ("rank", pa.int32())])


def _check_inputs(config: Config, limit: int) -> Tuple[str, str]:
    """The published version and its model, after checking the job can run on them."""
    import tensorflow as tf

    # Item aggregates and user x item-attribute aggregates are served as their
    # state after the log's last event only: lists judged as of the eval start
    # would see the eval window's own events through them.
    rec = recommend_settings(config)
    served_at_end = config.registry.item_aggregates() + config.registry.pair_aggregates()
    if served_at_end and rec.as_of == "eval":
        raise ConfigError(f"recommend: as_of: eval with aggregates "
                          f"{[f.name for f in served_at_end]} would leak the eval window "
                          f"(their served state is the log's end); use as_of: end, or a "
                          f"config without them")
    layout = config.layout
    require_success(layout.ingest_dir, "ingest")
    if not tf.io.gfile.glob(layout.events_log_pattern):
        raise StageOrderError(f"no clean event log at {layout.events_log_pattern} for the "
                              "candidate sources; run `shoprec ingest` again")
    version, model_dir = models.require_current(layout)
    if needs_towers(rec) and "user_embedding" not in signature_names(model_dir):
        raise StageOrderError("the model has no retrieval towers for the two_tower source or "
                              "the retrieval blend; set model.retrieval.enabled: true and run "
                              "`shoprec train` again")
    files = tf.io.gfile.glob(layout.items_table + "*")
    items = sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))
    if items > limit:
        raise ConfigError(f"recommend: the catalogue has {items} items and every worker holds "
                          f"their embeddings, neighbours and counts; "
                          f"recommend.max_catalogue_items is {limit}")
    return version, model_dir


def needs_towers(rec) -> bool:
    """Whether the lists need the two towers: a two-tower source or the retrieval blend."""
    return bool(rec.tower_quota) or RETRIEVAL in dict(rec.blend)


def run_date(config: Config) -> datetime.date:
    """The date the lists are for: the BigQuery partition they are written to.

    ``as_of: eval``: the cut-off's (the eval start's UTC date), so a re-run
    of the same evaluation replaces its own partition; ``as_of: end``
    (production): the UTC date the job runs.
    """
    if recommend_settings(config).as_of == "eval":
        return datetime.datetime.fromtimestamp(config.split_starts[0],
                                               datetime.timezone.utc).date()
    return datetime.datetime.now(datetime.timezone.utc).date()


class Written(NamedTuple):
    """The job's outputs, before they are written."""

    rows: beam.PCollection
    candidates: beam.PCollection
    related: beam.PCollection
    neighbours: beam.PCollection


def build(pipeline: beam.Pipeline, config: Config, rec, model_dir: str,
          bq_table: Optional[str] = None) -> Written:
    """Adds the recommend job to ``pipeline``: read, join, :class:`Recommend`, write.

    Args:
        pipeline: The graph to add to.
        config: Run config.
        rec: Its recommend settings (:func:`recommend_settings`).
        model_dir: The serving SavedModel (the published version's).
        bq_table: ``project:dataset.table``: also write the rows to its
            :func:`run_date` partition (``pipelines.bigquery``).

    Raises:
        ConfigError: ``bq_table`` is not ``project:dataset.table``, or there is
            no candidate source.
    """
    if not rec.sources:
        raise ConfigError("recommend: no candidate sources: set recommend.sources, or "
                          "model.retrieval.enabled: true for the two towers' nearest items")
    layout, registry = config.layout, config.registry
    p = sources.plan(config)
    at_eval = rec.as_of == "eval"
    history = None
    if registry.of_source(F.Source.HISTORY):
        history = (layout.history_at_eval_table if at_eval else layout.history_table) + "*"
    outputs = output_names(config)
    # Built first: a malformed table fails before anything is read.
    sink = bigquery.WriteToBigQuery(bq_table, run_date(config), schema(outputs)) if bq_table \
        else None
    items = pipeline | "ReadItems" >> ReadSideTable(layout.items_table + "*", registry.item_key,
                                                    registry)
    catalogue = (items | "EmbedItems" >> EmbedItems(model_dir, registry, rec.user_batch,
                                                    rec.max_catalogue_items)
                 if needs_towers(rec) else None)
    events = pipeline | "ReadEvents" >> ReadEvents(layout.events_log_pattern)
    if at_eval:
        cut = pipeline | "EvalStart" >> beam.Create([config.split_starts[0]])
    else:
        # As of the log's end: a second after its last event.
        cut = (events
               | "Timestamps" >> beam.Map(lambda e: e[F.TIMESTAMP_KEY])
               | "LastEvent" >> beam.CombineGlobally(max).without_defaults()
               | "AfterLast" >> beam.Map(lambda ts: ts + 1))
    state = events | "Sources" >> CandidateSources(p, cut, items)
    users = pipeline | "ReadUsers" >> ReadSideTable(layout.users_table + "*", registry.user_key,
                                                    registry)
    histories = (pipeline | "ReadHistory" >> ReadSideTable(history, registry.user_key, registry)
                 if history else pipeline | "NoHistory" >> beam.Create([]))
    pairs = state.pairs | "PairsByUser" >> beam.MapTuple(lambda key, pairs: (key[0], pairs))
    contexts = ({"user": users, "history": histories, "pairs": pairs}
                | "JoinUsers" >> beam.CoGroupByKey()
                | "Contexts" >> beam.FlatMap(user_contexts))
    segmented = (contexts
                 | "SegmentInputs" >> beam.Map(lambda c, cut: (c.user, {cut: list(c.pairs)}),
                                               cut=beam.pvalue.AsSingleton(cut))
                 | "SegmentPopular" >> SegmentPopular(p))
    state = state._replace(popular=(state.popular, segmented) | "AllPopular" >> beam.Flatten())
    out = contexts | "Recommend" >> Recommend(
        model_dir, registry, rec, p, outputs, temperature=config.model.retrieval.temperature,
        catalogue=catalogue, items=items, state=state, cut=cut)
    related = items | "RelatedItems" >> RelatedItems(
        p, rec.category_feature, rec.related_k, neighbours=state.neighbours,
        states=state.items, cut=cut, catalogue=catalogue)
    neighbours = (state.neighbours
                  | "NeighbourRows" >> beam.FlatMapTuple(lambda key, ranked: [
                      {"source": key[0], "item_id": key[2], "neighbour": other, "score": sim}
                      for other, sim in ranked]))
    for label, rows, prefix, table_schema in (
            ("Recommendations", out.rows, layout.recommendations, schema(outputs)),
            ("Candidates", out.candidates, layout.candidates_table, CANDIDATES_SCHEMA),
            ("Related", related, layout.related_items, RELATED_SCHEMA),
            ("Neighbours", neighbours, layout.neighbours_table, NEIGHBOURS_SCHEMA)):
        _ = rows | f"Write{label}" >> beam.io.WriteToParquet(prefix, table_schema,
                                                             file_name_suffix=PARQUET_SUFFIX)
    if sink is not None:
        _ = out.rows | "WriteBigQuery" >> sink
    return Written(out.rows, out.candidates, related, neighbours)


def run(config: Config, beam_args: Optional[Sequence[str]] = None,
        bq_table: Optional[str] = None) -> Dict[str, Any]:
    """Writes the top K of the catalogue for every user; returns the job's report.

    Users: everyone in the users table and everyone with events (a user the
    users table lacks gets its defaults), each with their history at the
    cut-off (``recommend.as_of``).

    Args:
        config: The run config.
        beam_args: Pass-through Beam flags (a BigQuery sink needs
            ``--temp_location gs://...`` and GCP credentials).
        bq_table: See :func:`build`.

    Raises:
        StageOrderError: ingest has not finished, no model is published, or
            it has no retrieval towers. ConfigError: the catalogue is over
            ``recommend.max_catalogue_items``, ``bq_table`` is malformed, or
            ``as_of: eval`` with item or user x item-attribute aggregates (they
            would leak the eval window).
    """
    rec = recommend_settings(config)
    layout = config.layout
    if not rec.sources:
        build(beam.Pipeline(), config, rec, "")  # raises: nothing to recommend with
    if bq_table:
        bigquery.partition(bq_table, run_date(config))  # a malformed table fails first
    version, model_dir = _check_inputs(config, rec.max_catalogue_items)
    clear(layout.recommend_dir)
    start = time.time()
    pipeline = beam.Pipeline(options=pipeline_options(beam_args))
    build(pipeline, config, rec, model_dir, bq_table)
    result = pipeline.run()
    result.wait_until_finish()
    counts = dl.counts_from_result(result)
    seconds = time.time() - start
    report = {"counts": counts, "seconds": round(seconds, 2),
              "users": counts.get("recommend/users", 0),
              "users_per_s": round(counts.get("recommend/users", 0) / seconds, 1),
              "index": index_report(rec, counts),
              "candidates": counts.get("recommend/candidates", 0),
              "settings": {"k": rec.k, "blend": dict(rec.blend),
                           "sources": [dataclasses.asdict(s) for s in rec.sources],
                           "as_of": rec.as_of, "exclude_label": rec.exclude_label,
                           "exclude_days": rec.exclude_days,
                           "max_per_category": rec.max_per_category,
                           "category_feature": rec.category_feature},
              "recommendations": layout.recommendations + "-*" + PARQUET_SUFFIX,
              "candidates_table": layout.candidates_table + "-*" + PARQUET_SUFFIX,
              "related": layout.related_items + "-*" + PARQUET_SUFFIX,
              "model_version": version, "model_dir": model_dir}
    if bq_table:
        report["bigquery"] = bigquery.partition(bq_table, run_date(config))
    write_report(layout.recommend_report, report)
    return report
