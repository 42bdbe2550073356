"""Recommend job: the top K of the whole catalogue for every user.

Stages (stable labels): ReadItems → EmbedItems (``pipelines.candidates``: the
``item_embedding`` signature on batches, one catalogue matrix; with a
two-tower source or the retrieval blend); ReadEvents (the clean log ingest
wrote) → Sources (``pipelines.candidate_sources``: every source's state at
the cut-off: the eval start, or with ``as_of: end`` a second after the log's
last event); ReadUsers + ReadHistory + the users' pair states → JoinUsers
(CoGroupByKey: no user table is held whole in memory) → SegmentPopular →
Recommend (``pipelines.ranking``: [EmbedUsers →] Retrieve → Rank → TopK) → WriteRecommendations, WriteCandidates; RelatedItems
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
import time
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
import pyarrow as pa

from pipelines import bigquery
from pipelines import dead_letter as dl
from pipelines import sources
from pipelines.candidate_sources import CandidateSources, SegmentPopular
from pipelines.candidates import EmbedItems, index_report
from pipelines.event_log import ReadEvents
from pipelines.inference import COLUMNS_SIGNATURE, signature_names
from pipelines.options import new_pipeline
from pipelines.ranking import Recommend, user_contexts
from pipelines.related import SCHEMA as RELATED_SCHEMA, RelatedItems
from pipelines.score import ReadSideTable
from pipelines.side_inputs import popular_limit, run_checked
from pipelines.sinks import parquet_rows
from shoprec.core import registry as F
from shoprec.core.config import Config
from shoprec.core.recommend_config import RETRIEVAL, recommend_settings
from shoprec.core.errors import ConfigError, StageOrderError
from shoprec.core.layout import PARQUET_SUFFIX
from shoprec.io import models
from shoprec.io.outputs import clear, require_success, write_report


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
          bq_table: Optional[str] = None, columns: bool = True) -> Written:
    """Adds the recommend job to ``pipeline``: read, join, :class:`Recommend`, write.

    Args:
        pipeline: The graph to add to.
        config: Run config.
        rec: Its recommend settings (:func:`recommend_settings`).
        model_dir: The serving SavedModel (the published version's).
        bq_table: ``project:dataset.table``: also write the rows to its
            :func:`run_date` partition (``pipelines.bigquery``).
        columns: Rank with the model's ``serving_columns`` (``Recommend``'s).

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
    state = state._replace(popular=(state.popular, segmented) | "AllPopular" >> beam.Flatten()
                           | "PopularLimit" >> popular_limit(rec.max_catalogue_items))
    out = contexts | "Recommend" >> Recommend(
        model_dir, registry, rec, p, outputs, temperature=config.model.retrieval.temperature,
        catalogue=catalogue, items=items, state=state, cut=cut, columns=columns)
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
        _ = rows | f"Write{label}" >> parquet_rows(prefix, table_schema, PARQUET_SUFFIX)
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
    pipeline = new_pipeline(beam_args)
    build(pipeline, config, rec, model_dir, bq_table,
          columns=COLUMNS_SIGNATURE in signature_names(model_dir))
    result = run_checked(pipeline)
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
