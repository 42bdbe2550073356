"""``shoprec`` command line: one subcommand per stage, plus ``demo``.

Flags this CLI does not know are passed through to Beam, so
``shoprec ingest --runner=DataflowRunner --project=... --region=...`` submits
the same job that runs locally on the FnApiRunner by default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import List, Optional, Sequence

from shoprec.app.stages import BY_NAME, STAGES, options_of
from shoprec.core import config as config_lib
from shoprec.core.sections import ConfigError

# Generator settings that can be given as flags, e.g. `shoprec generate --num_users 100000`.
GENERATE_FLAGS = (("seed", int), ("num_users", int), ("num_items", int), ("days", int),
                  ("sessions_per_user", float), ("impressions_per_session", int))
DEMO_HELP = "generate the default data set and run every stage end to end"


def _add_flags(p: argparse.ArgumentParser, flags) -> None:
    p.add_argument("--config", default=None,
                   help="run config YAML (default: the packaged demo config)")
    p.add_argument("--run_dir", default=None,
                   help="override the config's run folder (e.g. a dated partition)")
    p.add_argument("--data", default=None,
                   help="folder holding the data set's files (inputs.data_dir); "
                        "e.g. ../shared/data/hm")
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shoprec",
        description="Behaviour logs, catalogue and photos in; multi-task recommendations out.",
        epilog="Unknown flags go to Beam, e.g. --runner=DataflowRunner, --direct_num_workers=2, "
               "--direct_running_mode=multi_processing.")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for stage in STAGES:
        reads = ", ".join(stage.reads) or "nothing"
        description = f"{stage.help}. Reads {reads}; writes {stage.writes} of the run folder."
        _add_flags(sub.add_parser(stage.name, help=stage.help, description=description),
                   stage.flags)
    # The demo generates its own data and scores the eval pairs: no --pairs.
    _add_flags(sub.add_parser("demo", help=DEMO_HELP, description=DEMO_HELP),
               ("sizes", "strategy"))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``shoprec`` console script."""
    args, beam_args = _parser().parse_known_args(argv)
    try:
        # A --data path is the user's, relative to where they run the command;
        # a YAML inputs.data_dir stays relative to the run folder.
        data = args.data if args.data is None or "://" in args.data else os.path.abspath(args.data)
        config = config_lib.load(args.config, run_dir=args.run_dir, data_dir=data)
    except (ConfigError, OSError) as err:
        print(f"shoprec: {err}", file=sys.stderr)
        return 2
    sizes = {flag: getattr(args, flag, None) for flag, _ in GENERATE_FLAGS}
    sizes = {k: v for k, v in sizes.items() if v is not None}
    if sizes:
        config = dataclasses.replace(config, generate=dataclasses.replace(config.generate, **sizes))
    return run_stage(args.stage, config, beam_args, args)


def run_stage(stage: str, config, beam_args: List[str], args) -> int:
    """Runs one stage (or the demo) and prints its report."""
    options = {k: getattr(args, k, None) for k in ("strategy", "pairs")}
    if stage == "demo":
        from shoprec.app import demo

        return demo.run(config, beam_args, strategy=options["strategy"])
    from pipelines import report as report_lib

    entry = BY_NAME[stage]
    try:
        report = entry.run(config, beam_args, options_of(entry, options))
    except report_lib.DataQualityError as err:
        if err.report is not None and stage in ("ingest", "validate"):
            print(report_lib.render(err.report))
        print(f"shoprec {stage}: {err}", file=sys.stderr)
        return 1
    if stage in ("ingest", "validate"):
        # The JSON is in the report file; the console gets the readable data report.
        print(report_lib.render(report))
        print(f"\nreport: {report['outputs']['report']}")
        return 0
    print(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
