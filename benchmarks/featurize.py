"""Featurize benchmark: the TFT path against a single-process pyarrow/numpy baseline.

For each size (a multiple of the demo config's users) it generates a shop and
ingests it once (not timed with featurize), then measures, each run in a fresh
process: ``pipelines.featurize.run`` (the TFT path, in any of the variants
below) and ``benchmarks.baseline.featurize``. It reports rows/s, peak RSS and
output bytes/row, the ratio TFT / baseline, and checks that both computed the
same features (``benchmarks.checks``). Medians over repeats.

    python benchmarks/featurize.py --sizes 1,4,10 --base_users 500 --variants default,mp2

A variant is ``+``-joined knobs applied to the TFT path without changing what
it computes: ``default`` (as committed), ``mp2`` / ``mt2`` / ``mem2`` (two
FnApiRunner workers: multi_processing / multi_threading / in_memory), ``before``
(the job of the checkout given by ``--before_repo``),
``batchN`` (record batches of N rows read from the raw shards), ``shardsN`` (N >= 1
output shard sets per split), ``dbsN`` (``tft_beam.Context(desired_batch_size=N)``).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # run as a script: make the benchmarks package importable
    sys.path.insert(0, REPO_ROOT)

import shoprec  # noqa: E402,F401  (selects Keras 2 before TensorFlow loads)

from benchmarks import measure  # noqa: E402

def _raw_prefixes(config) -> Dict[str, str]:
    return {s: config.layout.examples(s) for s in config.splits}


def _bytes(pattern: str) -> int:
    return sum(os.path.getsize(p) for p in glob.glob(pattern))


# ---- children: each runs in its own process -------------------------------------------

def _child_prepare(config, beam_args: Sequence[str]) -> dict:
    from pipelines import generate, ingest
    from shoprec.app import embed

    start = time.perf_counter()
    generate.run(config)
    if config.registry.embedding_feature() is not None:
        embed.run(config, list(beam_args))
    generated = time.perf_counter()
    report = ingest.run(config, list(beam_args))
    counts = report["counts"]
    return {"generate_s": generated - start, "ingest_s": time.perf_counter() - generated,
            "rows": {s: counts[f"examples/{s}"] for s in config.splits},
            "raw_bytes": sum(_bytes(config.layout.examples(s) + "-*") for s in config.splits)}


def _apply_knobs(config, knobs: Sequence[str]):
    """Returns (config, beam_args, Context kwargs); patches featurize for code knobs."""
    from pipelines import featurize

    beam_args: List[str] = []
    context: Dict[str, int] = {}
    for knob in knobs:
        if knob == "default":
            continue
        if knob in ("mp2", "mt2", "mem2"):
            mode = {"mp2": "multi_processing", "mt2": "multi_threading", "mem2": "in_memory"}[knob]
            beam_args += ["--direct_num_workers=2", f"--direct_running_mode={mode}"]
        elif knob.startswith("batch"):
            featurize.BATCH_ROWS = int(knob[len("batch"):])
        elif knob.startswith("shards"):
            ingest = dataclasses.replace(config.ingest, num_shards=int(knob[len("shards"):]))
            config = dataclasses.replace(config, ingest=ingest)
        elif knob.startswith("dbs"):
            context["desired_batch_size"] = int(knob[len("dbs"):])
        else:
            raise ValueError(f"unknown knob {knob!r}")
    return config, beam_args, context


def _child_tft(config, variant: str) -> dict:
    import tensorflow_transform.beam as tft_beam
    from pipelines import featurize

    config, beam_args, context = _apply_knobs(config, variant.split("+"))
    start, cpu = time.perf_counter(), measure.cpu_seconds()
    with tft_beam.Context(**context):
        report = featurize.run(config, beam_args)
    seconds = time.perf_counter() - start
    cpu = measure.cpu_seconds() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "rows": report["rows"],
            "out_bytes": sum(_bytes(p) for p in report["examples"].values()),
            "out_files": sum(len(glob.glob(p)) for p in report["examples"].values())}


def _child_baseline(config, batch_size: int) -> dict:
    from benchmarks import baseline, checks

    out_dir = os.path.join(config.run_dir, "baseline")
    shutil.rmtree(out_dir, ignore_errors=True)
    cpu = measure.cpu_seconds()
    report = baseline.featurize(_raw_prefixes(config), out_dir, config.registry,
                                num_shards=config.ingest.num_shards, batch_size=batch_size)
    cpu = measure.cpu_seconds() - cpu
    checks.save_statistics(report.pop("statistics"), out_dir)
    return {"seconds": report["seconds"], "cpu_seconds": cpu, "rows": report["rows"],
            "out_bytes": sum(report["bytes"].values()), "phases": report["phases"],
            "out_files": len(glob.glob(os.path.join(out_dir, "*" + baseline.SUFFIX)))}


CHILDREN = {
    "prepare": lambda config, args: _child_prepare(config, args.ingest_beam_args.split()),
    "tft": lambda config, args: _child_tft(config, args.variant),
    "baseline": lambda config, args: _child_baseline(config, args.baseline_batch),
}


# ---- driver ---------------------------------------------------------------------------

def _child_args(args, kind: str, run_dir: str, users: int, variant: str = "default") -> list:
    return ["--child", kind, "--run_dir", run_dir, "--users", str(users), "--variant", variant,
            "--ingest_beam_args", args.ingest_beam_args,
            "--baseline_batch", str(args.baseline_batch)]


def _prepare(args, run_dir: str, users: int) -> dict:
    """Generates and ingests one size, reusing an earlier run's output in --work_dir."""
    marker = os.path.join(run_dir, "prepared.json")
    if os.path.exists(marker):
        with open(marker) as f:
            prepared = json.load(f)
        if prepared.get("users") == users:
            return prepared
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    prepared = measure.run_child(_child_args(args, "prepare", run_dir, users), REPO_ROOT,
                                 os.path.join(run_dir, "prepare.log"))
    prepared["users"] = users
    with open(marker, "w") as f:
        json.dump(prepared, f)
    return prepared


def _check(config, variant: str, full_check_rows: int) -> dict:
    """Compares the TFT output now in the run folder with the baseline's.

    A mismatch is reported, not raised: the point of checking every variant is
    to see which ones change what the job computes.
    """
    try:
        return _compare(config, variant, full_check_rows)
    except AssertionError as err:
        print(f"  check {variant}: OUTPUT DIFFERS from the baseline: {err}")
        return {"mismatch": str(err)}


def _compare(config, variant: str, full_check_rows: int) -> dict:
    from benchmarks import checks

    layout = config.layout
    baseline_dir = os.path.join(config.run_dir, "baseline")
    out = {"vocabularies": checks.check_vocabularies(config.registry, layout.transform_dir,
                                                     baseline_dir),
           "sample_max_abs_diff": checks.check_sample(config.registry, layout.transform_dir,
                                                      baseline_dir, _raw_prefixes(config))}
    rows = sum(json.load(open(layout.featurize_report))["rows"].values())
    if rows <= full_check_rows:
        out["outputs_rows"] = checks.check_outputs(
            layout.transform_dir,
            {s: layout.transformed(s) + "-*" for s in config.splits},
            {s: os.path.join(baseline_dir, s) + "-*" for s in config.splits}, full_check_rows)
    print(f"  check {variant}: vocabularies, sampled values"
          + (", full outputs" if "outputs_rows" in out else "") + " match the baseline")
    return out


def _summary(runs: List[dict]) -> dict:
    rows = sum(runs[0]["rows"].values())
    return {"rows": rows, "repeats": len(runs),
            "rows_per_s": statistics.median(rows / r["seconds"] for r in runs),
            "rows_per_cpu_s": statistics.median(rows / r["cpu_seconds"] for r in runs),
            "seconds": statistics.median(r["seconds"] for r in runs),
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
            # The sampled tree sum can miss a short peak that VmHWM, exact but for
            # the main process only, records: take whichever is larger.
            "peak_rss_mib": statistics.median(max(r["tree_peak_rss_mib"], r["vmhwm_mib"])
                                              for r in runs),
            "main_vmhwm_mib": statistics.median(r["vmhwm_mib"] for r in runs),
            "bytes_per_row": runs[0]["out_bytes"] / rows,
            "out_files": runs[0].get("out_files"), "phases": runs[0].get("phases"),
            "loadavg": statistics.median(r.get("loadavg_after", 0.0) for r in runs)}


def _print_size(size: int, users: int, prepared: dict, results: Dict[str, dict]) -> None:
    rows = sum(prepared["rows"].values())
    print(f"\n{size}x: {users} users, {rows:,} rows (train {prepared['rows']['train']:,}, "
          f"eval {prepared['rows']['eval']:,}); raw {prepared['raw_bytes'] / rows:.0f} B/row; "
          f"generate {prepared['generate_s']:.0f} s, ingest {prepared['ingest_s']:.0f} s")
    base = results["baseline"]
    print(f"  {'path':<36} {'rows/s':>8} {'vs base':>7} {'rows/CPU-s':>10} {'vs base':>7} "
          f"{'peak RSS MiB':>12} {'main HWM MiB':>12} {'B/row':>6} {'files':>5} {'n':>2} "
          f"{'load':>4}  output")
    for name, s in results.items():
        matches = {True: "same", False: "DIFFERS", None: ""}[s.get("output_matches")]
        print(f"  {name:<36} {s['rows_per_s']:>8,.0f} {s['rows_per_s'] / base['rows_per_s']:>7.2f} "
              f"{s['rows_per_cpu_s']:>10,.0f} {s['rows_per_cpu_s'] / base['rows_per_cpu_s']:>7.2f} "
              f"{s['peak_rss_mib']:>12,.0f} {s['main_vmhwm_mib']:>12,.0f} "
              f"{s['bytes_per_row']:>6.0f} {s['out_files'] or '':>5} {s['repeats']:>2} "
              f"{s['loadavg']:>4.1f}  {matches}")


def _print_table(by_size: Dict[int, dict], variants: Sequence[str]) -> None:
    for variant in variants:
        name = f"tft {variant}"
        print(f"\nTFT path = {variant}")
        print("| size | rows | TFT rows/s | baseline rows/s | TFT / baseline | TFT rows/CPU-s "
              "| baseline rows/CPU-s | TFT / baseline (CPU) | peak RSS TFT (MiB) "
              "| peak RSS baseline (MiB) | B/row TFT | B/row baseline |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for size, results in by_size.items():
            t, b = results[name], results["baseline"]
            print(f"| {size}x | {t['rows']:,} | {t['rows_per_s']:,.0f} | {b['rows_per_s']:,.0f} | "
                  f"{t['rows_per_s'] / b['rows_per_s']:.2f} | {t['rows_per_cpu_s']:,.0f} | "
                  f"{b['rows_per_cpu_s']:,.0f} | {t['rows_per_cpu_s'] / b['rows_per_cpu_s']:.2f} | "
                  f"{t['peak_rss_mib']:,.0f} | "
                  f"{b['peak_rss_mib']:,.0f} | {t['bytes_per_row']:.0f} | "
                  f"{b['bytes_per_row']:.0f} |")
        sizes = list(by_size)
        if len(sizes) > 1:
            small, large = by_size[sizes[0]], by_size[sizes[-1]]
            growth = {k: large[k]["peak_rss_mib"] / small[k]["peak_rss_mib"]
                      for k in (name, "baseline")}
            print(f"peak RSS {sizes[-1]}x / {sizes[0]}x: {growth[name]:.2f} (TFT), "
                  f"{growth['baseline']:.2f} (baseline)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    measure.add_size_args(parser, "1,4,10", CHILDREN)
    parser.add_argument("--variants", default="default", help="comma-separated TFT variants")
    parser.add_argument("--repeats", type=int, default=3, help="repeats at the smallest size")
    parser.add_argument("--repeats_large", type=int, default=1, help="repeats at larger sizes")
    parser.add_argument("--work_dir", default=None,
                        help="keep run folders here and reuse their ingest (default: a temp dir)")
    parser.add_argument("--results", default=None, help="also write the results as JSON here")
    parser.add_argument("--full_check_rows", type=int, default=100_000,
                        help="compare whole outputs up to this many rows (sampled checks always)")
    parser.add_argument("--ingest_beam_args", default="",
                        help="Beam flags for the (untimed) ingest, space-separated")
    parser.add_argument("--baseline_batch", type=int, default=8192)
    parser.add_argument("--before_repo", default=None,
                        help="another checkout (e.g. `git worktree add DIR COMMIT`): the "
                             "variant `before` runs its featurize job, for before/after "
                             "figures from one run")
    parser.add_argument("--variant", default="default", help=argparse.SUPPRESS)
    args = measure.parse_args(parser, argv, CHILDREN)
    if args is None:  # a child measurement ran
        return 0
    base_users = args.base_users
    sizes = [int(s) for s in args.sizes.split(",")]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if "before" in variants and not args.before_repo:
        parser.error("the variant `before` needs --before_repo")
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="shoprec-bench-")
    started = time.perf_counter()
    print(f"featurize benchmark: sizes {sizes} x {base_users} users, variants {variants}, "
          f"{os.cpu_count()} CPUs, work dir {work_dir}")
    by_size: Dict[int, dict] = {}
    checked: Dict[str, dict] = {}
    try:
        for size in sizes:
            users, run_dir = size * base_users, os.path.join(work_dir, f"x{size}")
            prepared = _prepare(args, run_dir, users)
            config = measure.build_config(run_dir, users)
            runs: Dict[str, List[dict]] = {"baseline": []}
            runs.update({f"tft {v}": [] for v in variants})
            for repeat in range(args.repeats if size == sizes[0] else args.repeats_large):
                runs["baseline"].append(measure.run_child(
                    _child_args(args, "baseline", run_dir, users), REPO_ROOT,
                    os.path.join(run_dir, f"baseline-{repeat}.log")))
                for variant in variants:
                    # "before": the committed job of another checkout, in the same run.
                    repo, knobs = ((args.before_repo, "default") if variant == "before"
                                   else (REPO_ROOT, variant))
                    runs[f"tft {variant}"].append(measure.run_child(
                        _child_args(args, "tft", run_dir, users, knobs), repo,
                        os.path.join(run_dir, f"tft-{variant}-{repeat}.log")))
                    if repeat == 0:
                        checked[f"{size}x {variant}"] = _check(config, variant,
                                                               args.full_check_rows)
            by_size[size] = {name: _summary(r) for name, r in runs.items()}
            for variant in variants:
                by_size[size][f"tft {variant}"]["output_matches"] = \
                    "mismatch" not in checked[f"{size}x {variant}"]
            _print_size(size, users, prepared, by_size[size])
            by_size[size]["prepared"] = prepared
    finally:
        if not args.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    tables = {s: {k: v for k, v in r.items() if k != "prepared"} for s, r in by_size.items()}
    _print_table(tables, variants)
    print(f"\nbenchmark wall time: {time.perf_counter() - started:.0f} s")
    if args.results:
        with open(args.results, "w") as f:
            json.dump({"sizes": by_size, "checks": checked, "base_users": base_users,
                       "cpus": os.cpu_count()}, f, indent=2, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
