"""Per-worker memory of ingest, score and recommend, as Dataflow would see it, at 1x and 10x.

Each measured job runs as ``shoprec <stage>`` in a child process on Beam's
multi-process runner (``--direct_running_mode=multi_processing
--direct_num_workers=2``: two SDK worker processes, each its own memory, as
Dataflow's), each grouped stage's input streamed to its worker in messages of
about 1 MiB as Dataflow streams it (:func:`_stream_grouped_inputs`; Beam's
local runner as released sends a worker its whole share in one message). The
child's process tree is watched (``measure.TreeMonitor``): the coordinator (the
``shoprec`` process, which on this runner also holds every shuffle, as
Dataflow's shuffle service does outside the workers) apart from the largest
worker's peak RSS, the figure that has to stay flat.

Shops: the demo's at ``--base_users`` users (1x) and ``--scale`` times the
users (same events per user, same catalogue: both drawn from one pool of
users, the 1x shop its first ones); the 10x run reuses the 1x run's embeddings and its published
model (trained for ``--epochs``), so only the measured jobs run on it. With
``--bot_events`` the 1x shop's events again with one bot who logs that many
events (impressions, clicks, purchases) in one hour of one day, ingested with
grouped values paged through the state API as Dataflow pages a large group
(the runner's ``use_state_iterables``; about 5x ingest's CPU on this runner),
beside the 1x shop ingested the same way: a hot key is never one worker's
group, so the largest worker stays where it was. With ``--paged`` every measured job
runs with grouped values paged that way (the bot's run compared with the 1x one).

    python benchmarks/worker_memory.py --work_dir /tmp/wm
    python benchmarks/worker_memory.py --work_dir /tmp/wm --paged
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # run as a script: make the benchmarks package importable
    sys.path.insert(0, REPO_ROOT)

from benchmarks import measure, scale_run  # noqa: E402

MEASURED = ("ingest", "score", "recommend")
BEAM = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
LIMIT = 1.2


# A grouped stage's input goes to a worker in messages of about this many bytes.
MESSAGE_BYTES = 1 << 20


def _stream_grouped_inputs() -> None:
    """Beam's local runner, made to stream a grouped stage's input to its workers.

    As released, it hands each worker its share of a stage's input as one
    message: a ``GroupByKey``'s output as one encoded stream per worker
    (``fn_api_runner/execution.py``, ``GroupingBuffer.partition``), and any
    input's streams written whole before one send at close
    (``fn_runner.py``, ``BundleManager._send_input_to_worker``). The worker
    holds that message, and gRPC's copies of it, while it runs the stage:
    half a stage's input, whatever the job. Dataflow streams a bundle's
    input over the data plane in bounded messages. Here the same partition
    (each worker every n-th key, in the same order, each group windowed as
    the runner does) is cut into streams of about ``MESSAGE_BYTES``, each sent
    as its own message (at most five queued in a worker); an input that is
    not grouped goes in the chunks its producer wrote (at most ~10 MB, the
    data plane's flush threshold).
    """
    from apache_beam.coders.coder_impl import create_OutputStream
    from apache_beam.runners.portability.fn_api_runner import execution, fn_runner
    from apache_beam.transforms import trigger
    from apache_beam.transforms.window import GlobalWindow, GlobalWindows
    from apache_beam.utils import windowed_value

    whole = execution.GroupingBuffer.partition

    def partition(self, n: int):
        if self._grouped_output:
            return whole(self, n)
        coder = self._post_grouped_coder.get_impl()
        key_coder = self._key_coder.get_impl()
        if self._windowing.is_default():
            # As the runner's own: each group in the global window, at its end, on time.
            in_window = GlobalWindows.windowed_value(
                None, timestamp=GlobalWindow().max_timestamp(),
                pane_info=windowed_value.PaneInfo(
                    is_first=True, is_last=True, timing=windowed_value.PaneInfoTiming.ON_TIME,
                    index=0, nonspeculative_index=0)).with_value

            def windowed(key, values):
                return [in_window((key, values))]
        else:  # e.g. Reshuffle's trigger
            windowed = trigger.create_trigger_driver(self._windowing, True).process_entire_key
        parts = [[] for _ in range(n)]
        streams = [create_OutputStream() for _ in range(n)]
        for idx, (encoded_key, values) in enumerate(self._table.items()):
            stream = streams[idx % n]
            for value in windowed(key_coder.decode(encoded_key), values):
                coder.encode_to_stream(value, stream, True)
            if stream.size() >= MESSAGE_BYTES:
                parts[idx % n].append(stream.get())
                streams[idx % n] = create_OutputStream()
        for part, stream in zip(parts, streams):
            part.append(stream.get())
        self._grouped_output = parts
        self._table.clear()
        return parts

    execution.GroupingBuffer.partition = partition

    def send_input(self, process_bundle_id, read_transform_id, byte_streams) -> None:
        # As released, every stream is written and sent as one message at close:
        # here each stream is a message (whole elements).
        data_out = self._worker_handler.data_conn.output_stream(process_bundle_id,
                                                                read_transform_id)
        for byte_stream in byte_streams or []:
            data_out.write(byte_stream)
            data_out.flush()
        data_out.close()

    fn_runner.BundleManager._send_input_to_worker = send_input


def _paged_in_pages() -> None:
    """Beam's local runner, made to page a large group through the state API a page at a time.

    With ``use_state_iterables`` the runner writes a group's values to its
    state as one blob and answers a read with all of it: the worker receives
    the whole group in one response (gRPC's buffer, the message, the bytes),
    the group it was meant not to hold. Dataflow answers with pages and a
    continuation token. Here the values are written in blobs of about
    ``MESSAGE_BYTES`` and the state service answers one blob a read, with a
    continuation token (its own ``_use_continuation_tokens``).
    """
    from apache_beam.coders.coder_impl import create_OutputStream
    from apache_beam.portability.api import beam_fn_api_pb2
    from apache_beam.runners.portability.fn_api_runner import execution, worker_handlers

    def iterable_state_write(self, values, element_coder_impl) -> bytes:
        token = execution.unique_name(None, "iter").encode("ascii")
        key = beam_fn_api_pb2.StateKey(runner=beam_fn_api_pb2.StateKey.Runner(key=token))
        servicer = self.worker_handler_manager.state_servicer
        out = create_OutputStream()
        for element in values:
            element_coder_impl.encode_to_stream(element, out, True)
            if out.size() >= MESSAGE_BYTES:
                servicer.append_raw(key, out.get())
                out = create_OutputStream()
        servicer.append_raw(key, out.get())
        return token

    execution.FnApiRunnerExecutionContext._iterable_state_write = iterable_state_write
    init = worker_handlers.StateServicer.__init__

    def state_servicer_init(self):
        init(self)
        self._use_continuation_tokens = True

    worker_handlers.StateServicer.__init__ = state_servicer_init


# A grouped stage's input is cut into bundles of about this many bytes.
BUNDLE_BYTES = 8 << 20


def _bounded_bundles() -> None:
    """Beam's local runner, made to cut a stage's input into bundles of bounded size.

    As released, the multi-process runner makes one bundle a worker of each
    stage: half the stage's input with two workers, whatever the job, and a
    DoFn's working memory over its bundle (an output buffer, a pair table)
    grows with it. Dataflow splits a stage's input into many work items and
    hands a worker one bundle at a time. Here each input is partitioned into
    many parts (the runner's own partition, every n-th key), consecutive parts
    joined into bundles of about ``BUNDLE_BYTES`` of encoded input, and the
    bundles run a wave at a time, one per worker (never two on one worker);
    the waves' metrics are merged as the runner merges its workers'.
    """
    import itertools

    from apache_beam.portability.api import beam_fn_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.metrics import monitoring_infos

    whole = fn_runner.ParallelBundleManager.process_bundle

    class _Wave:
        """A wave's bundles, handed to the runner as an input already partitioned."""

        def __init__(self, parts):
            self._parts = parts

        def partition(self, n):
            return self._parts + [[] for _ in range(n - len(self._parts))]

    def process_bundle(self, inputs, expected_outputs, fired_timers, expected_output_timers,
                       dry_run=False):
        workers = self._num_workers
        if fired_timers or not inputs:
            return whole(self, inputs, expected_outputs, fired_timers, expected_output_timers,
                         dry_run)
        many = workers * 32
        parts = {name: buffer.partition(many) for name, buffer in inputs.items()}
        bundles, size, current = [], 0, {name: [] for name in parts}
        for ix in range(many):
            for name in parts:
                current[name].extend(parts[name][ix])
                size += sum(len(b) for b in parts[name][ix])
            if size >= BUNDLE_BYTES or ix == many - 1:
                bundles.append(current)
                size, current = 0, {name: [] for name in parts}
        merged, splits = None, []
        for start in range(0, len(bundles), workers):
            wave = bundles[start:start + workers]
            result, split = whole(self, {name: _Wave([b[name] for b in wave]) for name in parts},
                                  expected_outputs, {}, expected_output_timers, dry_run)
            splits += split
            merged = result if merged is None else beam_fn_api_pb2.InstructionResponse(
                process_bundle=beam_fn_api_pb2.ProcessBundleResponse(
                    monitoring_infos=monitoring_infos.consolidate(itertools.chain(
                        result.process_bundle.monitoring_infos,
                        merged.process_bundle.monitoring_infos))),
                error=result.error or merged.error)
        return merged, splits

    fn_runner.ParallelBundleManager.process_bundle = process_bundle


def _child(argv: List[str]) -> int:
    """One ``shoprec`` command on the local runner with grouped inputs streamed
    (:func:`_stream_grouped_inputs`); with ``--paged`` first, grouped values also paged
    through the state API, as Dataflow pages a large group; with ``--as_released``
    first, neither."""
    import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from pipelines import options
    from shoprec.app import cli

    if argv[:1] == ["--as_released"]:
        return cli.main(argv[1:])
    _stream_grouped_inputs()
    _bounded_bundles()
    if argv[:1] == ["--paged"]:
        # The default runner, now one that pages grouped values through the state API.
        options.DEFAULT_LOCAL_RUNNER = FnApiRunner(use_state_iterables=True)
        _paged_in_pages()
        argv = argv[1:]
    return cli.main(argv)


def _shoprec(stage: str, run_dir: str, config: str, log: str, extra=(), measured=False,
             rows: Optional[List[Dict]] = None, label: str = "", paged=False,
             as_released=False) -> None:
    """Runs one stage; measured: again even if up to date, under the monitor, on the
    multi-process runner with grouped inputs streamed (``paged``: grouped values also
    paged through the state API; ``as_released``: the runner unchanged)."""
    args = [stage, "--run_dir", run_dir, "--config", config, *extra]
    if not measured:
        with open(log, "a") as f:
            code = subprocess.call([sys.executable, "-m", "shoprec", *args], stdout=f,
                                   stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    else:
        def record(row):
            rows.append(dict(row, run=label))
            print(json.dumps(rows[-1]), flush=True)

        code = scale_run.run_watched([sys.executable, os.path.abspath(__file__), "--child",
                                      *(["--paged"] if paged else ["--as_released"] if as_released else []),
                                      *args, "--force", *BEAM],
                                     log, record,
                                     lambda s: os.path.join(run_dir, s), whole=stage)
    if code:
        raise RuntimeError(f"shoprec {stage} --run_dir {run_dir} exited {code}; see {log}")


def _copy(src_run: str, dst_run: str, folder: str) -> None:
    """A published stage folder (a link into ``.versions``) copied as plain files."""
    shutil.copytree(os.path.join(src_run, folder), os.path.join(dst_run, folder),
                    symlinks=False)


def _add_bot(events_csv: str, items_csv: str, events: int, start_date: str) -> None:
    """Appends one bot's ``events`` events, inside one hour of the log's second day."""
    with open(items_csv) as f:
        items = [row["item_id"] for row in csv.DictReader(f)]
    day = (datetime.date.fromisoformat(start_date) + datetime.timedelta(days=1)).isoformat()
    kinds = ("impression", "impression", "click", "purchase")
    with open(events_csv, "a") as f:
        for k in range(events):
            f.write(f"{day}T10:{(k // 60) % 60:02d}:{k % 60:02d}Z,bot000,"
                    f"{items[k % len(items)]},{kinds[k % len(kinds)]}\n")


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return _child(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work_dir", required=True)
    parser.add_argument("--base_users", type=int, default=1500)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=2, help="training of the 1x model")
    parser.add_argument("--paged", action="store_true",
                        help="measured jobs with grouped values paged through the state "
                             "API, as Dataflow pages a large group (slower here)")
    parser.add_argument("--bot_events", type=int, default=0,
                        help="also ingest the 1x shop plus a bot with this many events")
    args = parser.parse_args(argv)
    work = os.path.abspath(args.work_dir)
    os.makedirs(work, exist_ok=True)
    users = args.base_users * args.scale
    config, config_many = (measure.write_demo_config(
        os.path.join(work, f"config-{n}.yaml"),
        # One pool of users for both: the 1x shop is the first users of the 10x one,
        # with its catalogue.
        {"generate": {"num_users": n, "pool_users": users}, "training": {"epochs": args.epochs}})
        for n in (args.base_users, users))
    log = os.path.join(work, "bench.log")
    rows: List[Dict] = []
    one, many = os.path.join(work, "x1"), os.path.join(work, f"x{args.scale}")
    started = time.perf_counter()

    _shoprec("generate", one, config, log)
    _shoprec("embed", one, config, log)
    paged = args.paged
    _shoprec("ingest", one, config, log, measured=True, rows=rows, label="1x", paged=paged)
    if args.bot_events and not paged:
        _shoprec("ingest", one, config, log, measured=True, rows=rows, label="1x paged",
                 paged=True)
    for stage in ("featurize", "train", "push"):
        _shoprec(stage, one, config, log)
    for stage in ("score", "recommend"):
        _shoprec(stage, one, config, log, measured=True, rows=rows, label="1x", paged=paged)

    _shoprec("generate", many, config_many, log)
    _copy(one, many, "embed")
    _shoprec("ingest", many, config_many, log, measured=True, rows=rows,
             label=f"{args.scale}x", paged=paged)
    _copy(one, many, "models")
    for stage in ("score", "recommend"):
        _shoprec(stage, many, config_many, log, measured=True, rows=rows,
                 label=f"{args.scale}x", paged=paged)

    if args.bot_events:
        bot = os.path.join(work, "bot")
        shutil.copytree(os.path.join(one, "raw"), os.path.join(bot, "raw"))
        _copy(one, bot, "embed")
        from shoprec.core import config as config_lib

        _add_bot(os.path.join(bot, "raw", "events.csv"), os.path.join(bot, "raw", "items.csv"),
                 args.bot_events, config_lib.load(config).generate.start_date)
        _shoprec("ingest", bot, config, log, measured=True, rows=rows,
                 label="1x + bot, paged", paged=True)

    by = {(r["run"], r["stage"]): r for r in rows}
    print(f"\n{args.base_users} and {users} users, {time.perf_counter() - started:.0f}s; "
          f"peak RSS in MiB\n")
    print("| job | run | wall s | CPU s | coordinator | largest worker | worker / 1x |")
    print("|---|---|---|---|---|---|---|")
    failed = []
    for row in rows:
        paged_base = ("1x paged", row["stage"])
        base = by[paged_base if "paged" in row["run"] and paged_base in by
                  else ("1x", row["stage"])]["worker_peak_rss_mib"]
        ratio = row["worker_peak_rss_mib"] / base
        print(f"| {row['stage']} | {row['run']} | {row['wall_s']:.0f} | {row['cpu_s']:.0f} "
              f"| {row['coordinator_peak_rss_mib']:,.0f} | {row['worker_peak_rss_mib']:,.0f} "
              f"| {ratio:.3f} |")
        if ratio > LIMIT:
            failed.append(f"{row['stage']} {row['run']}")
    print(f"\nlargest worker / 1x <= {LIMIT}: "
          + ("yes, every job" if not failed else "NO: " + ", ".join(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
