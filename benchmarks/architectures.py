"""Compares the multi-task architectures, single-task baselines, ESMM and a naive CVR model.

Trains every variant on one featurized run of generated data (one of them
blind to the item photo embedding, to show what the photos add), scores the raw
eval examples through each exported SavedModel, joins them with the
generator's truth (``raw/truth.csv``) and prints Markdown tables:

1. per task (click; conversion = click-and-purchase over every impression)
   AUC, GAUC and log loss next to the oracle (the true probabilities);
2. CVR: ESMM against a CVR model trained on clicked impressions only, on
   - ``AUC | click``: pCVR against conversion over clicked eval impressions;
   - ``entire-space AUC``: pCVR against the true pCVR of *every* eval
     impression (soft labels: each counts as a positive with weight
     q = p_conversion / p_click and as a negative with 1 - q; see
     ``trainer.metrics.weighted_auc``), i.e. how well the model ranks
     impressions by conversion-if-clicked, including the unclicked ones the
     naive model never saw;
   - ``pCTCVR AUC``: pCTR x pCVR against conversion over every impression
     (the naive model's pCTR comes from the single-task click model).

Usage (after ``shoprec demo --run_dir RUN``):

    .venv/bin/python benchmarks/architectures.py --run_dir RUN [--seeds 1 2] [--out DIR]

``--reuse`` scores variants already trained under ``--out`` (e.g. to report
seeds trained by separate invocations together).

``--shop_tasks CONFIG`` compares instead on the four-task shop
(``configs/shop_tasks.yaml``: click, conversion, user interest, item
attributes, anomaly) after ``generate`` to ``featurize`` of that config:
shared-bottom, MMoE, PLE and soft sharing, each with fixed, uncertainty and
DWA loss weighting, against one single-task model per task. Every figure is
the exact eval metric of a variant's ``metrics.json``, as mean ± sd over
``--seeds`` (a task with a ``holdout``: over its held-out items' or users'
eval rows); ingest's anomaly rule on the anomaly task's eval rows and the image
encoder's held-out accuracy are printed beside them.

``--config CONFIG --data DIR`` makes the same comparison on a real data set
(e.g. ``shoprec/configs/taobao.yaml``: cart, buy): one ingest and featurize of
it under ``--out`` (kept with ``--reuse``), then the same variants, judged by
each task's metric (binary: AUC) on the test split (eval where the config has
none)::

    python -m benchmarks.architectures --config shoprec/configs/taobao.yaml \
        --data ../shared/data/taobao --out /tmp/taobao_cmp --seeds 42
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import glob
import json
import os
import time
from typing import Dict, List

import numpy as np

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf

from pipelines import examples
from pipelines.parse import HAS_IMAGE_KEY
from shoprec.core import config as config_lib
from shoprec.core import registry as F
from shoprec.core.model_config import TaskConfig
from trainer import metrics, train

CLICK, CONVERSION = TaskConfig("click", "click"), TaskConfig("conversion", "conversion")


def variants(base: config_lib.Config) -> Dict[str, config_lib.Config]:
    """Every model of the comparison, as configs differing from ``base`` in the model."""
    def with_model(**changes):
        return dataclasses.replace(base, model=dataclasses.replace(base.model, **changes))

    # The same model blind to the photos: the item embedding and its flag are
    # left out of the registry (the featurized data still holds them, unread).
    blind = tuple(f for f in base.registry.features
                  if f.kind != F.Kind.EMBEDDING and f.name != HAS_IMAGE_KEY)
    no_image = dataclasses.replace(
        with_model(architecture="shared_bottom", tasks=(CLICK, CONVERSION)),
        dataset=dataclasses.replace(base.data, features=blind))
    naive = with_model(tasks=(TaskConfig("cvr", "conversion", condition="click"),))
    naive = dataclasses.replace(naive, training=dataclasses.replace(base.training,
                                                                    train_filter="click"))
    return {
        "shared_bottom": with_model(architecture="shared_bottom", tasks=(CLICK, CONVERSION)),
        "shared_bottom_no_image": no_image,
        "mmoe": with_model(architecture="mmoe", tasks=(CLICK, CONVERSION)),
        "ple": with_model(architecture="ple", tasks=(CLICK, CONVERSION)),
        "esmm": with_model(architecture="esmm", tasks=(CLICK, CONVERSION)),
        "single_click": with_model(tasks=(CLICK,)),
        "single_conversion": with_model(tasks=(CONVERSION,)),
        "naive_cvr": naive,
        "shared_bottom+retrieval": with_model(
            tasks=(CLICK, CONVERSION),
            retrieval=dataclasses.replace(base.model.retrieval, enabled=True)),
    }


def load_eval(run_dir: str, registry) -> dict:
    """Raw eval examples with their ids and labels, joined with the generator's truth."""
    serialized, users, click, conversion, p_click, p_ctcvr = [], [], [], [], [], []
    truth = {}
    with open(os.path.join(run_dir, "raw", "truth.csv")) as f:
        next(f)
        for line in f:
            t, u, i, pc, pv, _, _ = line.rstrip("\n").split(",")
            truth[(t, u, i)] = (float(pc), float(pv))
    files = sorted(glob.glob(os.path.join(run_dir, "ingest", "examples", "eval-*")))
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        row = examples.decode(record.numpy(), registry)
        when = dt.datetime.fromtimestamp(row[registry.timestamp_key], dt.timezone.utc)
        key = (when.strftime("%Y-%m-%dT%H:%M:%SZ"), row["user_id"], row["item_id"])
        if key not in truth:
            continue
        serialized.append(record.numpy())
        users.append(row["user_id"])
        click.append(row["click"])
        conversion.append(row["conversion"])
        p_click.append(truth[key][0])
        p_ctcvr.append(truth[key][1])
    p_click, p_ctcvr = np.array(p_click), np.array(p_ctcvr)
    return {"examples": serialized, "user": np.array(users), "click": np.array(click, float),
            "conversion": np.array(conversion, float), "p_click": p_click,
            "p_conversion": p_ctcvr, "p_cvr": p_ctcvr / np.maximum(p_click, 1e-12)}


def score(model_dir: str, serialized: List[bytes], batch: int = 2048) -> Dict[str, np.ndarray]:
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    parts: Dict[str, list] = {}
    for lo in range(0, len(serialized), batch):
        for name, value in serve(examples=tf.constant(serialized[lo:lo + batch])).items():
            parts.setdefault(name, []).append(value.numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def binary(labels, p, users) -> dict:
    return {"auc": metrics.auc(labels, p), "gauc": metrics.gauc(labels, p, users),
            "log_loss": metrics.log_loss(labels, p)}


def cvr_figures(pcvr, pctr, ev) -> dict:
    clicked = ev["click"] > 0.5
    return {"auc_given_click": metrics.auc(ev["conversion"][clicked], pcvr[clicked]),
            "entire_space_auc": metrics.weighted_auc(ev["p_cvr"], 1 - ev["p_cvr"], pcvr),
            "ctcvr_auc": metrics.auc(ev["conversion"], pctr * pcvr)}


def _trained(config: config_lib.Config, run_dir: str, seed: int, reuse: bool):
    """``config`` trained in ``run_dir`` with ``seed``: (that config, its metrics.json).

    With ``reuse``, a variant whose metrics.json exists is read, not trained again.
    """
    config = dataclasses.replace(config, run_dir=run_dir, training=dataclasses.replace(
        config.training, seed=seed))
    if reuse and os.path.exists(config.layout.metrics_file):
        with open(config.layout.metrics_file) as f:
            return config, json.load(f)
    return config, train.run(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_dir", default=None, help="a `shoprec demo` run folder")
    parser.add_argument("--shop_tasks", default=None, metavar="CONFIG",
                        help="compare on this four-task shop config's featurized run instead")
    parser.add_argument("--config", default=None,
                        help="compare on this real data set's config instead (with --data)")
    parser.add_argument("--data", default=None, help="the folder of --config's data set")
    parser.add_argument("--out", default=None, help="where variants train (default RUN/compare)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--only", nargs="*", default=None, help="variant names to run")
    parser.add_argument("--reuse", action="store_true",
                        help="score variants already trained under --out instead of retraining")
    args = parser.parse_args()
    if args.shop_tasks:
        shop_main(args)
        return
    if args.config:
        if not (args.data and args.out):
            parser.error("--config needs --data and --out")
        real_main(args)
        return
    if not args.run_dir:
        parser.error("--run_dir, --shop_tasks or --config is required")
    out = args.out or os.path.join(args.run_dir, "compare")
    base = config_lib.load(run_dir=args.run_dir)
    unknown = sorted(set(args.only or ()) - set(variants(base)))
    if unknown:
        parser.error(f"--only: no variant {unknown}; the variants are {sorted(variants(base))}")
    ev = load_eval(args.run_dir, base.registry)
    results: Dict[str, list] = {}
    for seed in args.seeds:
        for name, config in variants(base).items():
            if args.only and name not in args.only:
                continue
            run_dir = os.path.join(out, f"{name}-s{seed}")
            os.makedirs(run_dir, exist_ok=True)
            link = os.path.join(run_dir, "featurize")
            if not os.path.exists(link):
                os.symlink(os.path.abspath(os.path.join(args.run_dir, "featurize")), link)
            start = time.time()
            config, trained = _trained(config, run_dir, seed, args.reuse)
            p = score(config.layout.model_dir, ev["examples"])
            row = {"seed": seed, "train_s": trained["training"].get("seconds"),
                   "retrieval": trained.get("retrieval")}
            for task in ("click", "conversion"):
                if f"p_{task}" in p:
                    row[task] = binary(ev[task], p[f"p_{task}"], ev["user"])
            # Kept (not reported) for the CVR table: ESMM's pCVR, the naive
            # model's (its only output) and each model's pCTR.
            if "p_cvr" in p:
                row["cvr"] = p["p_cvr"]
            if "p_click" in p:
                row["pctr"] = p["p_click"]
            results.setdefault(name, []).append(row)
            print(f"[compare] {name} seed {seed}: {time.time() - start:.0f}s", flush=True)
    report(results, ev, out)


def _mean(rows, *path):
    values = []
    for r in rows:
        v = r
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        if v is not None:
            values.append(v)
    return float(np.mean(values)) if values else None


def report(results: Dict[str, list], ev: dict, out: str) -> None:
    """Prints the tables (means over seeds) and writes them as JSON beside the variants."""
    oracle = {t: binary(ev[t], ev[f"p_{t}"], ev["user"]) for t in ("click", "conversion")}
    fmt = lambda v: "—" if v is None else f"{v:.4f}"  # noqa: E731
    print("\n| model | click AUC | click GAUC | click log loss | conversion AUC | "
          "conversion GAUC | conversion log loss |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in list(results.items()) + [("oracle (truth)", [oracle])]:
        cells = [fmt(_mean(rows, t, m)) for t in ("click", "conversion")
                 for m in ("auc", "gauc", "log_loss")]
        print(f"| {name} | " + " | ".join(cells) + " |")
    cvr = {}
    for name, ctr_from in (("esmm", "esmm"), ("naive_cvr", "single_click")):
        if name in results and ctr_from in results:
            figures = []
            for cvr_row, ctr_row in zip(results[name], results[ctr_from]):
                # pCTR of the same seed: ESMM's own, the naive model's from the click model.
                figures.append(cvr_figures(cvr_row["cvr"], ctr_row["pctr"], ev))
            cvr[name] = {k: float(np.mean([f[k] for f in figures])) for k in figures[0]}
    cvr["oracle (truth)"] = cvr_figures(ev["p_cvr"], ev["p_click"], ev)
    print("\n| CVR model | AUC given click | entire-space AUC (true pCVR) | pCTCVR AUC |")
    print("|---|---|---|---|")
    for name, f in cvr.items():
        print(f"| {name} | {f['auc_given_click']:.4f} | {f['entire_space_auc']:.4f} | "
              f"{f['ctcvr_auc']:.4f} |")
    retrieval = [r["retrieval"] for rows in results.values() for r in rows if r["retrieval"]]
    if retrieval:
        print("\nretrieval: " + ", ".join(f"{k} {np.mean([r[k] for r in retrieval]):.4f}"
                                          for k in retrieval[0] if k.startswith("recall")))
    print(f"\neval impressions {len(ev['click'])}, clicks {int(ev['click'].sum())}, "
          f"conversions {int(ev['conversion'].sum())}; seeds "
          f"{sorted({r['seed'] for rows in results.values() for r in rows})}")
    summary = {name: [{k: v for k, v in r.items() if k not in ("cvr", "pctr")} for r in rows]
               for name, rows in results.items()}
    with open(os.path.join(out, "comparison.json"), "w") as f:
        json.dump({"variants": summary, "oracle": oracle, "cvr": cvr}, f, indent=2)


SHOP_ARCHITECTURES = ("shared_bottom", "mmoe", "ple", "soft_sharing")
SHOP_WEIGHTINGS = ("fixed", "uncertainty", "dwa")
# The shop's figures beside those each task is judged by (``judged_metrics``).
SHOP_EXTRAS = (("interest", "top_3_accuracy"), ("interest", "ndcg_at_3"),
               ("category", "macro_f1"), ("colour", "macro_f1"), ("anomaly", "precision"),
               ("anomaly", "recall"))


def shop_variants(base: config_lib.Config) -> Dict[str, config_lib.Config]:
    """Architectures x loss weightings over every task, and one single-task model per task."""
    def with_model(**changes):
        return dataclasses.replace(base, model=dataclasses.replace(base.model, **changes))

    out = {f"{a} / {w}": with_model(architecture=a, loss_weighting=w)
           for a in SHOP_ARCHITECTURES for w in SHOP_WEIGHTINGS}
    for task in base.model.tasks:
        out[f"single {task.name}"] = with_model(architecture="shared_bottom",
                                                loss_weighting="fixed", tasks=(task,))
    return out


def _stat(rows, task: str, metric: str):
    """(mean, sd over seeds) of one task's metric; None where no row has it."""
    values = [r["tasks"][task][metric] for r in rows
              if task in r["tasks"] and r["tasks"][task].get(metric) is not None]
    if not values:
        return None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def train_variants(base: config_lib.Config, args, out: str, split: str) -> Dict[str, list]:
    """Trains every ``shop_variants`` model per seed on ``base``'s featurized run.

    Returns:
        {variant: [{"seed", "tasks": the ``split`` ("eval" or "test") task
        metrics of its ``metrics.json``, "baselines"} per seed]}.
    """
    results: Dict[str, list] = {}
    for seed in args.seeds:
        for name, config in shop_variants(base).items():
            if args.only and name not in args.only:
                continue
            folder = name.replace(" / ", "-").replace(" ", "_")
            run_dir = os.path.join(out, f"{folder}-s{seed}")
            os.makedirs(run_dir, exist_ok=True)
            # The variants share one ingest (the rule's baseline reads it) and featurize.
            for stage in ("ingest", "featurize"):
                link = os.path.join(run_dir, stage)
                if not os.path.exists(link):
                    os.symlink(os.path.abspath(os.path.join(base.run_dir, stage)), link)
            start = time.time()
            config, trained = _trained(config, run_dir, seed, args.reuse)
            tasks = trained["tasks"] if split == "eval" else trained["test"]["tasks"]
            results.setdefault(name, []).append(
                {"seed": seed, "tasks": tasks, "baselines": trained["baselines"]})
            print(f"[compare] {name} seed {seed}: {time.time() - start:.0f}s", flush=True)
    return results


def shop_main(args) -> None:
    """Trains every shop variant per seed on the config's featurized run; prints the tables."""
    base = config_lib.load(args.shop_tasks)
    out = args.out or os.path.join(base.run_dir, "compare")
    started = time.time()
    results = train_variants(base, args, out, "eval")
    shop_report(results, base, out, time.time() - started)


# The figure a task is judged by, by task type (more is better for both).
JUDGED_BY_TYPE = {"binary": "auc", "multiclass": "accuracy"}


def judged_metrics(base: config_lib.Config):
    """((task, metric), ...) the comparison judges the variants by, in task order.

    Raises:
        ValueError: a task's type has no judged metric (regression).
    """
    out = []
    for task in base.model.tasks:
        if task.type not in JUDGED_BY_TYPE:
            raise ValueError(f"task {task.name}: no comparison metric for type {task.type}")
        out.append((task.name, JUDGED_BY_TYPE[task.type]))
    return tuple(out)


def real_main(args) -> None:
    """Ingests and featurizes a real data set once, trains every variant, prints the table."""
    import yaml

    # Imported here: ``python benchmarks/architectures.py`` (the other modes)
    # has no ``benchmarks`` package on its path; ``python -m`` from the repo has.
    from benchmarks import real_data

    os.makedirs(args.out, exist_ok=True)
    base_dir = os.path.join(args.out, "base")
    with open(args.config) as f:
        raw = yaml.safe_load(f)
    base_cfg = real_data._write_config(raw, base_dir, os.path.join(args.out, "base.yaml"))
    if not (args.reuse and os.path.exists(os.path.join(base_dir, "featurize"))):
        for stage in ("ingest", "featurize"):
            real_data._cli(stage, base_cfg, args.data, os.path.join(args.out, "stages.log"))
    base = config_lib.load(base_cfg)
    split = "test" if base.ingest.test_start else "eval"
    started = time.time()
    results = train_variants(base, args, args.out, split)
    judged = judged_metrics(base)
    table, _ = task_table(results, judged)
    seeds = sorted({r["seed"] for rows in results.values() for r in rows})
    print(f"\n{base.data.name}: {split} split, {base.training.epochs} epochs; seeds {seeds}; "
          f"{len(results)} variants in {(time.time() - started) / 60:.1f} min")
    with open(os.path.join(args.out, f"{base.data.name}_comparison.json"), "w") as f:
        json.dump({"split": split, "table": table, "seeds": seeds}, f, indent=2)


def task_table(results: Dict[str, list], judged) -> tuple:
    """Prints each variant's judged figures, single-task below, and the best multi-task one.

    Returns:
        ({variant: {"task/metric": (mean, sd)}}, {task: single-task (mean, sd)}).
    """
    header = [f"{t} {m.replace('_', ' ')}" for t, m in judged]
    print("\n| model | " + " | ".join(header) + " |")
    print("|---" * (len(header) + 1) + "|")
    single = {t: _stat(results.get(f"single {t}", []), t, m) for t, m in judged}
    table = {name: {f"{t}/{m}": _stat(rows, t, m) for t, m in judged}
             for name, rows in results.items()}
    multi = [n for n in results if not n.startswith("single")]
    for name in multi:
        print(f"| {name} | " + " | ".join(_cell(table[name][f"{t}/{m}"])
                                          for t, m in judged) + " |")
    print("| single-task (one model per task) | "
          + " | ".join(_cell(single[t]) for t, _ in judged) + " |")

    def ratio(name):
        # The mean over tasks of the variant's figure over the single-task one.
        return float(np.mean([table[name][f"{t}/{m}"][0] / single[t][0] for t, m in judged]))

    if multi and all(single.values()):
        best = max(multi, key=ratio)
        print(f"\nbest multi-task setting (mean ratio to single-task {ratio(best):.4f}): "
              f"{best}: " + "; ".join(_verdicts(table, single, best, judged)))
    return table, single


def _cell(stat, digits: int = 3) -> str:
    return "—" if stat is None else f"{stat[0]:.{digits}f} ± {stat[1]:.{digits}f}"


def _verdicts(table, single, best: str, judged) -> List[str]:
    """Per task: does ``best`` match (within the larger seed spread) or beat single-task?"""
    out = []
    for t, m in judged:
        got, alone = table[best][f"{t}/{m}"], single[t]
        matches = got[0] >= alone[0] - max(got[1], alone[1])
        out.append(f"{t} {'matches or beats' if matches else 'below'} "
                   f"({got[0]:.3f} vs {alone[0]:.3f})")
    return out


def shop_report(results: Dict[str, list], base: config_lib.Config, out: str,
                seconds: float) -> None:
    """Prints the four-task tables (mean ± sd over seeds) and writes them as JSON."""
    table, _ = task_table(results, judged_metrics(base))
    print("\n| model | " + " | ".join(f"{t} {m.replace('_', ' ')}" for t, m in SHOP_EXTRAS)
          + " |")
    print("|---" * (len(SHOP_EXTRAS) + 1) + "|")
    for name, rows in results.items():
        print(f"| {name} | " + " | ".join(_cell(_stat(rows, t, m)) for t, m in SHOP_EXTRAS)
              + " |")
    rule = next((r["baselines"]["anomaly"] for rows in results.values() for r in rows
                 if (r.get("baselines") or {}).get("anomaly")), None)
    if rule:
        precision = rule["precision"] if rule["precision"] is not None else float("nan")
        print(f"\nanomaly rule on the same {rule['examples']} eval impressions (the anomaly "
              f"task's held-out users' where it has a holdout): AUC {rule['auc']:.3f} (its "
              f"score), precision {precision:.3f} / recall {rule['recall']:.3f} (its "
              f"decision), {rule['flagged_rate']:.2%} of impressions flagged")
    embed_report = os.path.join(base.run_dir, "embed", "report.json")
    if os.path.exists(embed_report):
        with open(embed_report) as f:
            heads = json.load(f).get("encoder", {}).get("heads", {})
        print("image encoder, its held-out items (a task's held-out items where one holds "
              "items out): " + ", ".join(
            f"{name} accuracy {h['accuracy']:.3f}" for name, h in heads.items()))
    g = base.generate
    seeds = sorted({r["seed"] for rows in results.values() for r in rows})
    print(f"\nshop: {g.num_users} users ({g.bot_fraction:.0%} bots), {g.num_items} items, "
          f"{base.training.epochs} epochs; seeds {seeds}; {len(results)} variants in "
          f"{seconds / 60:.1f} min")
    with open(os.path.join(out, "shop_tasks_comparison.json"), "w") as f:
        json.dump({"table": table, "rule": rule, "seeds": seeds}, f, indent=2)


if __name__ == "__main__":
    main()
