"""Warm start on two consecutive days of the generated shop: 1 warm epoch vs 10 cold.

Day 1 is the demo shop (1500 users, 300 items, 14 days) drawn from a pool of
1800 users and 330 items; day 2 is the next day's run: the window a day
later, and every user and item of the pool, so 300 users and 30 items are
new (``generate.pool_users`` / ``pool_items``). Day 1 runs every stage and
publishes its model (``shoprec push``) into a models folder outside both
run folders. Day 2 reuses day 1's image encoder (``embed.encoder``: a new
encoder would move the photo embedding space under the warm-started
weights), then trains twice on the same featurized data:

- cold: ``training.epochs`` (10), fresh initialisation, and the same for 1
  epoch;
- warm: 1 epoch, ``training.warm_start: latest_blessed`` (day 1's model,
  embedding rows carried over by token into day 2's vocabularies),

and prints each one's day-2 eval AUC (``train/metrics.json``), the training
job's wall and CPU seconds and the ratio, beside day 1's model scored on
day 2's eval split without retraining (the gate's baseline figure).

Usage:

    .venv/bin/python benchmarks/warm_start.py --work_dir /tmp/warm_start
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from typing import Callable, Dict, Tuple

from shoprec.app.stages import BY_NAME
from shoprec.core import config as config_lib
from shoprec.core.errors import ModelNotBlessedError

DAY1_USERS, DAY1_ITEMS, POOL_USERS, POOL_ITEMS = 1500, 300, 1800, 330


def _timed(fn: Callable[[], dict]) -> Tuple[dict, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _stage(config, name: str, **options) -> dict:
    print(f"[{os.path.basename(config.run_dir)}] {name} ...", flush=True)
    return BY_NAME[name].run(config, [], options)


def days(work_dir: str):
    """(day 1, day 2) configs sharing one models folder."""
    base = config_lib.load()
    models_dir = os.path.join(work_dir, "models")
    gen = dataclasses.replace(base.generate, pool_users=POOL_USERS, pool_items=POOL_ITEMS,
                              num_users=DAY1_USERS, num_items=DAY1_ITEMS)
    day1 = dataclasses.replace(base, run_dir=os.path.join(work_dir, "dt=2026-11-14"),
                               generate=gen, models_dir=models_dir)
    day2 = dataclasses.replace(
        day1, run_dir=os.path.join(work_dir, "dt=2026-11-15"),
        generate=dataclasses.replace(gen, num_users=POOL_USERS, num_items=POOL_ITEMS,
                                     start_date="2026-11-02"),
        ingest=dataclasses.replace(base.ingest, eval_start="2026-11-13T00:00:00Z"),
        embed=dataclasses.replace(base.embed, encoder=day1.layout.encoder_dir))
    return day1, day2


def _aucs(metrics: dict) -> Dict[str, float]:
    return {task: round(m["auc"], 4) for task, m in metrics["tasks"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", required=True)
    parser.add_argument("--warm_epochs", type=int, default=1)
    args = parser.parse_args()
    day1, day2 = days(os.path.abspath(args.work_dir))
    for stage in ("generate", "embed", "ingest", "featurize", "train", "push"):
        _stage(day1, stage)
    for stage in ("generate", "embed", "ingest", "featurize"):
        _stage(day2, stage)

    results = {}
    for name, epochs in (("cold", day2.training.epochs), ("cold, 1 epoch", args.warm_epochs)):
        # Its own run folder over day 2's data, so each model keeps its train/.
        cold = dataclasses.replace(
            day2, run_dir=f"{day2.run_dir}-cold{epochs}",
            training=dataclasses.replace(day2.training, epochs=epochs))
        os.makedirs(cold.run_dir, exist_ok=True)
        for stage in ("raw", "embed", "ingest", "featurize"):
            link = os.path.join(cold.run_dir, stage)
            if not os.path.islink(link):
                os.symlink(os.path.join(day2.run_dir, stage), link)
        results[name] = _timed(lambda: _stage(cold, "train"))
    warm = dataclasses.replace(day2, training=dataclasses.replace(
        day2.training, epochs=args.warm_epochs, warm_start="latest_blessed"))
    results["warm"] = _timed(lambda: _stage(warm, "train"))
    # The gate on day 2: the warm model against day 1's, on day 2's eval split.
    try:
        pushed = _stage(warm, "push")
    except ModelNotBlessedError as err:
        pushed = err.report  # a refusal is a result here: its figures are printed below

    rows = [("day 1 model, not retrained", "-", None, None, None,
             {t: round(m["auc"], 4) for t, m in (pushed.get("baseline") or {}).items()})]
    for name, (metrics, wall, cpu) in results.items():
        training = metrics["training"]
        rows.append((name, len(training["epochs_run"]), wall, cpu, training["seconds"],
                     _aucs(metrics)))
    print("\n| day 2 model | epochs | train job wall s | its CPU s | fit wall s | click AUC "
          "| conversion AUC |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, epochs, wall, cpu, fit, aucs in rows:
        cells = ["-" if v is None else f"{v:.1f}" for v in (wall, cpu, fit)]
        print(f"| {name} | {epochs} | {' | '.join(cells)} | {aucs.get('click', '-')} | "
              f"{aucs.get('conversion', '-')} |")
    cold_wall, warm_wall = results["cold"][1], results["warm"][1]
    print(f"\nwarm / cold train wall time: {warm_wall / cold_wall:.3f}; "
          f"CPU: {results['warm'][2] / results['cold'][2]:.3f}")
    warm_report = results["warm"][0]["training"]["warm_start"]
    print("warm start:", json.dumps(warm_report, sort_keys=True))
    print("day-2 gate on the warm model:", pushed.get("status"),
          json.dumps({t: {k: v for k, v in r.items() if k in ("auc", "baseline_auc", "passed")}
                      for t, r in pushed.get("verdict", {}).get("tasks", {}).items()}))


if __name__ == "__main__":
    main()
