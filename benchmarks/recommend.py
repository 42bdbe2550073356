"""Recommend and score: the Beam jobs against the same maths called directly, and memory.

On one trained run (a demo run folder with the two towers), in one go:

- ``shoprec recommend``'s Beam job, users/s, next to the same maths in one
  process with no Beam around it (the job's own DoFn code, called on the
  same users): the ratio is what the job costs over its limit. Both rank the
  two towers' candidates alone (the run's other sources are left out: they
  are Beam stages of their own, which the direct path has no way to run);
- ``shoprec score``'s Beam job, rows/s, next to the serving signature called
  directly on batches of 1,024 of the same raw examples (the median of
  repeated passes), and ``serving_columns`` also on batches of the job's own
  size (``scoring.batch_size``) where that differs;
- the recommend job's peak RSS with the users table as it is and with 10x
  the users (copies under new ids), the catalogue unchanged;
- the recommend job again on that 10x run, and the score job on copies with
  10x and 50x the pairs (each pair once per user copy; ``--score_scales``),
  against the same direct rates: at the demo's size a job's fixed start-up
  (pipeline construction, the model load, the first bundles) is most of its
  time. The score job's marginal cost per row, from its two largest sizes,
  against the signature's cost per row is what a large job approaches;
- the *floor*: the least Beam job around the same signature and handler, fed
  the same examples (copied as many times) already built, in lists of
  1,024, with nothing read, joined or written. Its ratio bounds what any
  score job on this runner can reach.

Each measurement runs in a fresh process (``benchmarks/measure.py``)::

    python benchmarks/recommend.py --run_dir runs/demo
    python benchmarks/recommend.py --run_dir runs/demo --jobs score  # score only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import shoprec  # noqa: E402,F401  (selects Keras 2 before TensorFlow loads)

from benchmarks import measure  # noqa: E402


def _rows(pattern, registry):
    from pipelines import examples

    return examples.read_table(pattern, registry)


def _child_recommend_beam(config) -> dict:
    from pipelines import recommend

    report = recommend.run(config, [])
    return {"users": report["users"], "seconds": report["seconds"]}


def _child_recommend_direct(config) -> dict:
    """The job's own retrieval and ranking code, on the same users, with no pipeline."""
    import apache_beam as beam
    import numpy as np
    import tensorflow as tf
    from apache_beam.ml.inference.base import PredictionResult

    from pipelines import candidates, examples, ranking, recommend, sources
    from pipelines.rows import query_row
    from shoprec.core import registry as F
    from shoprec.core.recommend_config import recommend_settings

    rec, registry, layout = recommend_settings(config), config.registry, config.layout
    tables = {name: {} for name in sources.Tables._fields}
    signatures = tf.saved_model.load(layout.model_dir).signatures
    items = {r[registry.item_key]: r for r in _rows(layout.items_table + "*", registry)}
    users = {r[registry.user_key]: r for r in _rows(layout.users_table + "*", registry)}
    history = {}
    if registry.of_source(F.Source.HISTORY):
        history = {r[registry.user_key]: r
                   for r in _rows(layout.history_at_eval_table + "*", registry)}
    contexts = [ranking.UserContext(u, users.get(u), history.get(u), ())
                for u in sorted(set(users) | set(history))]
    start = time.perf_counter()
    ids = sorted(items)
    item_names = registry.candidate_names()
    vectors = np.concatenate([signatures["item_embedding"](examples=tf.constant(
        [examples.encode(items[i], item_names, registry) for i in ids[s:s + 1024]])
    )["embedding"].numpy() for s in range(0, len(ids), 1024)])
    catalogue = candidates.Catalogue(tuple(ids), vectors)
    retrieve = ranking._Retrieve(registry, rec, sources.plan(config))
    top_k = ranking._TopK(rec.k, rec.blend, config.model.retrieval.temperature,
                          recommend.output_names(config), rec.max_per_category,
                          rec.category_feature)
    query_names = registry.query_names()
    rows = 0
    for s in range(0, len(contexts), rec.user_batch):
        batch = contexts[s:s + rec.user_batch]
        queries = [examples.encode(query_row(c.user_id, c.user, c.history, registry),
                                   query_names, registry) for c in batch]
        embedded = signatures["user_embedding"](examples=tf.constant(queries))
        result = PredictionResult(list(zip(batch, queries)),
                                  {"embedding": embedded["embedding"].numpy()})
        for chunk in retrieve.process(result, catalogue, items, config.split_starts[0],
                                      **tables):
            scored = signatures["serving_default"](examples=tf.constant(
                ranking._ranking_examples(chunk)["examples"]))
            rows += sum(1 for row in top_k.process(PredictionResult(
                chunk, {k: v.numpy() for k, v in scored.items()}))
                if not isinstance(row, beam.pvalue.TaggedOutput))
    return {"users": len(contexts), "rows": rows, "seconds": time.perf_counter() - start}


def _child_score_beam(config) -> dict:
    from pipelines import score

    cpu = time.process_time()
    report = score.run(config, [])
    return {"rows": report["counts"].get("score/rows", 0), "seconds": report["seconds"],
            "cpu_seconds": time.process_time() - cpu}


def _raw_rows(config) -> list:
    """The raw rows of the run's eval pairs, built one by one as ingest builds rows."""
    import csv

    from pipelines.rows import raw_row
    from shoprec.core import registry as F

    registry, layout = config.registry, config.layout
    items = {r[registry.item_key]: r for r in _rows(layout.items_table + "*", registry)}
    users = {r[registry.user_key]: r for r in _rows(layout.users_table + "*", registry)}
    history = {r[registry.user_key]: r for r in _rows(layout.history_table + "*", registry)}
    with open(layout.eval_pairs + ".csv") as f:
        pairs = [(r["user_id"], r["item_id"]) for r in csv.DictReader(f)]
    return [raw_row({F.USER_KEY: u, F.ITEM_KEY: i}, users.get(u), items[i], history.get(u),
                    registry) for u, i in pairs if i in items]


def _raw_examples(config) -> list:
    """The raw examples of the run's eval pairs (:func:`_raw_rows`), serialized."""
    from pipelines import examples

    names = config.registry.example_names(include_labels=False)
    return [examples.encode(row, names, config.registry) for row in _raw_rows(config)]


def _timed_passes(call, batches) -> dict:
    """The median wall and CPU seconds of a pass of ``call`` over ``batches``.

    One pass takes a tenth of a second here, as long as a neighbour's burst
    on a shared machine: passes are repeated for 2 s and the median kept.
    """
    import numpy as np

    call(batches[0])  # traced once, outside the timing
    passes, cpu_passes = [], []
    while sum(passes) < 2.0 or len(passes) < 3:
        start, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            call(batch)
        passes.append(time.perf_counter() - start)
        cpu_passes.append(time.process_time() - cpu)
    return {"seconds": float(np.median(passes)), "passes": len(passes),
            "cpu_seconds": float(np.median(cpu_passes))}


def _child_score_direct(config) -> dict:
    """The serving signatures on batches of 1,024 of the raw rows the job builds:
    ``serving_default`` fed them serialized, and (a model that has it)
    ``serving_columns`` fed them as columns, each built outside the timing."""
    import tensorflow as tf

    from pipelines import examples
    from pipelines.pair_columns import PairColumns

    registry = config.registry
    rows = _raw_rows(config)
    names = registry.example_names(include_labels=False)
    signatures = tf.saved_model.load(config.layout.model_dir).signatures
    serialized = [[examples.encode(r, names, registry) for r in rows[s:s + 1024]]
                  for s in range(0, len(rows), 1024)]
    out = dict(_timed_passes(
        lambda batch: signatures["serving_default"](examples=tf.constant(batch)), serialized),
        rows=len(rows))
    if "serving_columns" in signatures:
        gather = PairColumns(registry)

        def columns(size):
            batches = [gather.rows(rows[s:s + size]) for s in range(0, len(rows), size)]
            return _timed_passes(lambda batch: signatures["serving_columns"](
                **{k: tf.constant(v) for k, v in batch.items()}), batches)

        out["columns"] = columns(1024)
        # The job calls the signature on batches of scoring.batch_size rows:
        # the signature's cost a row on those too.
        if config.scoring.batch_size != 1024:
            out["columns_job_batch"] = dict(columns(config.scoring.batch_size),
                                            batch_size=config.scoring.batch_size)
    return out


def _child_score_floor(config, copies: int) -> dict:
    """The least a Beam job around the signature does, on ``copies`` times the raw examples.

    The examples are built before the pipeline, outside the timing. The job
    only hands them to RunInference in lists of 1,024 (no per-row elements:
    a Create of one element, a FlatMap yielding the lists), calls the same
    serving signature through the same handler as ``shoprec score`` and
    counts the rows: no pairs read, no join, no example assembly, no ranking,
    nothing written. What this job costs above the signature is the runner's
    and RunInference's share, which no score job can avoid.
    """
    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference

    from pipelines import options as beam_options
    from pipelines.inference import ChunkHandler
    from pipelines.pair_join import ExampleChunk
    from pipelines.score import _example_bytes, _serialized
    from shoprec.io import models

    raw = _raw_examples(config)
    _, model_dir = models.require_current(config.layout)
    chunks = [raw[s:s + 1024] for s in range(0, len(raw), 1024)]

    class _Chunks(beam.DoFn):
        def process(self, _):
            for _ in range(copies):
                for chunk in chunks:
                    # As BatchElements hands the score job's chunks on: a list of them.
                    yield [ExampleChunk(None, None, chunk)]

    def count(result):
        beam.metrics.Metrics.counter("floor", "rows").inc(len(_serialized(result.example)
                                                              ["examples"]))

    cpu, start = time.process_time(), time.perf_counter()
    pipeline = beam.Pipeline(options=beam_options.pipeline_options([]))
    _ = (pipeline
         | "One" >> beam.Create([None])
         | "Chunks" >> beam.ParDo(_Chunks())
         | "RunInference" >> RunInference(ChunkHandler(model_dir, "serving_default",
                                                       _serialized, _example_bytes))
         | "Count" >> beam.Map(count))
    result = pipeline.run()
    result.wait_until_finish()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    rows = result.metrics().query(beam.metrics.MetricsFilter().with_name("rows"))["counters"]
    return {"rows": rows[0].committed, "seconds": seconds, "cpu_seconds": cpu_seconds}


def _scaled_run(config, scale: int, work_dir: str) -> str:
    """A copy of the run folder whose users table holds ``scale`` times the users."""
    import tensorflow as tf

    from pipelines import examples
    from shoprec.core import registry as F

    registry, layout = config.registry, config.layout
    target = os.path.join(work_dir, f"run_x{scale}")
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(os.path.join(target, "ingest"))
    for name in os.listdir(layout.run_dir):
        if name not in ("ingest", "recommend", "score"):
            os.symlink(os.path.join(layout.run_dir, name), os.path.join(target, name))
    scaled_tables = {os.path.dirname(layout.users_table): (
        layout.users_table, registry.source_names(F.Source.USER))}
    if registry.of_source(F.Source.HISTORY):
        for table in (layout.history_at_eval_table, layout.history_table):
            scaled_tables[os.path.dirname(table)] = (table, registry.history_table_names())
    pairs_dir = os.path.dirname(layout.eval_pairs)
    for name in os.listdir(layout.ingest_dir):
        source = os.path.join(layout.ingest_dir, name)
        if source not in scaled_tables and source != pairs_dir:
            os.symlink(source, os.path.join(target, "ingest", name))
    os.makedirs(os.path.join(target, "ingest", os.path.basename(pairs_dir)))
    with open(layout.eval_pairs + ".csv") as f:
        header, *lines = f.read().splitlines()
    with open(os.path.join(target, "ingest", os.path.basename(pairs_dir),
                           os.path.basename(layout.eval_pairs) + ".csv"), "w") as f:
        f.write(header + "\n")
        for copy in range(scale):
            for line in lines:
                user, item = line.split(",")
                f.write(f"{user}_{copy},{item}\n")
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    for folder, (prefix, names) in scaled_tables.items():
        rows = _rows(prefix + "*", registry)
        out = os.path.join(target, "ingest", os.path.basename(folder))
        os.makedirs(out)
        path = os.path.join(out, os.path.basename(prefix) + ".tfrecord.gz")
        with tf.io.TFRecordWriter(path, options) as writer:
            for copy in range(scale):
                for row in rows:
                    key = registry.user_key
                    writer.write(examples.encode(dict(row, **{key: f"{row[key]}_{copy}"}),
                                                 names, registry))
    return target


def _towers_only(config):
    """The config with the towers' candidates alone: the direct path below has no
    Beam to build the other sources' states, so both paths rank the same lists."""
    import dataclasses

    from shoprec.core import recommend_config

    rec = recommend_config.recommend_settings(config)
    return dataclasses.replace(config, recommend=dataclasses.replace(
        config.recommend, sources=(rec.source(recommend_config.TWO_TOWER),)))


def child_main(args) -> None:
    from shoprec.core import config as config_lib

    config = _towers_only(config_lib.load(args.config, run_dir=args.run_dir))
    if args.child == "score_floor":
        result = _child_score_floor(config, args.copies)
    else:
        result = {"recommend_beam": _child_recommend_beam,
                  "recommend_direct": _child_recommend_direct,
                  "score_beam": _child_score_beam,
                  "score_direct": _child_score_direct}[args.child](config)
    measure.emit(result)


def _score_lines(results, scales) -> list:
    """The score job and the floor job at each size against the signature, and their marginal cost."""
    direct = results["score_direct"]
    signature_us = 1e6 * direct["seconds"] / direct["rows"]
    lines = []
    for job, prefix in (("Beam job", "score_beam"), ("floor job", "score_floor")):
        sizes = [("1x", results[prefix])] + [(f"{k}x", results[f"{prefix}_x{k}"])
                                             for k in scales]
        for label, r in sizes:
            rate = r["rows"] / r["seconds"]
            lines.append(f"score:     {label} pairs: {job} {rate:,.0f} rows/s ({r['rows']} rows "
                         f"in {r['seconds']:.1f} s); signature on batches of 1,024 "
                         f"{1e6 / signature_us:,.0f} rows/s; ratio {rate * signature_us / 1e6:.2f}")
        (_, small), (_, large) = sizes[-2], sizes[-1]
        for clock, key, direct_s in (("wall", "seconds", direct["seconds"]),
                                     ("CPU", "cpu_seconds", direct["cpu_seconds"])):
            # CPU seconds (the process's, TensorFlow's threads included) depend
            # far less than wall seconds on what else runs on a shared machine.
            marginal_us = 1e6 * (large[key] - small[key]) / (large["rows"] - small["rows"])
            fixed_s = small[key] - small["rows"] * marginal_us / 1e6
            sig_us = 1e6 * direct_s / direct["rows"]
            lines.append(f"           {job} marginal {clock} cost (from {sizes[-2][0]} and "
                         f"{sizes[-1][0]}): {marginal_us:.2f} us/row, fixed {fixed_s:.1f} s; "
                         f"signature {sig_us:.2f} us/row; marginal ratio "
                         f"{sig_us / marginal_us:.2f}")
            for name, size in (("columns", 1024), ("columns_job_batch", None)):
                if name in direct:
                    col_us = 1e6 * direct[name][key] / direct["rows"]
                    size = size or direct[name]["batch_size"]
                    lines.append(f"           {job} against serving_columns on prebuilt "
                                 f"columns, batches of {size:,}: {col_us:.2f} us/row "
                                 f"{clock}; marginal ratio {col_us / marginal_us:.2f}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_dir", required=True, help="a trained run folder (demo)")
    parser.add_argument("--config", default=None, help="its config (default: the demo's)")
    parser.add_argument("--scale", type=int, default=10, help="users multiple for recommend")
    parser.add_argument("--score_scales", default="10,50",
                        help="pairs multiples for the score job, comma-separated")
    parser.add_argument("--jobs", default="recommend,score", help="which jobs to measure")
    parser.add_argument("--work_dir", default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--copies", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args)
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from shoprec.core import config as config_lib

    config = config_lib.load(args.config, run_dir=args.run_dir)
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="shoprec-bench-recommend-")
    os.makedirs(work_dir, exist_ok=True)
    base = ["--run_dir", args.run_dir] + (["--config", args.config] if args.config else [])
    jobs = set(args.jobs.split(","))
    score_scales = [int(k) for k in args.score_scales.split(",") if k]

    def child(kind, run_dir=None, copies=1):
        extra = ["--run_dir", run_dir] + base[2:] if run_dir else base
        return measure.run_child(["--child", kind, "--copies", str(copies)] + extra, REPO_ROOT,
                                 os.path.join(work_dir, f"{kind}_x{copies}.log"), script="recommend.py")

    scaled = {}

    def scaled_run(k):
        if k not in scaled:
            scaled[k] = _scaled_run(config, k, work_dir)
        return scaled[k]

    results = {}
    if "recommend" in jobs:
        results.update({kind: child(kind) for kind in ("recommend_beam", "recommend_direct")})
        results[f"recommend_beam_x{args.scale}"] = child("recommend_beam", scaled_run(args.scale))
    if "score" in jobs:
        results.update({kind: child(kind) for kind in ("score_beam", "score_direct")})
        results["score_floor"] = child("score_floor")
        for k in score_scales:
            results[f"score_beam_x{k}"] = child("score_beam", scaled_run(k))
            results[f"score_floor_x{k}"] = child("score_floor", copies=k)

    def rate(r, unit):
        return r[unit] / r["seconds"]

    if "recommend" in jobs:
        beam_users, direct_users = (rate(results[k], "users")
                                    for k in ("recommend_beam", "recommend_direct"))
        one, many = results["recommend_beam"], results[f"recommend_beam_x{args.scale}"]
        many_users = rate(many, "users")
        print(f"recommend: Beam job {beam_users:,.0f} users/s ({one['users']} users in "
              f"{one['seconds']:.1f} s); direct {direct_users:,.0f} users/s; ratio "
              f"{beam_users / direct_users:.2f}")
        print(f"           {args.scale}x users: Beam job {many_users:,.0f} users/s "
              f"({many['users']} users in {many['seconds']:.1f} s); ratio "
              f"{many_users / direct_users:.2f}")
        print(f"recommend peak RSS (process tree): {one['tree_peak_rss_mib']:.0f} MiB with "
              f"{one['users']} users, {many['tree_peak_rss_mib']:.0f} MiB with {many['users']} "
              f"({args.scale}x); ratio {many['tree_peak_rss_mib'] / one['tree_peak_rss_mib']:.2f}")
    if "score" in jobs:
        for line in _score_lines(results, score_scales):
            print(line)
    with open(os.path.join(work_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2, default=float)
    print(f"results: {os.path.join(work_dir, 'results.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
