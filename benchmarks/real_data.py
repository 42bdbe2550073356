"""The real-data scoreboard: the model against what a SQL query would give, on the test split.

One ingest and one featurize of a data set, then ``shoprec train`` per model
variant and seed: the multi-task model of the config and each task alone.
Every exported model scores the test split's raw examples as scoring would
(the serving signature). Beside them, heuristic scores from the labelled train
examples (the train window): the user's label rate, the category's label rate
(both smoothed toward the train rate), the item's popularity (train examples
of the item), and the user x item and user x category counts of train
examples. AUC and GAUC (by user) per task, with a 95% bootstrap interval over
users (the same resamples for every scorer, so ``P(>best)`` is paired).

    python -m benchmarks.real_data --config shoprec/configs/taobao.yaml \\
        --data ../shared/data/taobao --work /tmp/scoreboard --seeds 42 43 44

Prints a Markdown table (and writes ``scoreboard.json`` under ``--work``).

With ``--lists``, each seed's multi-task model is also published (``push
--force_bless``) and ``shoprec recommend`` runs on it: the ranking metrics
of its lists and of the baselines, the candidate recall per source and the
related items, mean ± sd over the seeds (``lists.json``). ``--embed DIR``
copies a finished embed stage (``DIR/embed``) into the base run instead of
training the image encoder again.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import os
import shutil
import subprocess
import sys
from typing import Dict, List, Sequence

import numpy as np
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Pseudo-count of the heuristics' smoothed rates.
SMOOTHING = 5.0
BOOTSTRAP = 200


def _cli(stage: str, config_path: str, data: str, log: str, *flags: str) -> None:
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(log, "a") as out:
        subprocess.run([sys.executable, "-m", "shoprec", stage, "--config", config_path,
                        "--data", data, *flags], check=True, stdout=out, stderr=out, env=env,
                       cwd=REPO)


LIST_METRICS = ("map", "recall", "ndcg", "hit_rate", "coverage")


def lists_table(metrics: Sequence[Dict]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """{list: {metric: {mean, sd}}} over the seeds' ``recommend/metrics.json``; a
    baseline (the same every seed) has sd 0. Candidate recall and related items
    likewise, under ``candidate_recall/<source>`` and ``related/<list>``."""
    rows: Dict[str, List[Dict[str, float]]] = collections.defaultdict(list)
    for m in metrics:
        for name in ("model", "popularity", "own_history", "own_interactions",
                     "own_co_occurrence", "oracle"):
            if name in m:
                rows[name].append({k: m[name][k] for k in LIST_METRICS})
        for name, r in m.get("candidate_recall", {}).items():
            rows[f"candidate_recall/{name}"].append({"recall": r["recall"]})
        for name, r in m.get("related", {}).items():
            if name != "k":
                rows[f"related/{name}"].append({k: r[k] for k in ("recall", "ndcg", "hit_rate")})
    return {name: {k: {"mean": float(np.mean([v[k] for v in values])),
                       "sd": float(np.std([v[k] for v in values], ddof=1))
                       if len(values) > 1 else 0.0}
                   for k in values[0]}
            for name, values in rows.items()}


def _write_config(raw: dict, run_dir: str, path: str, tasks=None, seed=None) -> str:
    raw = copy.deepcopy(raw)
    raw["run_dir"] = run_dir
    if tasks is not None:
        raw["model"]["tasks"] = tasks
        # Scoring ranks, and early stopping watches, a task the model has.
        raw.setdefault("scoring", {})["rank_by"] = f"p_{tasks[0]['name']}"
        stopping = raw.get("training", {}).get("early_stopping") or {}
        if stopping.get("task") and stopping["task"] not in [t["name"] for t in tasks]:
            stopping["task"] = tasks[0]["name"]
    if seed is not None:
        raw.setdefault("training", {})["seed"] = int(seed)
    with open(path, "w") as f:
        yaml.safe_dump(raw, f, sort_keys=False)
    return path


def _read_split(pattern: str, registry, names: Sequence[str]) -> Dict[str, np.ndarray]:
    import tensorflow as tf
    from pipelines import examples as ex
    # Shard by shard in sorted order: the order _predict serves them in.
    rows = [r for path in sorted(tf.io.gfile.glob(pattern)) for r in ex.read_table(path, registry)]
    return {n: np.asarray([r[n] for r in rows]) for n in names}


def _predict(model_dir: str, pattern: str, outputs: Sequence[str]) -> Dict[str, np.ndarray]:
    import tensorflow as tf
    from trainer import export
    serve = tf.saved_model.load(model_dir).signatures[export.SIGNATURE]
    files = sorted(tf.io.gfile.glob(pattern))
    parts = collections.defaultdict(list)
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(1024):
        served = serve(examples=batch)
        for name in outputs:
            parts[name].append(served[export.output_name(name)].numpy().ravel())
    return {k: np.concatenate(v) for k, v in parts.items()}


def _rate(keys_train, y_train, keys_test, prior):
    pos, n = collections.Counter(), collections.Counter()
    for k, y in zip(keys_train, y_train):
        pos[k] += int(y)
        n[k] += 1
    return np.asarray([(pos[k] + SMOOTHING * prior) / (n[k] + SMOOTHING) for k in keys_test])


def _count(keys_train, keys_test):
    counts = collections.Counter(keys_train)
    return np.asarray([counts[k] for k in keys_test], dtype=np.float64)


def heuristics(train, test, label, user, item, category) -> Dict[str, np.ndarray]:
    """Scores of the test rows from the train rows' labels and counts."""
    y, prior = train[label], float(np.mean(train[label]))
    out = {"user rate": _rate(train[user], y, test[user], prior),
           "item popularity": _count(train[item], test[item])}
    if category:
        out["category rate"] = _rate(train[category], y, test[category], prior)
        out["user x category count"] = _count(zip(train[user], train[category]),
                                              zip(test[user], test[category]))
    out["user x item count"] = _count(zip(train[user], train[item]), zip(test[user], test[item]))
    return out


def signal_heuristics(train, test, label, signals: Sequence[str]) -> Dict[str, np.ndarray]:
    """Each candidate signal alone as a score of the test rows (label mode candidates).

    The direction is chosen on train: a signal whose train AUC is below 0.5
    (days since the last purchase, say) scores negated, so no test label
    picks it.
    """
    from trainer.metrics import auc
    out = {}
    for name in signals:
        sign = 1.0 if auc(train[label], train[name]) >= 0.5 else -1.0
        out[f"{name} alone"] = sign * test[name].astype(np.float64)
    return out


def bootstrap(labels, scores: Dict[str, List[np.ndarray]], users, seed=0):
    """{scorer: (AUC mean over its score arrays, GAUC mean, AUC 2.5%, 97.5%, AUC samples)}."""
    from trainer.metrics import auc, gauc
    rng = np.random.default_rng(seed)
    uniq, inverse = np.unique(users, return_inverse=True)
    rows_of = [np.flatnonzero(inverse == u) for u in range(uniq.size)]
    samples = [np.concatenate([rows_of[u] for u in rng.integers(0, uniq.size, uniq.size)])
               for _ in range(BOOTSTRAP)]
    out = {}
    for name, arrays in scores.items():
        full = [auc(labels, s) for s in arrays]
        g = [gauc(labels, s, users) for s in arrays]
        boot = np.asarray([np.mean([auc(labels[i], s[i]) for s in arrays]) for i in samples])
        out[name] = {"auc": float(np.mean(full)), "auc_min": float(np.min(full)),
                     "auc_max": float(np.max(full)), "gauc": float(np.mean(g)),
                     "lo": float(np.percentile(boot, 2.5)),
                     "hi": float(np.percentile(boot, 97.5)), "boot": boot}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--single", action="store_true", help="also each task alone")
    parser.add_argument("--reuse", action="store_true", help="keep an earlier base run")
    parser.add_argument("--lists", action="store_true",
                        help="also publish each seed's model and judge recommend's lists")
    parser.add_argument("--embed", help="a run folder whose finished embed stage to copy")
    args = parser.parse_args(argv)

    import shoprec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
    from shoprec.core import config as config_lib

    os.makedirs(args.work, exist_ok=True)
    log = os.path.join(args.work, "stages.log")
    with open(args.config) as f:
        raw = yaml.safe_load(f)
    base_dir = os.path.join(args.work, "base")
    base_cfg = _write_config(raw, base_dir, os.path.join(args.work, "base.yaml"))
    if not (args.reuse and os.path.exists(os.path.join(base_dir, "featurize"))):
        if args.embed:
            shutil.rmtree(os.path.join(base_dir, "embed"), ignore_errors=True)
            shutil.copytree(os.path.join(args.embed, "embed"), os.path.join(base_dir, "embed"),
                            symlinks=False)
        for stage in ("ingest", "featurize"):
            _cli(stage, base_cfg, args.data, log)
    config = config_lib.load(base_cfg)
    registry = config.registry
    tasks = list(raw["model"]["tasks"])
    category = next((f.name for f in registry.features if f.source.value == "item"
                     and f.kind.value == "categorical"), None)
    signals = [f.name for f in registry.candidate_features()]
    names = [registry.user_key, registry.item_key] + ([category] if category else []) + [
        t["label"] for t in tasks] + signals
    layout = config.layout
    train = _read_split(layout.examples_pattern("train"), registry, names)
    test_pattern = layout.examples_pattern("test")
    test = _read_split(test_pattern, registry, names)

    variants = [("multi-task", tasks)] + ([(f"{t['name']} alone", [t]) for t in tasks]
                                          if args.single else [])
    predictions: Dict[str, List[Dict[str, np.ndarray]]] = {}
    for name, variant_tasks in variants:
        for seed in args.seeds:
            run_dir = os.path.join(args.work, f"{name.replace(' ', '_')}-{seed}")
            if not os.path.exists(os.path.join(run_dir, "train", "model")):
                shutil.rmtree(run_dir, ignore_errors=True)
                for stage in ("ingest", "featurize"):
                    shutil.copytree(os.path.join(base_dir, stage), os.path.join(run_dir, stage))
                cfg = _write_config(raw, run_dir, run_dir + ".yaml", variant_tasks, seed)
                _cli("train", cfg, args.data, log)
            if args.lists and name == "multi-task" and not os.path.exists(
                    os.path.join(run_dir, "recommend", "metrics.json")):
                cfg = _write_config(raw, run_dir, run_dir + ".yaml", variant_tasks, seed)
                _cli("push", cfg, args.data, log, "--force_bless")
                _cli("recommend", cfg, args.data, log)
            predictions.setdefault(name, []).append(_predict(
                os.path.join(run_dir, "train", "model"), test_pattern,
                [t["name"] for t in variant_tasks]))
    if args.lists:
        runs = [os.path.join(args.work, f"multi-task-{seed}", "recommend", "metrics.json")
                for seed in args.seeds]
        table = lists_table([json.load(open(path)) for path in runs])
        print(f"\n{config.data.name} lists on the eval window, seeds {args.seeds} (mean ± sd)")
        print("| list | " + " | ".join(LIST_METRICS) + " |")
        print("| --- |" + " --- |" * len(LIST_METRICS))
        for name, values in table.items():
            print(f"| {name} | " + " | ".join(
                f"{values[k]['mean']:.4f} ± {values[k]['sd']:.4f}" if k in values else ""
                for k in LIST_METRICS) + " |")
        with open(os.path.join(args.work, "lists.json"), "w") as f:
            json.dump(table, f, indent=1)

    results = {}
    for task in tasks:
        label = task["label"]
        labels = test[label].astype(np.float64)
        scores = {name: [p[task["name"]] for p in preds] for name, preds in predictions.items()
                  if task["name"] in preds[0]}
        heur = heuristics(train, test, label, registry.user_key, registry.item_key, category)
        heur.update(signal_heuristics(train, test, label, signals))
        scores.update({name: [s] for name, s in heur.items()})
        stats = bootstrap(labels, scores, test[registry.user_key])
        best = max(heur, key=lambda n: stats[n]["auc"])
        for name in stats:
            stats[name]["p_gt_best"] = float(np.mean(stats[name]["boot"]
                                                    > stats[best]["boot"]))
        results[task["name"]] = {"positives": int(labels.sum()), "rows": int(labels.size),
                                 "users": int(np.unique(test[registry.user_key]).size),
                                 "best_heuristic": best,
                                 "scores": {n: {k: v for k, v in s.items() if k != "boot"}
                                            for n, s in stats.items()}}
        print(f"\n{config.data.name} {task['name']}: {int(labels.sum())} positives of "
              f"{labels.size} test rows, {results[task['name']]['users']} users; "
              f"seeds {args.seeds}")
        print("| scorer | test AUC (seed mean) | seed min-max | 95% bootstrap | GAUC | "
              "P(> best heuristic) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name, s in stats.items():
            spread = (f"{s['auc_min']:.3f}-{s['auc_max']:.3f}" if name in predictions
                      else "")
            print(f"| {name} | {s['auc']:.3f} | {spread} | {s['lo']:.3f}-{s['hi']:.3f} | "
                  f"{s['gauc']:.3f} | {s['p_gt_best']:.2f} |")
    with open(os.path.join(args.work, "scoreboard.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
