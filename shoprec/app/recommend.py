"""The recommend stage: the top K of the catalogue for every user, judged against baselines.

Runs the Beam job (``pipelines.recommend``), then, with ``recommend.as_of:
eval``, judges its lists against what each user did in the eval window (their
``relevance_label`` events in the clean log, from the eval start to the test
start or the log's end) with ``trainer.metrics.ranking_metrics``, next to
baselines built here from the same log's events before the cut-off and held
to the same exclusions: recent popularity (the items with the most relevance
events in the ``popularity_days`` before the cut-off); the user's own items
(latest first) then popularity; the items of any of the user's events
(viewed, carted, bought: latest first) then popularity; the user's own items,
then the items bought with them (co-occurrence over one-day baskets of
relevance events), then popularity — the strongest lists a SQL analyst would
write; the new items (no event before the cut-off) by their category's recent
popularity, then popularity (``popular_new``: a merchandiser's new arrivals of
the kinds that sell); and, for the
generated shop, the oracle: the generator's hidden preference model ranking
the whole catalogue (``pipelines.generate.expected_clicks``).

Also judged: each source's candidates and their union by recall (the share of
a user's eval-window items among their candidates: the ceiling of the final
list), and the related items (each judged user's last item before the
cut-off, its related list against what they did next) beside co-occurrence
alone and the item's category's best-sellers. Every list is also judged for
cold start (``shoprec.app.cold_start``): by cold and warm users, and by its
share of new items.

Writes ``recommend/metrics.json`` beside the job's output, with the job's
retrieval index (and, for faiss, its recall@N against exact).
"""

from __future__ import annotations

import collections
import glob
from typing import Any, Collection, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np

from pipelines import examples, generate, recommend as job, sources
from pipelines.labels import label_matches
from pipelines.parse import EVENT_TYPE_KEY
from pipelines.related import CATEGORY_POPULAR
from shoprec.app import cold_start
from shoprec.core import registry as F
from shoprec.core.config import Config
from shoprec.core.recommend_config import CO_OCCURRENCE, recommend_settings
from shoprec.io.outputs import write_report, write_success
from trainer import metrics

BASELINES = ("popularity", "own_history", "own_interactions", "own_co_occurrence",
             "popular_new")
# The baseline's co-occurrence: one-day baskets, the 20 best neighbours per item.
BASELINE_BASKET_S, BASELINE_NEIGHBOURS = 86400, 20


def _read_parquet(pattern: str, columns: Optional[Sequence[str]] = None) -> List[Dict]:
    import pyarrow.parquet as pq

    files = sorted(glob.glob(pattern))
    return pq.read_table(files, columns=columns).to_pylist() if files else []


def _events(config: Config, label: Optional[str], impressions: bool = False
            ) -> Dict[str, np.ndarray]:
    """user, item and timestamp of every clean-log event that makes ``label`` positive
    (None: of every event but impressions, or with ``impressions`` of every event)."""
    feature = config.registry[label] if label else None
    rows = [e for e in _read_parquet(config.layout.events_log_pattern)
            if (impressions or e[EVENT_TYPE_KEY] != "impression" if feature is None
                else e[EVENT_TYPE_KEY] == feature.event_type and label_matches(feature, e))]
    return {"user": np.array([e[F.USER_KEY] for e in rows], object),
            "item": np.array([e[F.ITEM_KEY] for e in rows], object),
            "ts": np.array([e[F.TIMESTAMP_KEY] for e in rows], np.int64)}


def _catalogue(config: Config) -> Dict[str, Dict[str, Any]]:
    """The items the job recommended from: ingest's item table, {item id: row}."""
    registry = config.registry
    return {row[registry.item_key]: row
            for row in examples.read_table(config.layout.items_table + "*", registry)}


def _lists(pattern: str, key: str, value: str, where=None) -> Dict[str, List[str]]:
    """{key: values ordered by rank} of a ranked Parquet table (rows ``where`` holds)."""
    lists: Dict[str, List[str]] = collections.defaultdict(list)
    rows = [r for r in _read_parquet(pattern) if where is None or where(r)]
    for row in sorted(rows, key=lambda r: (r[key], r["rank"])):
        lists[row[key]].append(row[value])
    return lists


def _fill(first: Sequence[str], popular: Sequence[str], k: int, skip: Set[str]) -> List[str]:
    out: List[str] = []
    for item in list(first) + list(popular):
        if item not in skip and item not in out:
            out.append(item)
            if len(out) == k:
                break
    return out


def recent_counts(train: Mapping[str, np.ndarray], catalogue, cut_off: int, days: int
                  ) -> Dict[str, int]:
    """{catalogue item: its ``train`` events in the ``days`` before the cut-off}."""
    ts = train["ts"]
    recent = (ts >= cut_off - days * 86400) & (ts < cut_off)
    return collections.Counter(i for i in train["item"][recent] if i in catalogue)


def co_occurrence(user: np.ndarray, item: np.ndarray, ts: np.ndarray
                  ) -> Dict[str, sources.Ranked]:
    """{item: neighbours} over one-day baskets of the given events (the baseline's)."""
    baskets: Dict[Tuple[str, int], List[Tuple[str, int]]] = collections.defaultdict(list)
    for u, i, t in zip(user, item, ts):
        baskets[(u, int(t) // BASELINE_BASKET_S)].append((i, int(t)))
    together: Dict[str, Dict[str, int]] = collections.defaultdict(dict)
    counts: Dict[str, int] = collections.Counter()
    for entries in baskets.values():
        items = sources.basket(entries, len(entries))
        for i in items:
            counts[i] += 1
            for j in items:
                if j != i:
                    together[i][j] = together[i].get(j, 0) + 1
    return {i: sources.neighbours(i, co, counts.__getitem__, BASELINE_NEIGHBOURS)
            for i, co in together.items()}


def _latest_first(events: Mapping[str, np.ndarray], catalogue: Set[str]
                  ) -> Dict[str, List[str]]:
    """{user: their distinct items, latest first (same instant: by item id)}."""
    user, item, ts = events["user"], events["item"], events["ts"]
    own: Dict[str, List[str]] = collections.defaultdict(list)
    for j in np.lexsort((item, -ts)):
        if item[j] in catalogue and item[j] not in own[user[j]]:
            own[user[j]].append(item[j])
    return own


def baselines(train: Mapping[str, np.ndarray], interactions: Mapping[str, np.ndarray],
              users: Sequence[str], catalogue: Set[str], k: int, cut_off: int,
              popularity_days: int, excluded: Mapping[str, Set[str]],
              new: Collection[str] = (), categories: Optional[Mapping[str, Any]] = None
              ) -> Dict[str, Dict[str, List[str]]]:
    """Each baseline's top K for ``users``, from the events before the cut-off.

    Args:
        train: The relevance events before the cut-off.
        interactions: Every non-impression event before the cut-off.
        new: The new items (``popular_new``'s: no event before the cut-off).
        categories: {item: its category} (``popular_new``'s order; None: every
            item in one category, the new items by id).

    Returns:
        {baseline name (:data:`BASELINES`): {user: items}}.
    """
    user, item, ts = train["user"], train["item"], train["ts"]
    counts = recent_counts(train, catalogue, cut_off, popularity_days)
    popular = sorted(counts, key=lambda i: (-counts[i], i))
    arrivals = sources.category_ranked(new, categories or {}, counts)
    own = _latest_first(train, catalogue)
    touched = _latest_first(interactions, catalogue)
    table = co_occurrence(user, item, ts)

    def bought_with(items: Sequence[str]) -> List[str]:
        scores: Dict[str, float] = collections.defaultdict(float)
        for i in items:
            for j, sim in table.get(i, ()):
                if j in catalogue:
                    scores[j] += sim
        return sorted(scores, key=lambda j: (-scores[j], j))

    out: Dict[str, Dict[str, List[str]]] = {name: {} for name in BASELINES}
    for u in users:
        skip = excluded.get(u, set())
        mine = own.get(u, [])
        out["popularity"][u] = _fill((), popular, k, skip)
        out["own_history"][u] = _fill(mine, popular, k, skip)
        out["own_interactions"][u] = _fill(touched.get(u, []), popular, k, skip)
        out["own_co_occurrence"][u] = _fill(mine + bought_with(mine), popular, k, skip)
        out["popular_new"][u] = _fill(arrivals, popular, k, skip)
    return out


def _oracle(config: Config, users: Sequence[str], catalogue: Sequence[str], k: int,
            excluded: Mapping[str, Set[str]]) -> Optional[Dict[str, List[str]]]:
    """The generator's true top K (generated shop only: its ids carry the indices)."""
    if config.data.name != "generated" or not config.inputs.truth:
        return None
    clicks = generate.expected_clicks(config)
    items = np.array([int(i[1:]) for i in catalogue])
    out = {}
    for user in users:
        scores = clicks(np.full(len(items), int(user[1:])), items)
        skip = excluded.get(user, set())
        # Only the best k + |skip| can be in the list: not the whole catalogue sorted and
        # listed per user. Every item scoring at least the m-th best, ties in catalogue order.
        m = min(len(items), k + len(skip))
        top = np.flatnonzero(scores >= np.partition(scores, len(items) - m)[len(items) - m])
        out[user] = _fill([catalogue[j] for j in top[np.lexsort((top, -scores[top]))]], (),
                          k, skip)
    return out


def candidate_recall(candidates: Sequence[Mapping[str, Any]], relevant: Mapping[str, Set[str]],
                     names: Sequence[str]) -> Dict[str, Dict[str, float]]:
    """Per source and for the union: the share of judged users' items among their candidates.

    ``recall``: the per-user share averaged over the judged users (a user with
    no candidates counts 0); ``found`` / ``relevant``: the totals;
    ``candidates``: the mean candidates per judged user.
    """
    by_user: Dict[str, Dict[str, Set[str]]] = collections.defaultdict(
        lambda: collections.defaultdict(set))
    for row in candidates:
        if row["user_id"] in relevant:
            for name in row["sources"].split(",") if row["sources"] else ():
                by_user[row["user_id"]][name].add(row["item_id"])
            by_user[row["user_id"]]["union"].add(row["item_id"])
    users = [u for u, items in relevant.items() if items]
    out = {}
    for name in list(names) + ["union"]:
        found = [len(relevant[u] & by_user[u][name]) for u in users]
        out[name] = {"recall": float(np.mean([f / len(relevant[u]) for f, u in zip(found, users)]))
                     if users else float("nan"),
                     "found": int(sum(found)), "relevant": int(sum(len(relevant[u]) for u in users)),
                     "candidates": float(np.mean([len(by_user[u][name]) for u in users]))
                     if users else float("nan")}
    return out


def related_lists(train: Mapping[str, np.ndarray], users: Sequence[str],
                  related: Mapping[str, Sequence[str]]) -> Dict[str, List[str]]:
    """Each user's list: the related items of their last item before the cut-off."""
    last: Dict[str, str] = {}
    for j in np.lexsort((train["item"], train["ts"])):  # the latest wins; ties: larger id
        last[train["user"][j]] = train["item"][j]
    return {u: list(related.get(last[u], ())) for u in users if u in last}


def evaluate(config: Config) -> Dict[str, Any]:
    """Ranking metrics of the recommendations, the baselines and (generated shop) the oracle;
    candidate recall per source; the related items against their baselines; every list
    by cold and warm users and by its share of new items (``cold_start``)."""
    rec, layout = recommend_settings(config), config.layout
    cut_off, test_start = config.split_starts
    events = _events(config, rec.relevance_label)
    before = events["ts"] < cut_off
    window = ~before & ((events["ts"] < test_start) if test_start else True)
    relevant: Dict[str, Set[str]] = collections.defaultdict(set)
    for u, i in zip(events["user"][window], events["item"][window]):
        relevant[u].add(i)
    train = {key: values[before] for key, values in events.items()}
    every = _events(config, None)
    interactions = {key: values[every["ts"] < cut_off] for key, values in every.items()}
    items = _catalogue(config)
    catalogue = sorted(items)
    excluded: Dict[str, Set[str]] = collections.defaultdict(set)
    if rec.exclude_label and rec.exclude_days:
        bought = _events(config, rec.exclude_label)
        recent = ((bought["ts"] >= cut_off - rec.exclude_days * 86400)
                  & (bought["ts"] < cut_off))
        for u, i in zip(bought["user"][recent], bought["item"][recent]):
            excluded[u].add(i)
    judged = sorted(relevant)
    # Cold start counts every event, impressions too: an item or user the shop only
    # showed is in the ranker's training examples, so the model has seen it.
    shown = _events(config, None, impressions=True)
    seen = {key: values[shown["ts"] < cut_off] for key, values in shown.items()}
    new = cold_start.new_items(catalogue, seen)
    lists = {"model": _lists(layout.recommendations + "-*", "user_id", "item_id"),
             **baselines(train, interactions, judged, set(catalogue), rec.k, cut_off,
                         rec.popularity_days, excluded, new,
                         {i: row.get(rec.category_feature) for i, row in items.items()})}
    oracle = _oracle(config, judged, catalogue, rec.k, excluded)
    if oracle is not None:
        lists["oracle"] = oracle
    out: Dict[str, Any] = {"k": rec.k, "relevance_label": rec.relevance_label,
                           "as_of": rec.as_of, "catalogue": len(catalogue)}
    for name, recommended in lists.items():
        out[name] = metrics.ranking_metrics(recommended, relevant, rec.k, len(catalogue))
    # The same metrics at every cut-off up to K (a list's first k items), for the report.
    out["at_k"] = {name: [metrics.ranking_metrics(recommended, relevant, k, len(catalogue))
                          for k in range(1, rec.k + 1)] for name, recommended in lists.items()}
    if oracle is not None:
        out["model_over_oracle_ndcg"] = out["model"]["ndcg"] / out["oracle"]["ndcg"]
    candidates = _read_parquet(layout.candidates_table + "-*",
                               ["user_id", "item_id", "sources"])
    names = [s.name for s in rec.sources]
    out["candidate_recall"] = candidate_recall(candidates, relevant, names)
    out["cold_start"] = cold_start.judge(lists, relevant, cold_start.cold_users(judged, seen),
                                         new, rec.k, len(catalogue))
    # Whether any source proposes the new items users went on to pick: the ceiling
    # of the model's new-item hits.
    out["cold_start"]["candidate_recall"] = candidate_recall(
        candidates, {u: picked & new for u, picked in relevant.items()}, names)
    out["related"] = _judge_related(config, train, judged, relevant, items, len(catalogue))
    return out


def _judge_related(config: Config, train, judged, relevant, items, catalogue_size: int
                   ) -> Dict[str, Any]:
    """The related items, co-occurrence alone and the category's best-sellers, @related_k."""
    rec, layout = recommend_settings(config), config.layout
    pattern = layout.related_items + "-*"
    by_source = {
        "related": _lists(pattern, "item_id", "related_item_id"),
        CO_OCCURRENCE: _lists(pattern, "item_id", "related_item_id",
                              lambda r: r["source"] == CO_OCCURRENCE),
        CATEGORY_POPULAR: _category_popular(config, train, items, rec.related_k)}
    out: Dict[str, Any] = {"k": rec.related_k}
    for name, related in by_source.items():
        lists = related_lists(train, judged, related)
        out[name] = metrics.ranking_metrics(lists, {u: relevant[u] for u in lists},
                                            rec.related_k, catalogue_size)
    return out


def _category_popular(config: Config, train, items: Mapping[str, Mapping[str, Any]],
                      k: int) -> Dict[str, List[str]]:
    """{item: its category's best-sellers in popularity_days, itself left out}."""
    rec = recommend_settings(config)
    cut_off = config.split_starts[0]
    counts = recent_counts(train, items, cut_off, rec.popularity_days)
    category = {i: row.get(rec.category_feature) for i, row in items.items()}
    best: Dict[Any, List[str]] = collections.defaultdict(list)
    for i in sorted(counts, key=lambda i: (-counts[i], i)):
        best[category[i]].append(i)
    return {i: [j for j in best.get(category[i], ()) if j != i][:k] for i in items}


def render(result: Mapping[str, Any]) -> str:
    """The metrics table (one row per list), candidate recall, related items and the
    cold-start table."""
    names = [n for n in ("model",) + BASELINES + ("oracle",) if n in result]
    header = ["list", "recall", "ndcg", "map", "hit_rate", "coverage"]
    lines = [f"ranking @{result['k']} on the eval window ({result['model']['users']} users with "
             f"a {result['relevance_label']}, {result['catalogue']} items)"]
    lines += _table(header, [[n] + [f"{result[n][m]:.4f}" for m in header[1:]] for n in names])
    if "model_over_oracle_ndcg" in result:
        lines.append(f"model NDCG / oracle NDCG: {result['model_over_oracle_ndcg']:.3f}")
    recall = result.get("candidate_recall") or {}
    if recall:
        lines.append("candidate recall (their share of each judged user's items)")
        lines += _table(["source", "recall", "found", "candidates/user"],
                        [[n, f"{r['recall']:.4f}", f"{r['found']}/{r['relevant']}",
                          f"{r['candidates']:.1f}"] for n, r in recall.items()])
    related = result.get("related") or {}
    if related:
        lines.append(f"related items @{related['k']}: the last item's list against what the "
                     f"user did next")
        lines += _table(["list", "recall", "ndcg", "hit_rate", "users"],
                        [[n, f"{r['recall']:.4f}", f"{r['ndcg']:.4f}", f"{r['hit_rate']:.4f}",
                          str(r["users"])] for n, r in related.items() if n != "k"])
    cold = result.get("cold_start")
    if cold:
        caption, header, rows = cold_start.table(cold, result["k"])
        lines.append(caption)
        lines += _table(header, rows)
        union = (cold.get("candidate_recall") or {}).get("union")
        if union:
            lines.append("new items' relevant pairs among the candidates (union): " + (
                f"{union['found']}/{union['relevant']}" if union["relevant"] else "n/a"))
    index = result.get("index", {})
    if index.get("recall_at_n") is not None:
        lines.append(f"retrieval index {index['index']} ({index['settings']['kind']}): "
                     f"recall@{index['n']} against exact {index['recall_at_n']:.4f} over "
                     f"{index['recall_users']} sampled users")
    return "\n".join(lines)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    rows = [list(header)] + [list(r) for r in rows]
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def run(config: Config, beam_args: Optional[Sequence[str]] = None,
        bq_table: Optional[str] = None) -> Dict[str, Any]:
    """Runs the recommend job, then (``as_of: eval``) its evaluation; returns the report.

    ``bq_table`` (``project:dataset.table``) also writes the lists to that
    table's run-date partition (``pipelines.bigquery``).
    """
    report = job.run(config, beam_args, bq_table)
    if recommend_settings(config).as_of == "eval":
        # The job's index, and its recall against exact, beside the ranking metrics.
        report["metrics"] = dict(evaluate(config), index=report["index"])
        write_report(config.layout.recommend_metrics, report["metrics"])
    # Last: the folder is finished, job and evaluation.
    write_success(config.layout.recommend_dir, "recommend")
    return report
