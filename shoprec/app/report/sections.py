"""The report's sections, each built from the files the stages wrote.

A section is a dict the page template renders: ``id``, ``title``,
``look_for`` (one sentence: what to look for), ``images`` (``(caption, data
URI)`` pairs) and ``tables`` (``{caption, header, rows}``; a cell is its text,
or ``{'text', 'attrs'}`` when the page marks it, e.g. the AUC cells a test
reads back). Every number comes from a stage's file as written (the data
report, ``train/metrics.json``, ``train/diagnostics.json``,
``recommend/metrics.json``) or from the function that printed it on the
console (the oracle AUC); none is recomputed here.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from shoprec.app.report import plots

BINARY_METRICS = ("auc", "gauc", "log_loss", "calibration", "positive_rate", "examples")
CLASS_METRICS = ("accuracy", "top_3_accuracy", "ndcg_at_3", "macro_f1", "log_loss", "examples")
THRESHOLD_METRICS = ("auc", "threshold", "precision", "recall", "examples")
RANKING_METRICS = ("recall", "ndcg", "map", "hit_rate", "coverage")
# The lists the ranking table shows, in order (``shoprec.app.recommend``'s names).
LISTS = ("model", "popularity", "own_history", "own_interactions", "own_co_occurrence",
         "popular_new", "oracle")


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _prefixed(counts: Mapping[str, int], prefix: str) -> Dict[str, int]:
    return {k[len(prefix):]: v for k, v in sorted(counts.items()) if k.startswith(prefix)}


def data_section(ingest: Optional[Mapping], embed: Optional[Mapping]) -> Dict[str, Any]:
    """Rows read, dead letters by input and reason, label rates and history per split."""
    counts = {**((embed or {}).get("counts", {})), **((ingest or {}).get("counts", {}))}
    images, tables = [], []
    read = _prefixed(counts, "rows_read/")
    valid = _prefixed(counts, "rows_valid/")
    dead = _prefixed(counts, "dead_letter/")
    tables.append({"caption": "rows per input (ingest; images: embed)",
                   "header": ["input", "rows read", "valid", "dead letters"],
                   "rows": [[name, str(n), str(valid.get(name, "n/a")),
                             str(sum(v for k, v in dead.items() if k.startswith(name + "/")))]
                            for name, n in read.items()]})
    if dead:
        images.append(("dead letters by input / reason",
                       plots.bars(dead, "dead letters by input / reason", "rows")))
    splits = (ingest or {}).get("splits", {})
    if splits:
        tables.append({"caption": "examples and label rates per split",
                       "header": ["split", "examples", "sampled negatives"]
                       + [f"{label} rate" for label in
                          sorted({k for s in splits.values() for k in s["label_rates"]})],
                       "rows": [[split, str(s["examples"]), str(s.get("sampled", 0))]
                                + [_fmt(s["label_rates"][k]) for k in sorted(s["label_rates"])]
                                for split, s in splits.items()]})
        images.append(("label rate per split", plots.grouped_bars(
            {split: s["label_rates"] for split, s in splits.items()},
            "label rate per split", "positive rate")))
        for split, s in splits.items():
            histogram = (s.get("history_length") or {}).get("histogram")
            if histogram:
                images.append((f"history length ({split})", plots.histogram_counts(
                    histogram, f"history length, {split}", "entries before the example")))
    return {"id": "data", "title": "Data",
            "look_for": "Dead letters should be a small share of each input, and the label "
                        "rates of train and eval should be close; a jump means the split or "
                        "the log changed.",
            "images": images, "tables": tables}


def tasks_section(metrics: Mapping, diagnostics: Optional[Mapping]) -> Dict[str, Any]:
    """Per task: the metrics table (eval and test), ROC, PR, reliability, score histograms."""
    rows = []
    for split, tasks in (("eval", metrics["tasks"]),
                         ("test", (metrics.get("test") or {}).get("tasks"))):
        for task, values in (tasks or {}).items():
            rows.append([task, split] + [
                {"text": _fmt(values.get(m)),
                 "attrs": {"data-metric": m, "data-task": task, "data-split": split}}
                for m in BINARY_METRICS])
    images = []
    for split in ("eval", "test"):
        for task, d in ((diagnostics or {}).get(split) or {}).items():
            if task.startswith("_"):
                continue
            auc = ((metrics["tasks"] if split == "eval" else metrics["test"]["tasks"])
                   .get(task, {}).get("auc"))
            label = f"{task}, {split}"
            images.append((f"ROC {label}", plots.curves(
                {f"model (AUC {_fmt(auc)})": (d["roc"]["fpr"], d["roc"]["tpr"])},
                f"ROC: {label}", "false positive rate", "true positive rate", diagonal=True)))
            rate = ((metrics["tasks"] if split == "eval" else metrics["test"]["tasks"])
                    .get(task, {}).get("positive_rate"))
            images.append((f"precision-recall {label}", plots.curves(
                {"model": (d["pr"]["recall"], d["pr"]["precision"])},
                f"precision-recall: {label}", "recall", "precision", baseline=rate)))
            images.append((f"reliability {label}",
                           plots.reliability(d["reliability"], f"reliability: {label}")))
            images.append((f"score histograms {label}",
                           plots.score_histograms(d["histogram"], f"scores by label: {label}")))
    header = ["task", "split"] + list(BINARY_METRICS)
    tables = [{"caption": "metrics per task (train/metrics.json)", "header": header,
               "rows": rows, "id": "task-metrics"}]
    tables += _class_and_threshold_tables(metrics)
    return {"id": "tasks", "title": "Per task",
            "look_for": "AUC says how well each task ranks; the reliability curve should hug "
                        "the diagonal (calibration near 1), and the two score histograms "
                        "should overlap as little as possible.",
            "images": images, "tables": tables}


def _class_and_threshold_tables(metrics: Mapping) -> list:
    """Multiclass tasks' metrics; thresholded tasks beside their baseline (the anomaly rule)."""
    tables = []
    splits = (("eval", metrics["tasks"]), ("test", (metrics.get("test") or {}).get("tasks")))
    rows = [[task, split] + [_fmt(values.get(m)) for m in CLASS_METRICS]
            for split, tasks in splits for task, values in (tasks or {}).items()
            if "accuracy" in values]
    if rows:
        tables.append({"caption": "class tasks: accuracy, top-3, NDCG@3 over classes, macro-F1",
                       "header": ["task", "split"] + list(CLASS_METRICS), "rows": rows,
                       "id": "class-metrics"})
    rows = [[task, "model"] + [_fmt(values.get(m)) for m in THRESHOLD_METRICS]
            for task, values in metrics["tasks"].items() if "precision" in values]
    for task, values in (metrics.get("baselines") or {}).items():
        rows.append([task, values.get("baseline", "baseline")]
                    + [_fmt(values.get(m)) for m in THRESHOLD_METRICS])
    if rows:
        tables.append({"caption": "thresholded tasks (eval), next to their baseline on the same "
                                  "examples (the rule: its decision as ingest applies it)",
                       "header": ["task", "scored by"] + list(THRESHOLD_METRICS), "rows": rows,
                       "id": "threshold-metrics"})
    return tables


def training_section(metrics: Mapping) -> Dict[str, Any]:
    """Loss per output and eval metrics per epoch, early stopping's choice, task weights."""
    t = metrics["training"]
    per_epoch = t.get("eval_per_epoch") or []
    epochs = [e["epoch"] for e in per_epoch]
    stopping = t.get("early_stopping")
    chosen = stopping.get("best_epoch") if stopping else None
    images = []
    losses = t.get("losses") or {"loss": t.get("loss", [])}
    start = t.get("initial_epoch") or 0
    images.append(("loss per output", plots.per_epoch(
        losses, "training loss per output", "loss",
        epochs=list(range(start, start + len(next(iter(losses.values()), [])))), marker=chosen,
        log=True)))
    if per_epoch:
        tasks = list(per_epoch[0]["tasks"])
        for metric in ("auc", "log_loss"):
            series = {task: [e["tasks"].get(task, {}).get(metric) for e in per_epoch]
                      for task in tasks}
            if any(v is not None for vs in series.values() for v in vs):
                images.append((f"eval {metric} per epoch", plots.per_epoch(
                    series, f"eval {metric} per epoch", metric, epochs=epochs, marker=chosen)))
    facts = [["architecture", str(t.get("architecture"))],
             ["strategy", f"{t.get('strategy')} over {t.get('replicas')} replica(s)"],
             ["epochs run", f"{len(t.get('epochs_run') or [])} of {t.get('epochs')}"],
             ["steps", str(t.get("steps"))],
             ["examples / s", _fmt(t.get("examples_per_second"), 1)]]
    if stopping:
        stopped = stopping.get("stopped_epoch")
        end = "ran every epoch" if stopped is None else f"stopped after epoch {stopped + 1}"
        facts.append(["early stopping", f"{stopping['task']} {stopping['metric']}: best "
                      f"{_fmt(stopping['best'])} at epoch {(chosen or 0) + 1} (its weights "
                      f"kept); {end}"])
    else:
        facts.append(["early stopping", "off (training.early_stopping.task unset): the last "
                      "epoch's weights"])
    facts.append(["task weights", t.get("task_weights") or "fixed (model.tasks[].weight); "
                  "none learned"])
    return {"id": "training", "title": "Training",
            "look_for": "Eval metrics should level off while the training loss keeps falling "
                        "only a little; eval AUC falling while loss falls is overfitting.",
            "images": images,
            "tables": [{"caption": "training run", "header": ["", ""], "rows": facts}]}


def slices_section(metrics: Mapping, diagnostics: Optional[Mapping]) -> Dict[str, Any]:
    """Per task AUC by user activity, item category and cold / known items and users."""
    eval_d = (diagnostics or {}).get("eval") or {}
    meta = eval_d.get("_slices", {})
    images, rows = [], []
    names = {"activity": "user activity", "category": meta.get("category") or "item category",
             "item": "cold vs known item", "user": "cold vs known user"}
    for task, d in eval_d.items():
        if task.startswith("_"):
            continue
        overall = metrics["tasks"].get(task, {}).get("auc")
        for key, title in names.items():
            if key not in d["slices"]:
                continue
            images.append((f"{task}: {title}", plots.slice_intervals(
                d["slices"][key], f"{task} AUC by {title} (eval)", overall)))
            for r in d["slices"][key]:
                interval = ("n/a" if r["auc_low"] is None
                            else f"{r['auc_low']:.3f} – {r['auc_high']:.3f}")
                rows.append([task, title, r["value"], str(r["examples"]), str(r["positives"]),
                             _fmt(r["auc"]), interval])
    light = meta.get("activity_light_max_train_examples")
    return {"id": "slices", "title": "Slices",
            "look_for": "A slice whose interval lies wholly below the overall AUC is where the "
                        "model is weak; a wide interval means too few examples to tell.",
            "note": (f"new: no train example; light: at most {light:g} train examples (the "
                     f"median per train user); heavy: more. Cold: an item or user with no "
                     f"train example. Intervals: 95% bootstrap." if light is not None else None),
            "images": images,
            "tables": [{"caption": "AUC per slice (eval)",
                        "header": ["task", "slice", "value", "examples", "positives", "AUC",
                                   "95% interval"], "rows": rows}]}


def baselines_section(metrics: Mapping, diagnostics: Optional[Mapping],
                      oracle: Optional[Mapping[str, float]]) -> Dict[str, Any]:
    """The model's eval AUC and GAUC beside popularity and (generated shop) the oracle."""
    eval_d = (diagnostics or {}).get("eval") or {}
    rows = []
    for task, values in metrics["tasks"].items():
        if "auc" not in values:
            continue
        popularity = (eval_d.get(task) or {}).get("baselines", {}).get("popularity", {})
        best = (oracle or {}).get(task)
        ratio = values["auc"] / best if best and values.get("auc") else None
        rows.append([task, _fmt(values.get("auc")), _fmt(popularity.get("auc")), _fmt(best),
                     _fmt(ratio, 3), _fmt(values.get("gauc")), _fmt(popularity.get("gauc"))])
    return {"id": "baselines", "title": "Baselines",
            "look_for": "The model should beat popularity clearly; on the generated shop the "
                        "ratio to the oracle (the generator's true probabilities) says how "
                        "much is left to learn.",
            "note": "popularity: an example's score is its item's positives of that label in "
                    "train. No single-task models are trained by this run.",
            "images": [],
            "tables": [{"caption": "eval AUC: model vs baselines",
                        "header": ["task", "model AUC", "popularity AUC", "oracle AUC",
                                   "model / oracle", "model GAUC", "popularity GAUC"],
                        "rows": rows}]}


def gate_section(push: Mapping) -> Dict[str, Any]:
    """The model gate's verdict (``push/report.json``): per task AUC against the thresholds."""
    verdict = push.get("verdict") or {}
    rows = [[task, _fmt(t.get("auc")), _fmt(t.get("baseline_auc")), _fmt(t.get("min_auc")),
             _fmt(t.get("max_auc_drop")), "yes" if t.get("passed") else "no",
             "; ".join(t.get("reasons") or []) or "-"]
            for task, t in (verdict.get("tasks") or {}).items()]
    published = push.get("version") or "nothing"
    return {"id": "gate", "title": "Model gate",
            "look_for": "A refused model is not published: scoring and recommending keep the "
                        "last blessed version; the reasons say which task failed which "
                        "threshold.",
            "note": f"verdict: {push.get('status')}; published: {published}; compared with: "
                    f"{push.get('baseline_version') or 'no published model'}. AUCs here are "
                    f"the gate's, of the exported model on the raw eval split.",
            "images": [],
            "tables": [{"caption": "the gate's verdict per task (push/report.json)",
                        "header": ["task", "AUC", "published model's AUC", "min AUC",
                                   "max AUC drop", "passed", "reasons"], "rows": rows}]}


def ranking_section(ranking: Mapping) -> Dict[str, Any]:
    """Recall / NDCG / MAP at every K for the model and the baselines; the table at K;
    the candidates' recall per source and the related items."""
    at_k = ranking.get("at_k") or {}
    images = [(f"{m} vs K", plots.metric_vs_k(
        {name: [row[m] for row in rows] for name, rows in at_k.items()},
        f"{m}@K", m)) for m in ("recall", "ndcg", "map") if at_k]
    lists = [n for n in LISTS if n in ranking]
    rows = [[n] + [_fmt(ranking[n][m]) for m in RANKING_METRICS] for n in lists]
    tables = [{"caption": f"ranking @{ranking['k']} (recommend/metrics.json)",
               "header": ["list"] + list(RANKING_METRICS), "rows": rows}]
    recall = ranking.get("candidate_recall") or {}
    if recall:
        tables.append({"caption": "candidate recall: the share of each judged user's items "
                                  "among a source's candidates (the ceiling of the list)",
                       "header": ["source", "recall", "found / relevant", "candidates / user"],
                       "rows": [[n, _fmt(r["recall"]), f"{r['found']} / {r['relevant']}",
                                 f"{r['candidates']:.1f}"] for n, r in recall.items()]})
    related = ranking.get("related") or {}
    if related:
        tables.append({"caption": f"related items @{related['k']}: each judged user's last "
                                  "item's list against what they did next",
                       "header": ["list", "recall", "ndcg", "hit_rate", "users"],
                       "rows": [[n, _fmt(r["recall"]), _fmt(r["ndcg"]), _fmt(r["hit_rate"]),
                                 str(r["users"])] for n, r in related.items() if n != "k"]})
    return {"id": "ranking", "title": f"Ranking @{ranking['k']}",
            "look_for": "The model's line should sit above the baselines at every K; "
                        "coverage says how much of the catalogue it ever recommends; the "
                        "union's candidate recall bounds what any ranking of it can reach.",
            "note": f"{ranking['model']['users']} users with a {ranking['relevance_label']} in "
                    f"the eval window, {ranking['catalogue']} items.",
            "images": images, "tables": tables}