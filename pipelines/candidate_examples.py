"""Label mode ``candidates``: the ranker's examples are the lists it will rank.

For each cut-off (``dataset.candidates``; :func:`windows`), every user with a
positive of any event label in the window that follows gets the union of
``recommend.sources``' lists built from the events strictly before the
cut-off (``pipelines.sources``, exactly as ``recommend`` builds them, the
exclusion rule included), one example per candidate at the cut-off's time;
each label is whether the user had that label's event with the item inside
the window. Ingest runs before this run trains its towers: a ``two_tower``
source proposes from the last published model's towers
(``pipelines.tower_candidates``), and nothing where none is published yet.

Counted per split, for the relevance label (``recommend.relevance_label``):
``candidates/<split>/positives`` (distinct user-item positives in the
windows), ``candidates/<split>/found/<source>`` and ``.../found/union`` (those
among the candidates) and ``candidates/<split>/examples``: the candidates'
recall, the ceiling of any ranker on them.
"""

from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam

from pipelines import dead_letter as dl
from pipelines import sources
from pipelines.candidate_sources import CandidateSources, SegmentPopular
from pipelines.labels import label_matches, split_index
from pipelines.side_inputs import popular_limit
from pipelines.tower_candidates import TowerCandidates, Towers
from shoprec.core import registry as F
from shoprec.core.layout import SPLITS
from shoprec.core.recommend_config import TWO_TOWER

DAY_S = sources.DAY_S
# (cut-off, end of its label window; None: the log's end).
Window = Tuple[int, Optional[int]]


def windows(config) -> List[Window]:
    """Every cut-off of label mode ``candidates`` with the end of its label window.

    Train: ``cutoffs`` cut-offs ``every_days`` apart, the latest
    ``label_days`` before the eval start, each labelled over ``label_days``;
    eval: the eval start, labelled up to the test start (or the log's end);
    test: the test start, labelled up to the log's end.
    """
    spec = config.data.candidates
    eval_ts, test_ts = config.split_starts
    label_s = spec.label_days * DAY_S
    train = sorted(eval_ts - label_s - k * spec.every_days * DAY_S
                   for k in range(spec.cutoffs))
    out: List[Window] = [(cut, cut + label_s) for cut in train]
    out.append((eval_ts, test_ts))
    if test_ts is not None:
        out.append((test_ts, None))
    return out


class UserBundle(NamedTuple):
    """One user's row, pair states, positives and two-tower lists per cut-off."""

    user_id: str
    row: Optional[Dict[str, Any]]
    pairs: Dict[int, List[Tuple[str, sources.State]]]
    positives: Dict[int, Dict[str, set]]  # {cut: {label name: items}}
    towers: Dict[int, Towers] = {}


def bundle(key_and_groups) -> UserBundle:
    """A user's CoGroupByKey groups → their :class:`UserBundle`."""
    user_id, groups = key_and_groups
    rows = list(groups["user"])
    positives: Dict[int, Dict[str, set]] = {}
    for cut, item, label in groups["labels"]:
        positives.setdefault(cut, {}).setdefault(label, set()).add(item)
    return UserBundle(user_id, rows[0] if rows else None, dict(groups["pairs"]), positives)


class _Label(beam.DoFn):
    """A user bundle → their labelled candidate examples at each cut-off they are active at."""

    def __init__(self, plan: sources.Plan, labels: Sequence[F.Feature], relevance: str,
                 starts: Sequence[Optional[int]], sampled_key: str):
        self._plan = plan
        self._towers = next((s.name for s in plan.of_kind(TWO_TOWER)), None)
        self._labels = tuple(labels)
        self._relevance = relevance
        self._starts = tuple(starts)
        self._sampled_key = sampled_key

    def _count(self, split: str, name: str, n: int = 1) -> None:
        beam.metrics.Metrics.counter(dl.NAMESPACE, f"candidates/{split}/{name}").inc(n)

    def process(self, user: UserBundle, catalogue=None, **tables):
        p, tables = self._plan, sources.Tables(**tables)
        for cut, positives in sorted(user.positives.items()):
            pairs = dict(user.pairs.get(cut, ()))
            towers = user.towers.get(cut)
            lists, scores = sources.propose(pairs, user.row, cut, p, tables,
                                            towers=towers.ranked if towers else None,
                                            skip=sources.excluded(pairs, cut, p))
            candidates = sources.union(lists)
            if towers is not None:
                scores[self._towers] = towers.scores(catalogue, list(candidates))
            split = SPLITS[split_index(cut, self._starts)]
            relevant = positives.get(self._relevance, set())
            self._count(split, "positives", len(relevant))
            self._count(split, "found/union", len(relevant & set(candidates)))
            for name, ranked in lists.items():
                self._count(split, f"found/{name}", len(relevant & {i for i, _ in ranked}))
            rows = sources.candidate_rows(user.user_id, cut, candidates, scores, pairs,
                                          tables, p)
            self._count(split, "examples", len(rows))
            for row in rows:
                row.pop(sources.PROPOSED)
                row[F.TIMESTAMP_KEY] = cut
                row[self._sampled_key] = 0
                for label in self._labels:
                    row[label.name] = int(row[F.ITEM_KEY] in positives.get(label.name, ()))
                yield row


class CandidateExamples(beam.PTransform):
    """Clean events → labelled candidate examples at every cut-off (module docstring).

    Output rows: {user_id, item_id, timestamp (the cut-off), <label>...,
    sampled: 0, <candidate feature>...}; ingest then adds the aggregates,
    history and side-table features as for any example.

    Args:
        plan: ``pipelines.sources.plan(config)``.
        registry: The run's registry (its event labels).
        relevance: The label whose recall the counters report.
        cut_windows: :func:`windows`.
        split_starts: (eval start, test start or None).
        users: (user_id, user row) of the users table (segments).
        items: (item_id, item row) of the catalogue (attribute sources).
        max_lists: ``recommend.max_catalogue_items``: the most popular lists
            (segments x cut-offs), which every worker of ``Label`` holds.
        towers: A ``two_tower`` source's settings when a published model
            has towers: (its model folder, (history interactions, bucket
            seconds) or None, users per call, catalogue limit); None: the
            source proposes nothing.
    """

    def __init__(self, plan: sources.Plan, registry: F.Registry, relevance: str,
                 cut_windows: Sequence[Window], split_starts: Sequence[Optional[int]],
                 users: beam.PCollection, items: beam.PCollection, max_lists: int,
                 towers: Optional[Tuple[str, Any, int, int]]):
        super().__init__()
        self._max_lists = int(max_lists)
        self._plan = plan
        self._registry = registry
        self._relevance = relevance
        self._windows = tuple(cut_windows)
        self._starts = tuple(split_starts)
        self._users = users
        self._items = items
        self._tower_settings = towers

    def expand(self, events):
        labels, cut_windows = self._registry.event_labels(), self._windows
        cutoffs = events.pipeline | "CutOffs" >> beam.Create([cut for cut, _ in cut_windows])
        state = events | "Sources" >> CandidateSources(self._plan, cutoffs, self._items)

        def positives(event):
            ts = event[F.TIMESTAMP_KEY]
            for cut, end in cut_windows:
                if cut <= ts and (end is None or ts < end):
                    for label in labels:
                        if label_matches(label, event):
                            yield event[F.USER_KEY], (cut, event[F.ITEM_KEY], label.name)

        bundles = ({"user": self._users,
                    "pairs": state.pairs | "PairsByUser" >> beam.MapTuple(
                        lambda key, pairs: (key[0], (key[1], pairs))),
                    # Each positive once: a user's group is bounded by the catalogue
                    # (items x cut-offs x labels), not by their events.
                    "labels": (events | "Positives" >> beam.FlatMap(positives)
                               | "DistinctPositives" >> beam.Distinct())}
                   | "JoinUsers" >> beam.CoGroupByKey()
                   | "Bundle" >> beam.Map(bundle))
        segmented = (bundles
                     | "SegmentInputs" >> beam.Map(lambda b: (b.row, b.pairs))
                     | "SegmentPopular" >> SegmentPopular(self._plan))
        state = state._replace(
            popular=((state.popular, segmented) | "AllPopular" >> beam.Flatten()
                     | "PopularLimit" >> popular_limit(self._max_lists)))
        active = bundles | "Active" >> beam.Filter(lambda b: bool(b.positives))
        catalogue = None
        towers = self._plan.of_kind(TWO_TOWER)
        if towers and self._tower_settings is not None:
            active, catalogue = self._with_towers(active, towers[0].quota, events)
        return active | "Label" >> beam.ParDo(
            _Label(self._plan, labels, self._relevance, self._starts,
                   self._registry.sampled_key), catalogue=catalogue, **state.side_inputs())

    def _with_towers(self, active, quota: int, events):
        """Each active bundle with its two-tower lists; the published towers' catalogue."""
        model_dir, history, batch_size, limit = self._tower_settings
        p = self._plan

        def asked(b: UserBundle):
            return b.user_id, b.row, {cut: sources.excluded(dict(b.pairs.get(cut, ())), cut, p)
                                      for cut in b.positives}

        out = active | "Asked" >> beam.Map(asked) | "Towers" >> TowerCandidates(
            model_dir, self._registry, quota, history, events, self._items, batch_size, limit)

        def attach(user_and_groups):
            _, groups = user_and_groups
            for bundle_ in groups["bundle"]:
                yield bundle_._replace(towers=dict(groups["towers"]))

        joined = ({"bundle": active | "KeyBundles" >> beam.Map(lambda b: (b.user_id, b)),
                   "towers": out.lists | "TowersByUser" >> beam.MapTuple(
                       lambda key, towers: (key[0], (key[1], towers)))}
                  | "JoinTowers" >> beam.CoGroupByKey()
                  # Any: Beam's inference from attach's code would pick a map coder.
                  | "WithTowers" >> beam.FlatMap(attach).with_output_types(Any))
        return joined, beam.pvalue.AsSingleton(out.catalogue)
