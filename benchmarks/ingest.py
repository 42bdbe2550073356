"""Ingest benchmark: the Beam job against a single-pass pyarrow baseline of the same work.

For each size (a multiple of the demo config's users) it generates a shop and
embeds its photos once (not timed), then measures, each run in a fresh
process: ``pipelines.ingest.run`` (on the in-process runner) and
``benchmarks.ingest_baseline.ingest`` (the same cleaning, labelling, join and
split over pyarrow columns). It reports event rows/s, rows per CPU-second (one
core's worth of work), peak RSS and the ratio ingest / baseline, medians over
repeats (with ``--before_repo``, another checkout's ingest beside them), and checks that both wrote the same raw examples (every split, every
feature, as multisets) and the same dead-letter counts.

    python benchmarks/ingest.py --sizes 1,10 --base_users 500 --work_dir /tmp/ib
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Dict, List

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # run as a script: make the benchmarks package importable
    sys.path.insert(0, REPO_ROOT)

import shoprec  # noqa: E402,F401  (selects Keras 2 before TensorFlow loads)

from benchmarks import measure  # noqa: E402

BASELINE_DIR = "ingest_baseline"


def _child_prepare(config) -> dict:
    from pipelines import generate
    from shoprec.app import embed

    start = time.perf_counter()
    generate.run(config)
    embed.run(config, [])
    return {"prepare_s": time.perf_counter() - start}


def _child_ingest(config) -> dict:
    from pipelines import ingest

    start, cpu = time.perf_counter(), measure.cpu_seconds()
    report = ingest.run(config, [])
    counts = report["counts"]
    return {"seconds": time.perf_counter() - start, "cpu_seconds": measure.cpu_seconds() - cpu,
            "events": counts["rows_read/events"],
            "rows": {s: counts[f"examples/{s}"] for s in config.splits},
            "dead_letters": {k: v for k, v in counts.items()
                             if k.startswith("dead_letter/events/") and v}}


def _child_baseline(config) -> dict:
    from benchmarks import ingest_baseline

    out_dir = os.path.join(config.run_dir, BASELINE_DIR)
    shutil.rmtree(out_dir, ignore_errors=True)
    cpu = measure.cpu_seconds()
    report = ingest_baseline.ingest(config, out_dir)
    return {"seconds": report["seconds"], "cpu_seconds": measure.cpu_seconds() - cpu,
            "events": report["events"], "rows": report["rows"], "phases": report["phases"],
            "dead_letters": {k: v for k, v in report["counts"].items()
                             if k.startswith("dead_letter/events/") and v}}


CHILDREN = {"prepare": lambda config, args: _child_prepare(config),
            "ingest": lambda config, args: _child_ingest(config),
            "baseline": lambda config, args: _child_baseline(config)}


def _rows(paths: List[str], spec) -> collections.Counter:
    """Every raw example in ``paths`` as a hashable tuple of its values, counted."""
    import tensorflow as tf

    names = sorted(spec)
    out: collections.Counter = collections.Counter()
    dataset = tf.data.TFRecordDataset(paths, compression_type="GZIP").batch(4096).map(
        lambda serialized: tf.io.parse_example(serialized, spec))
    for batch in dataset.as_numpy_iterator():
        columns = [batch[n].tolist() for n in names]
        for values in zip(*columns):
            out[tuple(tuple(v) if isinstance(v, list) else v for v in values)] += 1
    return out


def check_same_examples(config) -> Dict[str, int]:
    """Asserts that ingest and the baseline wrote the same examples; {split: rows}.

    Raises:
        AssertionError: a split's examples differ (counts of the rows only one has).
    """
    from benchmarks import ingest_baseline

    spec = ingest_baseline.raw_spec(config.registry)
    out = {}
    for split in config.splits:
        ours = _rows(sorted(glob.glob(config.layout.examples(split) + "-*")), spec)
        theirs = _rows([os.path.join(config.run_dir, BASELINE_DIR,
                                     split + ingest_baseline.SUFFIX)], spec)
        if ours != theirs:
            raise AssertionError(f"{split}: {sum((ours - theirs).values())} rows only in "
                                 f"ingest's output, {sum((theirs - ours).values())} only in "
                                 f"the baseline's")
        out[split] = sum(ours.values())
    return out


def _summary(runs: List[dict]) -> dict:
    events = runs[0]["events"]
    return {"events": events, "repeats": len(runs),
            "rows_per_s": statistics.median(events / r["seconds"] for r in runs),
            "rows_per_cpu_s": statistics.median(events / r["cpu_seconds"] for r in runs),
            "peak_rss_mib": statistics.median(max(r["tree_peak_rss_mib"], r["vmhwm_mib"])
                                              for r in runs),
            "loadavg": statistics.median(r["loadavg_after"] for r in runs),
            "phases": runs[0].get("phases")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    measure.add_size_args(parser, "1,10", CHILDREN)
    parser.add_argument("--repeats", type=int, default=3, help="repeats at the smallest size")
    parser.add_argument("--repeats_large", type=int, default=1, help="repeats at larger sizes")
    parser.add_argument("--work_dir", default=None,
                        help="keep run folders here and reuse their generated data")
    parser.add_argument("--results", default=None, help="also write the results as JSON here")
    parser.add_argument("--before_repo", default=None,
                        help="another checkout whose ingest job also runs (row `before`), "
                             "for before/after figures from one run; it needs this script")
    args = measure.parse_args(parser, argv, CHILDREN)
    if args is None:  # a child measurement ran
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="shoprec-ingest-bench-")
    started = time.perf_counter()
    print(f"ingest benchmark: sizes {sizes} x {args.base_users} users, {os.cpu_count()} CPUs, "
          f"work dir {work_dir}")
    results: Dict[int, dict] = {}
    try:
        for size in sizes:
            users = size * args.base_users
            run_dir = os.path.join(work_dir, f"x{size}")
            child = ["--run_dir", run_dir, "--users", str(users)]
            marker = os.path.join(run_dir, "generated.json")
            if not os.path.exists(marker):
                shutil.rmtree(run_dir, ignore_errors=True)
                os.makedirs(run_dir)
                prepared = measure.run_child(["--child", "prepare"] + child, REPO_ROOT,
                                             os.path.join(run_dir, "prepare.log"),
                                             script="ingest.py")
                with open(marker, "w") as f:
                    json.dump(prepared, f)
            runs: Dict[str, List[dict]] = {"baseline": [], "ingest": []}
            if args.before_repo:
                runs["before"] = []
            for repeat in range(args.repeats if size == sizes[0] else args.repeats_large):
                # "ingest" last: its examples are the ones checked against the baseline.
                for kind in sorted(runs, key=lambda k: k == "ingest"):
                    repo = args.before_repo if kind == "before" else REPO_ROOT
                    runs[kind].append(measure.run_child(
                        ["--child", "ingest" if kind == "before" else kind] + child, repo,
                        os.path.join(run_dir, f"{kind}-{repeat}.log"), script="ingest.py"))
            config = measure.build_config(run_dir, users)
            rows = check_same_examples(config)
            dead = (runs["ingest"][0]["dead_letters"], runs["baseline"][0]["dead_letters"])
            if dead[0] != dead[1]:
                raise AssertionError(f"dead letters differ: ingest {dead[0]}, baseline {dead[1]}")
            summary = {kind: _summary(r) for kind, r in runs.items()}
            summary["rows"], summary["dead_letters"] = rows, dead[0]
            results[size] = summary
            base, ours = summary["baseline"], summary["ingest"]
            print(f"\n{size}x: {users} users, {ours['events']:,} event rows -> examples {rows}; "
                  f"outputs and dead letters ({sum(dead[0].values())}) equal")
            print(f"  {'path':<9} {'rows/s':>9} {'vs base':>7} {'rows/CPU-s':>10} {'vs base':>7} "
                  f"{'peak RSS MiB':>12} {'n':>2} {'load':>4}")
            for kind, s in summary.items():
                if kind in ("rows", "dead_letters"):
                    continue
                print(f"  {kind:<9} {s['rows_per_s']:>9,.0f} "
                      f"{s['rows_per_s'] / base['rows_per_s']:>7.3f} {s['rows_per_cpu_s']:>10,.0f} "
                      f"{s['rows_per_cpu_s'] / base['rows_per_cpu_s']:>7.3f} "
                      f"{s['peak_rss_mib']:>12,.0f} {s['repeats']:>2} {s['loadavg']:>4.1f}")
            print("  baseline phases (s): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in base["phases"].items()))
    finally:
        if not args.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    print("\n| size | event rows | ingest rows/s | baseline rows/s | ingest / baseline "
          "| ingest rows/CPU-s | baseline rows/CPU-s | ingest / baseline (CPU) "
          "| peak RSS ingest (MiB) | peak RSS baseline (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size, s in results.items():
        b = s["baseline"]
        for kind in [k for k in ("before", "ingest") if k in s]:
            i = s[kind]
            print(f"| {size}x {kind} | {i['events']:,} | {i['rows_per_s']:,.0f} "
                  f"| {b['rows_per_s']:,.0f} | {i['rows_per_s'] / b['rows_per_s']:.3f} "
                  f"| {i['rows_per_cpu_s']:,.0f} | {b['rows_per_cpu_s']:,.0f} "
                  f"| {i['rows_per_cpu_s'] / b['rows_per_cpu_s']:.3f} "
                  f"| {i['peak_rss_mib']:,.0f} | {b['peak_rss_mib']:,.0f} |")
    print(f"\nbenchmark wall time: {time.perf_counter() - started:.0f} s")
    if args.results:
        with open(args.results, "w") as f:
            json.dump({"sizes": results, "base_users": args.base_users,
                       "cpus": os.cpu_count()}, f, indent=2, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
