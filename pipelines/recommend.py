"""Recommend job: the top K of the whole catalogue for every user.

Stages (stable labels): ReadItems → EmbedItems (``pipelines.candidates``: the
``item_embedding`` signature on batches, one catalogue matrix); ReadUsers +
ReadHistory + ReadExclusions (``pipelines.exclusions``) → JoinUsers
(CoGroupByKey: no user table is held whole in memory) → Recommend (the
composite :class:`Recommend`: EmbedUsers → Retrieve → Rank → TopK) →
WriteRecommendations, and with ``--bq_table`` WriteBigQuery
(``pipelines.bigquery``: the run date's partition, replaced).

Retrieval is exact (``pipelines.candidates.top_n``) or, with ``recommend.index:
faiss``, approximate (``pipelines.candidates.FaissIndex``, built once per
worker), with the items a user is excluded from never returned; with faiss, a
``recommend.faiss.recall_sample`` share of the users (picked by a hash of
their id) is also retrieved exactly and the counters give the index's
recall@candidates against exact. The candidates' raw examples, built by the
row assembler ingest uses (``pipelines.rows``), go through the serving
signature, and the blend of its outputs ranks them. Items come only from the
current item table, so an item no longer listed is never recommended.
Every worker holds the catalogue's embeddings and item rows. The model is the
published one (the version ``models/CURRENT`` names), not this run's
``train/model``; the report names the version.

Output: ``recommend/recommendations-*.parquet``, one row per (user, rank):
``user_id``, ``rank`` (1 = best), ``item_id``, ``score`` (the blend),
``retrieval_score`` (the two towers' dot product) and each ranked output
(``p_<task>``).
"""

from __future__ import annotations

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
from pipelines.candidates import (Catalogue, EmbedItems, ExactIndex, build_index,
                                  in_recall_sample, index_report, overlap, pairs_bytes,
                                  pairs_examples)
from pipelines.exclusions import ReadExclusions
from pipelines.inference import ChunkHandler, signature_names
from pipelines.options import pipeline_options
from pipelines.rows import query_row, raw_row
from pipelines.score import ReadSideTable
from shoprec.core import registry as F
from shoprec.core.config import Config, RETRIEVAL, recommend_settings
from shoprec.core.errors import ConfigError, StageOrderError
from shoprec.core.layout import PARQUET_SUFFIX
from shoprec.io import models
from shoprec.io.outputs import clear, require_success, write_report


class UserContext(NamedTuple):
    """What ranking a user needs: their row, history at the cut-off, excluded items."""

    user_id: str
    user: Optional[Dict[str, Any]]
    history: Optional[Dict[str, Any]]
    excluded: Tuple[str, ...]


def _ranking_examples(chunk) -> Dict[str, List[bytes]]:
    return {"examples": [s for _, candidates in chunk for _, _, _, s in candidates]}


def _ranking_bytes(chunk) -> int:
    return sum(len(s) for _, candidates in chunk for _, _, _, s in candidates)


def user_contexts(key_and_groups) -> Iterable[UserContext]:
    """CoGroupByKey of users, history and exclusions → one context per known user."""
    user_id, groups = key_and_groups
    users, history = list(groups["user"]), list(groups["history"])
    if not users and not history:
        return  # exclusions of a user neither table knows: nobody to recommend to
    yield UserContext(user_id, users[0] if users else None, history[0] if history else None,
                      tuple(sorted(set(groups["excluded"]))))


class _Retrieve(beam.DoFn):
    """User embeddings → each user's candidates, as raw ranking examples.

    Args:
        registry: The run's registry.
        settings: ``recommend_settings(config)``: candidates, category
            feature, index and its recall sample.
    """

    def __init__(self, registry: F.Registry, settings):
        self._registry = registry
        self._settings = settings
        self._n = int(settings.candidates)
        self._category = settings.category_feature
        self._encode = examples.Encoder(registry.example_names(include_labels=False), registry)
        self._indexed = None
        self._position: Dict[str, int] = {}
        self._index = self._exact = None

    def _recall(self, contexts, queries, excluded, index) -> None:
        """Counts how many of the exact top N the index found, for the sampled users."""
        share = self._settings.faiss.recall_sample
        sample = [j for j, ctx in enumerate(contexts) if in_recall_sample(ctx.user_id, share)]
        if not sample:
            return
        _, exact = self._exact.search(queries[sample], self._n, [excluded[j] for j in sample])
        found, total = overlap(index[sample], exact)
        counter = beam.metrics.Metrics.counter
        counter(dl.NAMESPACE, "recommend/index_recall_users").inc(len(sample))
        counter(dl.NAMESPACE, "recommend/index_recall_found").inc(found)
        counter(dl.NAMESPACE, "recommend/index_recall_relevant").inc(total)

    def process(self, result: PredictionResult, catalogue: Catalogue, items):
        registry = self._registry
        if self._indexed is not catalogue:  # once per side-input value, not per batch
            self._position = {item_id: i for i, item_id in enumerate(catalogue.ids)}
            self._index = build_index(catalogue.vectors, self._settings)
            self._exact = ExactIndex(catalogue.vectors)
            self._indexed = catalogue
        position = self._position
        contexts = [ctx for ctx, _ in result.example]
        excluded = [[position[i] for i in ctx.excluded if i in position] for ctx in contexts]
        beam.metrics.Metrics.counter(dl.NAMESPACE, "recommend/excluded_items").inc(
            sum(len(e) for e in excluded))
        queries = np.asarray(result.inference["embedding"], np.float32)
        scores, index = self._index.search(queries, self._n, excluded)
        if self._settings.index != "exact":
            self._recall(contexts, queries, excluded, index)
        chunk = []
        for ctx, row_scores, row_index in zip(contexts, scores, index):
            query = query_row(ctx.user_id, ctx.user, ctx.history, registry)
            candidates = []
            for score, i in zip(row_scores, row_index):
                if i < 0:
                    continue
                item_id = catalogue.ids[i]
                event = {F.USER_KEY: ctx.user_id, F.ITEM_KEY: item_id}
                row = raw_row(event, ctx.user, items[item_id], ctx.history, registry, query)
                candidates.append((item_id, float(score), row.get(self._category),
                                   self._encode(row)))
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
            for item_id, retrieval_score, category, _ in candidates:
                out = {name: float(result.inference[name][offset]) for name in self._outputs}
                offset += 1
                score = self._score(out, retrieval_score)
                rows.append(dict(out, user_id=user_id, item_id=item_id, score=score,
                                 retrieval_score=retrieval_score,
                                 _category=category))
            ordered = sorted(rows, key=lambda r: (-r["score"], r["item_id"]))
            picked = self._pick(ordered)
            if len(picked) < self._k:
                beam.metrics.Metrics.counter(dl.NAMESPACE, "recommend/short").inc()
            beam.metrics.Metrics.counter(dl.NAMESPACE, "recommend/users").inc()
            for rank, row in enumerate(picked, start=1):
                row.pop("_category")
                yield dict(row, rank=rank)


class Recommend(beam.PTransform):
    """User contexts → their top-K rows from the whole catalogue.

    Stages: BatchUsers → UserExamples → EmbedUsers (``user_embedding``) →
    Retrieve (exact top ``candidates``) → Rank (``serving_default``) → TopK.

    Args:
        model_dir: The exported model (retrieval signatures included).
        registry: The run's registry.
        settings: ``shoprec.core.config.recommend_settings(config)``.
        outputs: Serving outputs to write per row (``p_<task>``).
        temperature: The retrieval temperature the towers were trained with.
        catalogue: Singleton PCollection of :class:`Catalogue`.
        items: (item_id, item row) of every catalogue item.
    """

    def __init__(self, model_dir: str, registry: F.Registry, settings, outputs: Sequence[str],
                 *, temperature: float, catalogue, items):
        super().__init__()
        self._temperature = temperature
        self._model_dir = model_dir
        self._registry = registry
        self._settings = settings
        self._outputs = tuple(outputs)
        self._catalogue = catalogue
        self._items = items

    def expand(self, contexts):
        registry, rec = self._registry, self._settings
        encode = examples.Encoder(registry.query_names(), registry)

        def query_chunk(batch: List[UserContext]):
            rows = [query_row(c.user_id, c.user, c.history, registry) for c in batch]
            return [(c, encode(r)) for c, r in zip(batch, rows)]

        return (contexts
                | "BatchUsers" >> beam.BatchElements(min_batch_size=1,
                                                     max_batch_size=rec.user_batch)
                | "UserExamples" >> beam.Map(query_chunk)
                | "EmbedUsers" >> RunInference(ChunkHandler(
                    self._model_dir, "user_embedding", pairs_examples, pairs_bytes))
                | "Retrieve" >> beam.ParDo(
                    _Retrieve(registry, rec),
                    catalogue=beam.pvalue.AsSingleton(self._catalogue),
                    items=beam.pvalue.AsDict(self._items))
                | "Rank" >> RunInference(ChunkHandler(
                    self._model_dir, "serving_default", _ranking_examples, _ranking_bytes))
                | "TopK" >> beam.ParDo(_TopK(rec.k, rec.blend, self._temperature, self._outputs,
                                             rec.max_per_category, rec.category_feature)))


def output_names(config: Config) -> List[str]:
    """The serving outputs each recommendation row carries: every task's but multiclass."""
    names = [f"p_{t.name}" for t in config.model.tasks if t.type != "multiclass"]
    if config.model.architecture == "esmm":
        names.append(f"p_{config.model.esmm.cvr_output}")
    return names


def schema(outputs: Sequence[str]) -> pa.Schema:
    """Parquet schema of the recommendations (see the module docstring)."""
    return pa.schema([("user_id", pa.string()), ("rank", pa.int32()), ("item_id", pa.string()),
                      ("score", pa.float32()), ("retrieval_score", pa.float32())]
                     + [(name, pa.float32()) for name in outputs])


def _check_inputs(config: Config, limit: int) -> Tuple[str, str]:
    """The published version and its model, after checking the job can run on them."""
    import tensorflow as tf

    # Item aggregates and user x item-attribute aggregates are served as their
    # state after the log's last event only: lists judged as of the eval start
    # would see the eval window's own events through them.
    served_at_end = config.registry.item_aggregates() + config.registry.pair_aggregates()
    if served_at_end and recommend_settings(config).as_of == "eval":
        raise ConfigError(f"recommend: as_of: eval with aggregates "
                          f"{[f.name for f in served_at_end]} would leak the eval window "
                          f"(their served state is the log's end); use as_of: end, or a "
                          f"config without them")
    layout = config.layout
    require_success(layout.ingest_dir, "ingest")
    version, model_dir = models.require_current(layout)
    if "user_embedding" not in signature_names(model_dir):
        raise StageOrderError("the model has no retrieval towers to pick candidates with; "
                              "set model.retrieval.enabled: true and run `shoprec train` again")
    files = tf.io.gfile.glob(layout.items_table + "*")
    items = sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))
    if items > limit:
        raise ConfigError(f"recommend: the catalogue has {items} items and every worker holds "
                          f"all their embeddings; recommend.max_catalogue_items is {limit}")
    return version, model_dir


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


def build(pipeline: beam.Pipeline, config: Config, rec, model_dir: str,
          bq_table: Optional[str] = None) -> None:
    """Adds the recommend job to ``pipeline``: read, join, :class:`Recommend`, write.

    Args:
        pipeline: The graph to add to.
        config: Run config.
        rec: Its recommend settings (:func:`recommend_settings`).
        model_dir: The serving SavedModel (the published version's).
        bq_table: ``project:dataset.table``: also write the rows to its
            :func:`run_date` partition (``pipelines.bigquery``).

    Raises:
        ConfigError: ``bq_table`` is not ``project:dataset.table``.
    """
    layout, registry = config.layout, config.registry
    eval_ts = config.split_starts[0]
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
    catalogue = items | "EmbedItems" >> EmbedItems(model_dir, registry, rec.user_batch,
                                                   rec.max_catalogue_items)
    users = pipeline | "ReadUsers" >> ReadSideTable(layout.users_table + "*", registry.user_key,
                                                    registry)
    histories = (pipeline | "ReadHistory" >> ReadSideTable(history, registry.user_key, registry)
                 if history else pipeline | "NoHistory" >> beam.Create([]))
    if rec.exclude_label and rec.exclude_days:
        splits = ["train"] if at_eval else list(config.splits)
        excluded = pipeline | "ReadExclusions" >> ReadExclusions(
            [layout.examples_pattern(s) for s in splits], registry, rec.exclude_label,
            rec.exclude_days * 86400, eval_ts if at_eval else None)
    else:
        excluded = pipeline | "NoExclusions" >> beam.Create([])
    contexts = ({"user": users, "history": histories, "excluded": excluded}
                | "JoinUsers" >> beam.CoGroupByKey()
                | "Contexts" >> beam.FlatMap(user_contexts))
    rows = contexts | "Recommend" >> Recommend(
        model_dir, registry, rec, outputs, temperature=config.model.retrieval.temperature,
        catalogue=catalogue, items=items)
    _ = rows | "WriteRecommendations" >> beam.io.WriteToParquet(
        layout.recommendations, schema(outputs), file_name_suffix=PARQUET_SUFFIX)
    if sink is not None:
        _ = rows | "WriteBigQuery" >> sink


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
              "settings": {"k": rec.k, "candidates": rec.candidates, "blend": dict(rec.blend),
                           "as_of": rec.as_of, "exclude_label": rec.exclude_label,
                           "exclude_days": rec.exclude_days,
                           "max_per_category": rec.max_per_category,
                           "category_feature": rec.category_feature},
              "recommendations": layout.recommendations + "-*" + PARQUET_SUFFIX,
              "model_version": version, "model_dir": model_dir}
    if bq_table:
        report["bigquery"] = bigquery.partition(bq_table, run_date(config))
    write_report(layout.recommend_report, report)
    return report
