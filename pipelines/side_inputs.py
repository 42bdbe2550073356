"""Side inputs: what every worker holds whole, the allow-list of them, and their limits.

A side input is read whole by every worker process of the step that reads
it, so nothing that grows with the users or the events is one: the users
table, the history tables, pairs and events are joined by key
(``pipelines.keyed``, ``CoGroupByKey``, score's bucketed pair join). What
stays a side input is catalogue-sized (the items, and tables keyed by item
per cut-off and source, derived from the events but no larger than the
catalogue) or a scalar (a cut-off, the global prior per day), where a keyed
join would cost more: joined by item, an item everyone buys would be one
worker's group. Each is on :data:`ALLOWED` with the setting that bounds it,
and the job checks that setting before any worker builds the table
(:class:`Limited`, or recommend's count of its items table).
``tests/pipelines/test_side_inputs.py`` builds every job and fails on any
side input that reads the users table, the event log or the catalogue and
is not on the list.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from typing import Any, Dict, List, NamedTuple, Optional, Set, Tuple

import apache_beam as beam
from apache_beam.pipeline import PipelineVisitor

from pipelines.options import run_job
from shoprec.core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Allowed:
    """A side input a step may hold.

    Attributes:
        step: The reading step's full label (``fnmatch`` pattern).
        table: The full label of the step that makes the table (pattern).
        holds: What it holds and why it is no larger than its limit.
        limit: The setting that bounds it (``section.key``), or ``scalar``: one
            value (a count, a cut-off, the prior's few counts per day).
    """

    step: str
    table: str
    holds: str
    limit: str

    def matches(self, step: str, table: str) -> bool:
        return fnmatch.fnmatchcase(step, self.step) and fnmatch.fnmatchcase(table, self.table)


SCALAR = "scalar"
_CATALOGUE = "recommend.max_catalogue_items"
_BY_ITEM = ("keyed by item (per cut-off and source) or attribute value: the clean log names "
            "catalogue items only")
ALLOWED: Tuple[Allowed, ...] = (
    # The catalogue itself.
    Allowed("Ingest/*", "Ingest/CatalogueLimit/Checked", "the item rows",
            "ingest.max_catalogue_items"),
    Allowed("Ingest/*", "Ingest/*/ItemColumns", "the columns of the item rows a step reads "
            "(ids, history values, an aggregate key's attributes)",
            "ingest.max_catalogue_items"),
    Allowed("Score/*", "CatalogueLimit/Checked", "the item rows", "ingest.max_catalogue_items"),
    Allowed("Recommend/Retrieve", "ReadItems/Decode", "the item rows (recommend counts its "
            "items table before the job)", _CATALOGUE),
    Allowed("*", "EmbedItems/Catalogue", "the items' embeddings", _CATALOGUE),
    Allowed("EmbedItems/ToList/*/InjectDefault", "EmbedItems/ToList/*/UnKey",
            "the items' embeddings", _CATALOGUE),
    # The candidate sources' tables (ingest's label mode candidates, and recommend).
    Allowed("*", "*Sources/ItemStates/*", "each item's state per cut-off; " + _BY_ITEM,
            _CATALOGUE),
    Allowed("*", "*Sources/AllNeighbours", "each item's co-occurrence neighbours; " + _BY_ITEM,
            _CATALOGUE),
    Allowed("*", "*Sources/Neighbours*/BasketCounts", "each item's baskets; " + _BY_ITEM,
            _CATALOGUE),
    Allowed("*", "*Sources/Attributes/MembersQuota", "each attribute value's best items; "
            + _BY_ITEM, _CATALOGUE),
    Allowed("*", "*Sources/Attributes/Values", "each item's attribute value", _CATALOGUE),
    Allowed("*", "*PopularLimit/Checked", "the popular lists per (source, cut-off, "
            "segment): a user attribute's values, counted by Limited", _CATALOGUE),
    Allowed("RelatedItems/Related", "RelatedItems/CategoryBest/*", "each category's best "
            "items", _CATALOGUE),
    # Scalars.
    Allowed("*Limit/Checked", "*Limit/Check", "the count a Limited checks", SCALAR),
    Allowed("*Limit/Count/*/InjectDefault", "*Limit/Count/*/UnKey", "that count", SCALAR),
    Allowed("*", "*AfterLast", "the cut-off: a second after the log's last event", SCALAR),
    Allowed("*LastEvent/InjectDefault", "*LastEvent/UnKey", "the log's last timestamp",
            SCALAR),
    Allowed("Ingest/AddAggregates/*", "Ingest/AddAggregates/EndDay", "the log's last day",
            SCALAR),
    Allowed("Ingest/AddAggregates/*", "Ingest/AddAggregates/Prior", "the global prior: "
            "events per (day, event type), days x types", SCALAR),
    Allowed("Ingest/AddAggregates/AllDayCounts/*/InjectDefault",
            "Ingest/AddAggregates/AllDayCounts/*/UnKey", "the same counts", SCALAR),
    Allowed("Featurize/*", "Featurize/*", "TFT's analyzer results and its encoder: counts, "
            "means, quantiles, vocabulary sizes and paths (a vocabulary is loaded by the "
            "transform graph, capped by its feature's top_k)", SCALAR),
    Allowed("WriteTransformFn/*", "WriteTransformFn/*", "the transform graph's and its "
            "metadata's paths", SCALAR),
    # Beam's sinks: the names of the shards written.
    Allowed("*/WriteImpl/*", "*/WriteImpl/*", "the written shards' names", SCALAR),
    Allowed("*/BigQueryBatchFileLoads/*", "*/BigQueryBatchFileLoads/*",
            "the load files' and jobs' names", SCALAR),
)


class SideInput(NamedTuple):
    """One side input of a job's graph."""

    step: str  # full label of the step that reads it
    table: str  # full label of the step that makes it
    reads: Tuple[str, ...]  # the file patterns it is derived from, sorted
    limited: bool  # made by (or inside) a Limited: counted before any step holds it


def _patterns(applied) -> Set[str]:
    """The file patterns a root step reads: its and its enclosing transforms' ``_pattern``."""
    out = set()
    while applied is not None:
        pattern = getattr(applied.transform, "_pattern", None)
        if isinstance(pattern, str):
            out.add(pattern)
        applied = applied.parent
    return out


def listing(pipeline: beam.Pipeline) -> List[SideInput]:
    """Every side input of ``pipeline``'s graph (built, not run), with what it reads."""
    leaves: List[Any] = []

    class Visitor(PipelineVisitor):
        def visit_transform(self, applied):
            leaves.append(applied)

    pipeline.visit(Visitor())
    producer = {id(out): leaf for leaf in leaves for out in leaf.outputs.values()}
    memo: Dict[int, Set[str]] = {}

    def reads(pcoll) -> Set[str]:
        key = id(pcoll)
        if key not in memo:  # a graph has no cycles: each PCollection is traced once
            leaf = producer.get(key)
            found: Set[str] = set()
            if leaf is not None:
                upstream = [p for p in leaf.inputs if isinstance(p, beam.pvalue.PCollection)]
                upstream += [s.pvalue for s in leaf.side_inputs]
                found = _patterns(leaf) if not upstream else set()
                for p in upstream:
                    found |= reads(p)
            memo[key] = found
        return memo[key]

    def limited(applied) -> bool:
        while applied is not None:
            if isinstance(applied.transform, Limited):
                return True
            applied = applied.parent
        return False

    out = []
    for leaf in leaves:
        for side in leaf.side_inputs:
            made = producer.get(id(side.pvalue))
            out.append(SideInput(leaf.full_label, made.full_label if made else "",
                                 tuple(sorted(reads(side.pvalue))), limited(made)))
    return out


def allowed(step: str, table: str) -> Optional[Allowed]:
    """The entry of :data:`ALLOWED` that lets ``step`` read ``table``, or None."""
    return next((a for a in ALLOWED if a.matches(step, table)), None)


class Limited(beam.PTransform):
    """A table for side inputs → the same table, once it is known to be within ``limit``.

    Its elements are counted first; a count over ``limit`` fails the job
    with a :class:`ConfigError` naming the setting, before any step that
    reads the table as a side input holds it.

    Args:
        limit: The most elements.
        setting: The setting it comes from (``ingest.max_catalogue_items``).
        what: What the elements are, for the message (``items``).
    """

    def __init__(self, limit: int, setting: str, what: str):
        super().__init__()
        self._limit, self._setting, self._what = int(limit), setting, what

    def expand(self, table):
        limit, setting, what = self._limit, self._setting, self._what

        def check(n: int) -> int:
            if n > limit:
                raise ConfigError(f"{n:,} {what}, and every worker holds them all; "
                                  f"{setting} is {limit:,}")
            return n

        checked = (table
                   | "Count" >> beam.combiners.Count.Globally()
                   | "Check" >> beam.Map(check))
        return table | "Checked" >> beam.Map(lambda row, _: row,
                                             beam.pvalue.AsSingleton(checked))


def popular_limit(limit: int) -> Limited:
    """The check of the candidate sources' popular lists, one per (source, cut-off,
    segment): segments are a user attribute's values, which no catalogue bounds."""
    return Limited(limit, "recommend.max_catalogue_items",
                   "popular lists (segments x cut-offs)")


_CONFIG_ERROR = re.compile(r"ConfigError: (.+?)(?: \[while running [^\]]*\])*$", re.M)


def run_checked(pipeline: beam.Pipeline):
    """Runs ``pipeline`` to the end; a :class:`Limited` failure comes out as its
    :class:`ConfigError`, one line, whichever runner ran it.

    The in-process runner re-raises the error with the step's name appended;
    the multi-process runner and Dataflow raise their own exception with its
    traceback as text.

    Returns:
        The finished pipeline's result.
    """
    try:
        result = run_job(pipeline)
    except Exception as err:  # noqa: BLE001  (re-raised unless it holds a Limited error)
        found = _CONFIG_ERROR.search(f"ConfigError: {err}" if isinstance(err, ConfigError)
                                     else str(err))
        if found is None:
            raise
        raise ConfigError(found.group(1)) from err
    return result
