"""The recommend stage: the top K of the catalogue for every user, judged against baselines.

Runs the Beam job (``pipelines.recommend``), then, with ``recommend.as_of:
eval``, judges its lists against what each user did in the eval window (the
``relevance_label`` positives) with ``trainer.metrics.ranking_metrics``, next
to two baselines built here from the same train-window examples and held to
the same exclusions — recent popularity (the items with the most positives
in the ``popularity_days`` before the cut-off) and the user's own history
(their positive items before the cut-off, latest first) then popularity —
and, for the generated shop, the oracle: the generator's hidden preference
model ranking the whole catalogue (``pipelines.generate.expected_clicks``).

Writes ``recommend/metrics.json`` beside the job's output, with the job's
retrieval index (and, for faiss, its recall@N against exact).
"""

from __future__ import annotations

import collections
import glob
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set

import numpy as np

from pipelines import examples, generate, recommend as job
from shoprec.core import registry as F
from shoprec.core.config import Config, recommend_settings
from shoprec.io.outputs import write_report, write_success
from trainer import metrics

BASELINES = ("popularity", "own_history")


def _positives(config: Config, split: str, label: str) -> Dict[str, np.ndarray]:
    """user, item and timestamp of every raw example of ``split`` whose ``label`` is 1."""
    import tensorflow as tf

    registry = config.registry
    keys = (registry.user_key, registry.item_key, registry.timestamp_key)
    spec = {registry.user_key: tf.io.FixedLenFeature([], tf.string),
            registry.item_key: tf.io.FixedLenFeature([], tf.string),
            registry.timestamp_key: tf.io.FixedLenFeature([], tf.int64),
            label: tf.io.FixedLenFeature([], tf.int64)}
    files = tf.io.gfile.glob(config.layout.examples_pattern(split))
    parts: Dict[str, list] = {key: [] for key in keys}
    data = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096)
    for batch in data.map(lambda b: tf.io.parse_example(b, spec)):
        keep = batch[label].numpy() == 1
        for key in keys:
            parts[key].extend(batch[key].numpy()[keep].tolist())
    return {registry.user_key: np.array([u.decode() for u in parts[registry.user_key]], object),
            registry.item_key: np.array([i.decode() for i in parts[registry.item_key]], object),
            registry.timestamp_key: np.array(parts[registry.timestamp_key], np.int64)}


def _catalogue_ids(config: Config) -> List[str]:
    """The item ids the job recommended from: ingest's item table."""
    registry = config.registry
    rows = examples.read_table(config.layout.items_table + "*", registry)
    return sorted(row[registry.item_key] for row in rows)


def _recommendations(config: Config) -> Dict[str, List[str]]:
    import pyarrow.parquet as pq

    files = sorted(glob.glob(config.layout.recommendations + "-*"))
    table = pq.read_table(files, columns=["user_id", "rank", "item_id"]).to_pylist() if files else []
    lists: Dict[str, List[str]] = collections.defaultdict(list)
    for row in sorted(table, key=lambda r: (r["user_id"], r["rank"])):
        lists[row["user_id"]].append(row["item_id"])
    return lists


def _fill(first: Sequence[str], popular: Sequence[str], k: int, skip: Set[str]) -> List[str]:
    out: List[str] = []
    for item in list(first) + list(popular):
        if item not in skip and item not in out:
            out.append(item)
            if len(out) == k:
                break
    return out


def baselines(train: Mapping[str, np.ndarray], registry: F.Registry, users: Sequence[str],
              catalogue: Set[str], k: int, cut_off: int, popularity_days: int,
              excluded: Mapping[str, Set[str]]) -> Dict[str, Dict[str, List[str]]]:
    """Each baseline's top K for ``users``, from train-window positives.

    Returns:
        {"popularity": {user: items}, "own_history": {user: items}}.
    """
    user, item, ts = (train[registry.user_key], train[registry.item_key],
                      train[registry.timestamp_key])
    recent = (ts >= cut_off - popularity_days * 86400) & (ts < cut_off)
    counts = collections.Counter(i for i in item[recent] if i in catalogue)
    popular = sorted(counts, key=lambda i: (-counts[i], i))
    own: Dict[str, List[str]] = collections.defaultdict(list)
    latest_first = np.argsort(-ts, kind="stable")
    for u, i in zip(user[latest_first], item[latest_first]):
        if i in catalogue:
            own[u].append(i)
    return {"popularity": {u: _fill((), popular, k, excluded.get(u, set())) for u in users},
            "own_history": {u: _fill(own.get(u, ()), popular, k, excluded.get(u, set()))
                            for u in users}}


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
        ordered = [catalogue[j] for j in np.lexsort((np.arange(len(items)), -scores))]
        out[user] = _fill(ordered, (), k, excluded.get(user, set()))
    return out


def evaluate(config: Config) -> Dict[str, Any]:
    """Ranking metrics of the recommendations, the baselines and (generated shop) the oracle."""
    rec, registry = recommend_settings(config), config.registry
    cut_off = config.split_starts[0]
    truth = _positives(config, "eval", rec.relevance_label)
    relevant: Dict[str, Set[str]] = collections.defaultdict(set)
    for u, i in zip(truth[registry.user_key], truth[registry.item_key]):
        relevant[u].add(i)
    model = _recommendations(config)
    catalogue = _catalogue_ids(config)
    excluded: Dict[str, Set[str]] = collections.defaultdict(set)
    if rec.exclude_label and rec.exclude_days:
        bought = _positives(config, "train", rec.exclude_label)
        window = bought[registry.timestamp_key] >= cut_off - rec.exclude_days * 86400
        for u, i in zip(bought[registry.user_key][window], bought[registry.item_key][window]):
            excluded[u].add(i)
    train = _positives(config, "train", rec.relevance_label)
    judged = sorted(relevant)
    lists = {"model": model, **baselines(train, registry, judged, set(catalogue), rec.k, cut_off,
                                         rec.popularity_days, excluded)}
    oracle = _oracle(config, judged, catalogue, rec.k, excluded)
    if oracle is not None:
        lists["oracle"] = oracle
    out = {"k": rec.k, "relevance_label": rec.relevance_label, "as_of": rec.as_of,
           "catalogue": len(catalogue)}
    for name, recommended in lists.items():
        out[name] = metrics.ranking_metrics(recommended, relevant, rec.k, len(catalogue))
    # The same metrics at every cut-off up to K (a list's first k items), for the report.
    out["at_k"] = {name: [metrics.ranking_metrics(recommended, relevant, k, len(catalogue))
                          for k in range(1, rec.k + 1)] for name, recommended in lists.items()}
    if oracle is not None:
        out["model_over_oracle_ndcg"] = out["model"]["ndcg"] / out["oracle"]["ndcg"]
    return out


def render(result: Mapping[str, Any]) -> str:
    """The metrics table, one row per list."""
    names = [n for n in ("model",) + BASELINES + ("oracle",) if n in result]
    header = ["list", "recall", "ndcg", "map", "hit_rate", "coverage"]
    rows = [header] + [[n] + [f"{result[n][m]:.4f}" for m in header[1:]] for n in names]
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    lines = [f"ranking @{result['k']} on the eval window ({result['model']['users']} users with "
             f"a {result['relevance_label']}, {result['catalogue']} items)"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(2, "  ".join("-" * w for w in widths))
    if "model_over_oracle_ndcg" in result:
        lines.append(f"model NDCG / oracle NDCG: {result['model_over_oracle_ndcg']:.3f}")
    index = result.get("index", {})
    if index.get("recall_at_n") is not None:
        lines.append(f"retrieval index {index['index']} ({index['settings']['kind']}): "
                     f"recall@{index['n']} against exact {index['recall_at_n']:.4f} over "
                     f"{index['recall_users']} sampled users")
    return "\n".join(lines)


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
