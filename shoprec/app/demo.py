"""``shoprec demo``: every stage, end to end, on data the project generates.

Writes into a fresh run folder, times each stage, and ends with the table a
new user wants first: per-task eval AUC next to the oracle (Bayes-optimal) AUC
computed from the generator's true probabilities.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from shoprec.app import console, recommend, runs
from shoprec.app.report.page import oracle_auc
from shoprec.app.stages import demo_stages, options_of
from shoprec.core.config import Config
from shoprec.io import lock

# Written into every demo run folder: the demo only ever deletes folders it made.
MARKER = ".shoprec-demo-run"


def _fresh_run_dir(run_dir: str) -> None:
    if os.path.isdir(run_dir) and os.listdir(run_dir):
        if not os.path.exists(os.path.join(run_dir, MARKER)):
            raise FileExistsError(
                f"demo: {run_dir} exists and was not made by `shoprec demo`; "
                "pass --run_dir to a new folder")
        shutil.rmtree(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, MARKER), "w") as f:
        f.write("made by shoprec demo; deleted and rewritten by the next demo run\n")


def _timed(name: str, fn: Callable[[], dict], times: Dict[str, float]) -> dict:
    print(f"[demo] {name} ...", flush=True)
    start = time.time()
    report = fn()
    times[name] = time.time() - start
    print(console.stage_line(name, report, times[name]), flush=True)
    return report


def _table(rows: List[List[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _auc_cell(row: Mapping[str, Any]) -> str:
    if not row or row.get("auc") is None:
        return "n/a"
    return f"{row['auc']:.4f} [{row['auc_low']:.3f}, {row['auc_high']:.3f}]"


def cold_start_table(cold_start: Mapping[str, Mapping], oracle: Mapping[str, Mapping]) -> str:
    """Known vs cold items and users per task: eval AUC, examples and the oracle's AUC.

    Args:
        cold_start: ``train/metrics.json``'s ``cold_start`` (``trainer.train.cold_start``).
        oracle: :func:`oracle_slices` (empty: no oracle column values).

    Returns:
        The table, or "" when there is no slice to show.
    """
    rows = [["task", "slice", "known AUC", "cold AUC", "examples known / cold",
             "oracle known / cold"]]
    for task, kinds in cold_start.items():
        for kind in ("item", "user"):
            known, cold = (kinds.get(kind) or {}).get("known"), (kinds.get(kind) or {}).get("cold")
            if known is None and cold is None:
                continue
            best = oracle.get(task, {}).get(kind, {})
            rows.append([task, f"{kind}s", _auc_cell(known), _auc_cell(cold),
                         f"{(known or {}).get('examples', 0)} / {(cold or {}).get('examples', 0)}",
                         " / ".join("n/a" if best.get(v) is None else f"{best[v]:.4f}"
                                    for v in ("known", "cold"))])
    return _table(rows) if len(rows) > 1 else ""


def oracle_slices(config: Config) -> Dict[str, Dict[str, Dict[str, Optional[float]]]]:
    """The oracle's eval AUC on known and cold items and users, per task (generated shop).

    Cold: no impression before the eval start (so no train example). Empty
    for a data set without the generator's truth file.
    """
    if config.data.name != "generated" or not config.inputs.truth:
        return {}
    from pipelines import generate
    from trainer import metrics

    truth = generate.truth_columns(config.input_path(config.inputs.truth))
    late = truth["timestamp"] >= config.eval_start_ts
    out: Dict[str, Dict[str, Dict[str, Optional[float]]]] = {}
    for task, prob in (("click", "p_click"), ("conversion", "p_conversion")):
        out[task] = {}
        for kind in ("item", "user"):
            ids = truth[f"{kind}_id"]
            known = np.isin(ids, ids[~late])
            groups = {"known": late & known, "cold": late & ~known}
            out[task][kind] = {
                name: (metrics.auc(truth[task][rows], truth[prob][rows])
                       if len(set(truth[task][rows].tolist())) == 2 else None)
                for name, rows in groups.items()}
    return out


def run(config: Config, beam_args: Optional[Sequence[str]] = None,
        strategy: Optional[str] = None, command: str = "shoprec demo") -> int:
    """Runs every demo stage of the stage table in order, each published; prints the summary."""
    _fresh_run_dir(config.run_dir)
    times: Dict[str, float] = {}
    options = {"strategy": strategy} if strategy else {}
    reports = {}
    with lock.held(config.layout.lock_file, command, config.lock_stale_hours):
        for stage in demo_stages():
            reports[stage.name] = _timed(stage.name, lambda: runs.run_stage(
                stage, config, beam_args, options_of(stage, options)).report, times)
    gen, embedded, ing = reports["generate"], reports["embed"], reports["ingest"]
    metrics, scored, recommended = reports["train"], reports["score"], reports["recommend"]
    pushed = reports["push"]

    oracle = oracle_auc(config)
    layout = config.layout
    print()
    print("outputs")
    for label, path in (
            ("raw data", os.path.join(config.run_dir, "raw")),
            ("image encoder", embedded["model_dir"]),
            ("item embeddings", embedded["outputs"]["tfrecord"]),
            ("raw examples", os.path.dirname(layout.examples("train"))),
            ("dead letters", layout.dead_letter + "*, " + embedded["outputs"]["dead_letter"]),
            ("ingest report", layout.ingest_report),
            ("transform graph", layout.transform_dir),
            ("transformed examples", os.path.dirname(layout.transformed("train"))),
            ("exported model", layout.model_dir),
            ("metrics", layout.metrics_file),
            ("published model", f"{layout.version_dir(pushed['version'])} "
                                f"({pushed['status']}; {layout.current_pointer})"),
            ("tensorboard logs", layout.logs_dir),
            ("scores", scored["scores"]),
            ("recommendations", recommended["recommendations"]),
            ("run report", layout.report_page)):
        print(f"  {label:<21} {path}")
    dead = {k.split("/", 1)[1]: v
            for k, v in {**embedded["counts"], **ing.get("counts", {})}.items()
            if k.startswith("dead_letter/")}
    if dead:
        print("\ndead letters by input/reason: "
              + ", ".join(f"{k}={v}" for k, v in sorted(dead.items())))
    print(f"\ngenerated: {gen.get('users')} users, {gen.get('items')} items, "
          f"{gen.get('impressions')} impressions; scored rows: "
          f"{scored['counts'].get('score/rows', 0)} in "
          f"{len(glob.glob(scored['scores']))} Parquet file(s)")

    if "encoder" in embedded:  # trained here, not given as embed.encoder
        print("image encoder, held-out items: " + ", ".join(
            f"{name} accuracy {h['accuracy']:.3f} (majority class {h['majority_rate']:.3f})"
            for name, h in embedded["encoder"]["heads"].items()))
        behaviour = embedded["encoder"].get("behaviour", {})
        if behaviour.get("targets"):
            print(f"  behaviour head, {behaviour['held_out_teachers']} held-out teachers "
                  "(predicting the mean: R^2 0): " + ", ".join(
                      f"{name} r {t['pearson']:.3f} R^2 {t['r2']:.3f}"
                      for name, t in behaviour["targets"].items()))

    rows = [["task", "eval AUC", "oracle AUC", "ratio", "eval log loss"]]
    # The oracle knows click and conversion; other tasks are in the run report.
    for task in (t for t in config.model.tasks if t.name in oracle):
        got = metrics["tasks"][task.name]
        best = oracle[task.name]
        rows.append([task.name, f"{got['auc']:.4f}", f"{best:.4f}", f"{got['auc'] / best:.3f}",
                     f"{got['log_loss']:.4f}"])
    print()
    print(_table(rows))
    cold = cold_start_table(metrics.get("cold_start") or {}, oracle_slices(config))
    if cold:
        print()
        print("cold start: eval AUC where the item or user has no train example, with 95% "
              "bootstrap intervals")
        print(cold)
    if "metrics" in recommended:
        print()
        print(recommend.render(recommended["metrics"]))
    print()
    print("stage wall time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in times.items())
          + f", total {sum(times.values()):.1f}")
    sys.stdout.flush()
    return 0
