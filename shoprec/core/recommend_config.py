"""The ``recommend`` section: candidate sources, the towers' index, blend and rules.

Its dataclasses, the checks of the section against the tasks and the
registry (:func:`check_recommend`), and :func:`recommend_settings`, the
section with its defaults filled in from the tasks and the registry, which
every stage that builds or judges lists reads.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

from shoprec.core import registry as F
from shoprec.core.dataset import FUNNEL
from shoprec.core.sections import ConfigError

# The blend term for the two towers' score: exp(retrieval_score / temperature).
RETRIEVAL = "retrieval"
INDEXES = ("exact", "faiss")
FAISS_KINDS = ("hnsw", "ivf", "flat")
# Candidate sources (``pipelines.sources``): the two towers' nearest items, the
# user's own items, items bought with theirs, recent best-sellers, items
# sharing an attribute with theirs (H&M's product code: the same garment in
# another colour), and new items (no event yet) of the categories that sell.
TWO_TOWER, REPURCHASE, CO_OCCURRENCE, POPULAR, ATTRIBUTE, NEW = (
    "two_tower", "repurchase", "co_occurrence", "popular", "attribute", "new")
SOURCE_KINDS = (TWO_TOWER, REPURCHASE, CO_OCCURRENCE, POPULAR, ATTRIBUTE, NEW)


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    """One candidate source of ``recommend.sources``.

    Every source proposes up to ``quota`` items per user from the events
    strictly before the cut-off; the lists are unioned per user, and each
    candidate keeps which sources proposed it and its rank in each.

    Attributes:
        name: Its name in the candidate tables and the candidate features'
            ``signal`` (``<name>.rank``); unique.
        quota: Items it proposes per user.
        kind: ``two_tower``, ``repurchase``, ``co_occurrence``, ``popular``,
            ``attribute`` or ``new`` (None: ``name``).
        events: {funnel event: weight} it reads (empty: the relevance label's
            event, weight 1): repurchase scores an item by the user's weighted
            events on it; co_occurrence makes baskets of these events and
            weighs the user's recent items by them; popular counts them;
            attribute weighs the user's items by them; new counts them per
            value of its ``attribute``.
        half_life_days: repurchase, co_occurrence and attribute: an event's
            weight halves every this many days before the cut-off (0: no decay).
        basket_s: co_occurrence: a basket is one user's events in one window
            of this many seconds (UTC-aligned).
        neighbours: co_occurrence: the most similar items kept per item.
        recent_items: co_occurrence: the user's latest items it expands.
        max_basket: co_occurrence: a basket's first items counted (bounds the
            pairs a bot's basket makes).
        days: popular and new: the window before the cut-off its counts cover.
        segment: popular: a user categorical feature; the list is the
            segment's own best-sellers (None: everyone's).
        segment_edges: popular: a numeric ``segment`` (age) is bucketed at
            these ascending edges.
        attribute: attribute: an item feature; an item scores the user's
            weight on the items sharing its value (ties: the more popular
            first), from the ``quota`` most popular items of each value.
            new: the category of the catalogue items with no event before the
            cut-off; everyone gets the same list, these items by their
            category's weighted events in ``days`` (the score), ties by item id.
    """

    name: str = TWO_TOWER
    quota: int = 50
    kind: Optional[str] = None
    events: Tuple[Tuple[str, float], ...] = ()
    half_life_days: float = 0.0
    basket_s: int = 86400
    neighbours: int = 20
    recent_items: int = 10
    max_basket: int = 50
    days: int = 7
    segment: Optional[str] = None
    segment_edges: Tuple[float, ...] = ()
    attribute: Optional[str] = None

    @property
    def source_kind(self) -> str:
        return self.kind or self.name


@dataclasses.dataclass(frozen=True)
class FaissConfig:
    """``recommend.index: faiss``: the approximate inner-product index.

    Built once per worker from the catalogue's embeddings.

    Attributes:
        kind: ``hnsw`` (``IndexHNSWFlat``: a graph, no training), ``ivf``
            (``IndexIVFFlat``: k-means lists, ``nprobe`` of ``nlist`` searched)
            or ``flat`` (``IndexFlatIP``: exact, for checking).
        hnsw_m: HNSW neighbours per node.
        ef_construction: HNSW candidate list while building.
        ef_search: HNSW candidate list while searching (at least the
            items asked for).
        nlist: IVF lists (0: ``4 * sqrt(items)``, at most ``items / 39``,
            faiss's fewest training points per list).
        nprobe: IVF lists searched per query.
        recall_sample: Share of users also retrieved exactly, in the job,
            to report the index's recall@candidates against exact.
    """

    kind: str = "hnsw"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    nlist: int = 0
    nprobe: int = 8
    recall_sample: float = 0.1


@dataclasses.dataclass(frozen=True)
class RecommendConfig:
    """``shoprec recommend``: the top K of the whole catalogue for every user.

    Each of ``sources`` proposes up to its quota of items per user (the two
    towers' nearest, exact or with an index; the user's own items; items
    bought with theirs; best-sellers); the union goes through the multi-task
    ranker, and the final score is the product of its outputs raised to their ``blend``
    exponents, ``prod_o p_o ** w_o`` (``{p_click: 1}``: rank by click
    probability given an impression). ``retrieval`` stands for the towers'
    ``exp(s / T)``: how likely the user is to pick the item at all, exposure
    included (``{retrieval: 1, p_conversion: 1}``: likely picks that also buy).

    Attributes:
        k: Recommendations per user.
        sources: The candidate sources (:class:`SourceConfig`), their quotas
            adding up to at least ``k``; empty: the two towers' 50 nearest
            where the model has towers, else nothing to recommend with.
        blend: {serving output: exponent}; empty: the first binary task's
            probability alone.
        as_of: ``eval``: as of the eval split's start (history and purchases
            before it; the recommendations are judged against the eval
            window); ``end``: after every user's last event (production).
        exclude_label: A 0/1 label (a purchase): items the user had it for in
            the ``exclude_days`` before the cut-off are not recommended.
        exclude_days: 0: no exclusion.
        max_per_category: At most this many items of one category in a
            user's top K (0: no cap); relaxed, and counted, where the
            candidates run out.
        category_feature: The item feature the cap counts (None: the first
            categorical item feature).
        relevance_label: The label whose positives in the eval window judge
            the recommendations (None: the first binary task's label).
        popularity_days: The popularity baseline counts ``relevance_label``
            positives in this many days before the cut-off.
        user_batch: Users per retrieval and ranking call.
        max_catalogue_items: Every worker holds the catalogue's embeddings,
            its co-occurrence neighbours and recent counts; a larger catalogue
            fails the job with a message naming this limit.
        index: ``exact`` (every item scored: blocked matrix product and
            top-k) or ``faiss`` (approximate; see :class:`FaissConfig`).
        faiss: The faiss index's settings.
        related_k: Related items written per catalogue item
            (``recommend/related-*.parquet``).
    """

    k: int = 10
    sources: Tuple[SourceConfig, ...] = dataclasses.field(
        default=(), metadata={"sections": SourceConfig})
    blend: Tuple[Tuple[str, float], ...] = ()
    as_of: str = "eval"
    exclude_label: Optional[str] = None
    exclude_days: int = 30
    max_per_category: int = 0
    category_feature: Optional[str] = None
    relevance_label: Optional[str] = None
    popularity_days: int = 7
    user_batch: int = 256
    max_catalogue_items: int = 2_000_000
    index: str = "exact"
    faiss: FaissConfig = FaissConfig()
    related_k: int = 10

    def source(self, kind: str) -> Optional[SourceConfig]:
        """The first source of a kind, or None."""
        return next((s for s in self.sources if s.source_kind == kind), None)

    @property
    def tower_quota(self) -> int:
        """Items the two towers retrieve per user (0: no two-tower source)."""
        towers = self.source(TWO_TOWER)
        return towers.quota if towers else 0


def check_recommend(config, where: str, label_names) -> None:
    """Checks the recommend section against the tasks and the registry.

    Raises:
        ConfigError: an inconsistent setting.
    """
    rec = config.recommend
    outputs = {f"p_{t.name}" for t in config.model.tasks if t.type != "multiclass"}
    if config.model.architecture == "esmm":
        outputs.add(f"p_{config.model.esmm.cvr_output}")
    outputs.add(RETRIEVAL)
    if rec.k < 1 or rec.user_batch < 1 or rec.related_k < 1:
        raise ConfigError(f"{where}: recommend needs k, user_batch and related_k >= 1")
    check_sources(config, where)
    if rec.as_of not in ("eval", "end"):
        raise ConfigError(f"{where}: recommend.as_of must be eval or end")
    bad = sorted(name for name, w in rec.blend if name not in outputs or float(w) < 0)
    if bad:
        raise ConfigError(f"{where}: recommend.blend: {bad}; blend outputs {sorted(outputs)} "
                          "with exponents >= 0")
    for key in ("exclude_label", "relevance_label"):
        value = getattr(rec, key)
        if value is not None and value not in label_names:
            raise ConfigError(f"{where}: recommend.{key} must be a label: {sorted(label_names)}")
    if not any(t.type == "binary" for t in config.model.tasks) and (
            not rec.blend or rec.relevance_label is None):
        raise ConfigError(f"{where}: recommend.blend and relevance_label must be set when no "
                          "task is binary")
    feature = config.registry.by_name.get(rec.category_feature or "")
    if rec.category_feature is not None and (
            feature is None or feature.source != F.Source.ITEM
            or feature.kind not in (F.Kind.ID, F.Kind.CATEGORICAL)):
        raise ConfigError(f"{where}: recommend.category_feature must be a categorical item "
                          "feature")
    if rec.max_per_category < 0 or rec.exclude_days < 0 or rec.popularity_days < 1:
        raise ConfigError(f"{where}: recommend.max_per_category and exclude_days must be "
                          ">= 0, popularity_days >= 1")
    if rec.index not in INDEXES:
        raise ConfigError(f"{where}: recommend.index must be one of {list(INDEXES)}")
    ann = rec.faiss
    if ann.kind not in FAISS_KINDS:
        raise ConfigError(f"{where}: recommend.faiss.kind must be one of {list(FAISS_KINDS)}")
    if min(ann.hnsw_m, ann.ef_construction, ann.ef_search, ann.nprobe) < 1 or ann.nlist < 0:
        raise ConfigError(f"{where}: recommend.faiss needs hnsw_m, ef_construction, ef_search "
                          "and nprobe >= 1, nlist >= 0 (0: automatic)")
    if not 0.0 <= ann.recall_sample <= 1.0:
        raise ConfigError(f"{where}: recommend.faiss.recall_sample must be in [0, 1]")


def check_sources(config, where: str) -> None:
    """Checks ``recommend.sources`` and the candidate features that name them.

    Raises:
        ConfigError: an unknown kind or event, a repeated name, a setting out
            of range, quotas under ``k``, or a candidate feature of an unknown
            source.
    """
    rec, registry = recommend_settings(config), config.registry
    if not config.model.retrieval.enabled and (rec.source(TWO_TOWER)
                                               or RETRIEVAL in dict(rec.blend)):
        raise ConfigError(f"{where}: recommend's two_tower source and retrieval blend need "
                          "the two towers: model.retrieval.enabled: true")
    names = [s.name for s in rec.sources]
    for f in registry.candidate_features():
        head, _, _ = f.signal.partition(".")
        if not names or (head not in ("pair", "item") and head not in names):
            raise ConfigError(f"{where}: candidate feature {f.name} reads source {head!r}, "
                              f"which recommend.sources does not have ({names})")
    if not rec.sources:
        return
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: recommend.sources has repeated names {names}")
    for i, source in enumerate(rec.sources):
        here = f"{where}: recommend.sources[{i}] ({source.name})"
        if source.source_kind not in SOURCE_KINDS:
            raise ConfigError(f"{here}: kind must be one of {list(SOURCE_KINDS)}")
        if "." in source.name or source.name in ("pair", "item"):
            raise ConfigError(f"{here}: a name without dots, not 'pair' or 'item'")
        unknown = sorted({e for e, _ in source.events} - set(FUNNEL))
        if unknown or any(float(w) <= 0 for _, w in source.events):
            raise ConfigError(f"{here}: events maps funnel events {list(FUNNEL)} to weights "
                              f"> 0; not {dict(source.events)}")
        if (source.quota < 1 or source.half_life_days < 0 or source.basket_s < 1
                or min(source.neighbours, source.recent_items, source.max_basket,
                       source.days) < 1):
            raise ConfigError(f"{here}: quota, basket_s, neighbours, recent_items, max_basket "
                              "and days must be >= 1, half_life_days >= 0")
        if source.segment is not None:
            feature = registry.by_name.get(source.segment)
            kinds = (F.Kind.CATEGORICAL, F.Kind.NUMERIC)
            if (source.source_kind != POPULAR or feature is None
                    or feature.source != F.Source.USER or feature.kind not in kinds
                    or (feature.kind == F.Kind.NUMERIC) != bool(source.segment_edges)
                    or list(source.segment_edges) != sorted(set(source.segment_edges))):
                raise ConfigError(f"{here}: segment is for popular sources: a user categorical "
                                  "feature, or a user numeric one with ascending "
                                  "segment_edges")
        feature = registry.by_name.get(source.attribute or "")
        if (source.source_kind in (ATTRIBUTE, NEW)) != (source.attribute is not None) or (
                source.attribute is not None and (
                    feature is None or feature.source != F.Source.ITEM
                    or feature.kind not in (F.Kind.CATEGORICAL, F.Kind.HASHED))):
            raise ConfigError(f"{here}: attribute and new sources, and only they, name an "
                              "attribute: a categorical or hashed item feature")
    if sum(s.quota for s in rec.sources) < rec.k:
        raise ConfigError(f"{where}: recommend.sources' quotas add up to less than k = {rec.k}")


def recommend_settings(config) -> RecommendConfig:
    """The recommend section with its defaults filled in from the tasks and the registry."""
    rec = config.recommend
    binary = next((t for t in config.model.tasks if t.type == "binary"), None)
    category = rec.category_feature or next(
        (f.name for f in config.registry.of_source(F.Source.ITEM)
         if f.kind == F.Kind.CATEGORICAL), None)
    relevance = rec.relevance_label or binary.label
    # A source that names no events reads the relevance label's, weight 1.
    default_events = ((config.registry[relevance].event_type, 1.0),)
    given = rec.sources or ((SourceConfig(),) if config.model.retrieval.enabled else ())
    sources = tuple(dataclasses.replace(
        s, kind=s.source_kind,
        events=tuple((e, float(w)) for e, w in s.events) or default_events)
        for s in given)
    return dataclasses.replace(
        rec, blend=tuple((k, float(w)) for k, w in rec.blend) or ((f"p_{binary.name}", 1.0),),
        relevance_label=relevance, category_feature=category, sources=sources)
