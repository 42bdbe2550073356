"""``shoprec`` command line: one subcommand per stage, plus ``run``, ``demo`` and ``init``.

Flags this CLI does not know are passed through to Beam, so
``shoprec ingest --runner=DataflowRunner --project=... --region=...`` submits
the same job that runs locally on the FnApiRunner by default; with
``--dry_run=True`` as well it builds that job offline, submits nothing and
says so in one line (one stage at a time: not ``run`` or ``demo``).

``shoprec run --date YYYY-MM-DD`` runs one day's stages in that date's
partition of the run root (``shoprec.app.runs``), skipping what is up to
date. ``shoprec init`` writes a run config from a shop's files
(``shoprec.app.init``). Every command holds the run folder's lock while it runs
(``shoprec.io.lock``), and every stage publishes its folder only once it is
complete (``shoprec.io.publish``).

Errors: a stage raises a ``shoprec.core.errors.UserError`` for anything the
user fixes; it is printed as ``shoprec STAGE: <message>`` and the command
exits with the error's code (``EXIT_CODES``), the traceback shown only with
``--verbose`` or ``SHOPREC_VERBOSE=1``. Any other exception is a bug: its
traceback is printed and the command exits with ``CRASH_EXIT_CODE``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import traceback
from typing import List, Optional, Sequence

from shoprec.app import console, init, runs
from shoprec.app.stages import BY_NAME, STAGES, options_of
from shoprec.core import config as config_lib
from shoprec.core.errors import CRASH_EXIT_CODE, ConfigError, EXIT_CODES, UserError
from shoprec.io import lock

# Generator settings that can be given as flags, e.g. `shoprec generate --num_users 100000`.
GENERATE_FLAGS = (("seed", int), ("num_users", int), ("num_items", int), ("days", int),
                  ("start_date", str), ("pool_users", int), ("pool_items", int),
                  ("sessions_per_user", float), ("impressions_per_session", int))
DEMO_HELP = "generate the default data set and run every stage end to end"
RUN_HELP = ("run one day's stages in order (all but generate) in the date's partition, "
            "skipping those that are up to date: the command a scheduler calls")
VERBOSE_ENV = "SHOPREC_VERBOSE"
EPILOG = ("Unknown flags go to Beam, e.g. --runner=DataflowRunner, --direct_num_workers=2, "
          "--direct_running_mode=multi_processing; --runner=DataflowRunner --dry_run=True "
          "builds a stage's job without running it. Exit status: "
          + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES) + ".")


def _add_flags(p: argparse.ArgumentParser, flags, dated: bool = True) -> None:
    p.add_argument("--config", default=None,
                   help="run config YAML (default: the packaged demo config)")
    p.add_argument("--run_dir", default=None,
                   help="the run folder (wins over the date's partition)")
    if dated:
        p.add_argument("--date", default=None,
                       help="YYYY-MM-DD: run in this date's partition of the run root "
                            "(partition in config, e.g. dt={date}) and put it for {date} "
                            "in input paths" + (" (default: today, UTC)" if "day" in flags
                                                else " (default: an undated run folder)"))
        p.add_argument("--force", action="store_true",
                       help="run even a stage whose published output is up to date")
    p.add_argument("--data", default=None,
                   help="folder holding the data set's files (inputs.data_dir); "
                        "e.g. ../shared/data/hm")
    p.add_argument("--verbose", action="store_true",
                   help="show TensorFlow's, absl's and Beam's logs, and on an error its "
                        f"traceback too (or set {VERBOSE_ENV}=1)")
    if "strategy" in flags:
        p.add_argument("--strategy", default=None,
                       choices=("auto", "default", "mirrored", "multi_worker"),
                       help="tf.distribute strategy (default: training.strategy in config)")
    if "sizes" in flags:
        sizes = p.add_argument_group("generated data (override the config's generate section)")
        for flag, kind in GENERATE_FLAGS:
            sizes.add_argument(f"--{flag}", type=kind, default=None)
    if "pairs" in flags:
        p.add_argument("--pairs", default=None,
                       help="user_id,item_id CSV to score (default: eval-window pairs)")
    if "bq_table" in flags:
        p.add_argument("--bq_table", default=None, metavar="PROJECT:DATASET.TABLE",
                       help="also write the recommendations to this BigQuery table, "
                            "DAY-partitioned on dt (the run date), replacing that date's "
                            "partition; needs --temp_location gs://... and GCP credentials")
    if "force_bless" in flags:
        p.add_argument("--force_bless", action="store_true", default=None,
                       help="publish the trained model even when the model gate refuses it")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shoprec",
        description="Behaviour logs, catalogue and photos in; multi-task recommendations out.",
        epilog=EPILOG)
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for stage in STAGES:
        reads = ", ".join(stage.reads) or "nothing"
        description = f"{stage.help}. Reads {reads}; writes {stage.writes} of the run folder."
        _add_flags(sub.add_parser(stage.name, help=stage.help, description=description),
                   stage.flags)
    _add_flags(sub.add_parser("run", help=RUN_HELP, description=RUN_HELP, epilog=EPILOG),
               ("day", "strategy", "pairs", "force_bless", "bq_table"))
    # The demo generates its own data into a fresh folder and scores the eval
    # pairs: no --pairs, nothing to skip.
    _add_flags(sub.add_parser("demo", help=DEMO_HELP, description=DEMO_HELP),
               ("sizes", "strategy"), dated=False)
    init.add_parser(sub)
    return parser


def _load_config(args):
    """The run config the flags name, generator sizes applied.

    Raises:
        ConfigError: the file is malformed, inconsistent or cannot be read.
    """
    # A --data path is the user's, relative to where they run the command;
    # a YAML inputs.data_dir stays relative to the run folder.
    data = args.data if args.data is None or "://" in args.data else os.path.abspath(args.data)
    date = getattr(args, "date", None)
    if args.stage == "run" and date is None:
        date = config_lib.today()
    try:
        config = config_lib.load(args.config, run_dir=args.run_dir, data_dir=data, date=date)
    except OSError as err:
        raise ConfigError(f"cannot read the config: {err}") from err
    sizes = {flag: getattr(args, flag, None) for flag, _ in GENERATE_FLAGS}
    sizes = {k: v for k, v in sizes.items() if v is not None}
    if sizes:
        config = dataclasses.replace(config, generate=dataclasses.replace(config.generate, **sizes))
    return config


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``shoprec`` console script: the one place errors are printed."""
    args, beam_args = _parser().parse_known_args(argv)
    args.command = " ".join(["shoprec", *(sys.argv[1:] if argv is None else argv)])
    verbose = args.verbose or os.environ.get(VERBOSE_ENV, "") not in ("", "0")
    # Before any stage loads TensorFlow or Beam. The stderr filter only when this
    # process is the `shoprec` command (argv from the command line), not a caller's.
    console.configure(verbose, native_filter=argv is None)
    try:
        if args.stage == "init":
            # No run config yet: init writes one. Beam flags mean nothing to it.
            if beam_args:
                raise ConfigError(f"init: unknown flag(s) {beam_args}")
            return init.run(args)
        return run_stage(args.stage, _load_config(args), beam_args, args)
    except UserError as err:
        if verbose:
            traceback.print_exc()
        report = err.report
        if report is not None and args.stage in ("ingest", "validate") and "splits" in report:
            from pipelines import report as report_lib

            print(report_lib.render(report))
        print(f"shoprec {args.stage}: {err}", file=sys.stderr)
        return err.exit_code
    except Exception:  # noqa: BLE001  (a bug: shown whole, with its own exit code)
        traceback.print_exc()
        print(f"shoprec {args.stage}: crashed (a bug, not a user error; exit "
              f"{CRASH_EXIT_CODE})", file=sys.stderr)
        return CRASH_EXIT_CODE


def run_stage(stage: str, config, beam_args: List[str], args) -> int:
    """Runs one stage (or a day, or the demo) and prints its report.

    Raises:
        UserError: the stage failed for a reason the user fixes.
    """
    options = {k: getattr(args, k, None) for k in ("strategy", "pairs", "force_bless",
                                                   "bq_table")}
    force = bool(getattr(args, "force", False))
    if stage in ("run", "demo") and runs.is_dry_run(beam_args):
        raise ConfigError(f"`shoprec {stage}` runs stages that read each other's outputs, so "
                          "it cannot be a dry run: dry-run one stage at a time, e.g. "
                          "`shoprec ingest --runner=DataflowRunner --dry_run=True ...`")
    if stage == "demo":
        from shoprec.app import demo

        return demo.run(config, beam_args, strategy=options["strategy"],
                        command=getattr(args, "command", "shoprec demo"))
    # A multi-worker training job's other workers run beside its chief, which
    # holds the lock and publishes.
    held = (lock.held(config.layout.lock_file, getattr(args, "command", f"shoprec {stage}"),
                      config.lock_stale_hours)
            if runs.is_chief() else contextlib.nullcontext())
    with held:
        if stage == "run":
            return runs.run_day(config, beam_args, options, force)
        return _one_stage(BY_NAME[stage], config, beam_args, options, force)


def _one_stage(entry, config, beam_args: List[str], options, force: bool) -> int:
    from pipelines import report as report_lib

    stage = entry.name
    outcome = runs.run_stage(entry, config, beam_args, options_of(entry, options), force)
    if runs.say(stage, outcome):
        print(runs.say(stage, outcome))
        return 0
    report = outcome.report
    # stdout keeps the report alone (JSON for most stages): the summary goes to stderr.
    print(console.stage_line(stage, report, outcome.seconds), file=sys.stderr, flush=True)
    if stage in ("ingest", "validate"):
        # The JSON is in the report file; the console gets the readable data report.
        print(report_lib.render(report))
        print(f"\nreport: {report['outputs']['report']}")
        return 0
    print(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
