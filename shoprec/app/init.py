"""``shoprec init``: a shop's files in, a commented run config out.

Reads a bounded sample of the event log and of the items and users tables
(``shoprec.io.sample``), lists the photos, proposes a whole config
(``shoprec.core.init_config``), checks that shoprec loads it, writes it and
prints what to check. ``shoprec run --config FILE --date D`` then runs it
with no other flag: the config names the files it was made from.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
from typing import Optional

from shoprec.core import commented_yaml, config as config_lib, init_config
from shoprec.core.errors import ConfigError
from shoprec.core.infer import Hints, parse_event_map
from shoprec.io import sample

HELP = "read a shop's files and write a run config for them (then: shoprec run --config FILE)"
# Rows read of each table; a bigger table is judged by its first rows.
SAMPLE_ROWS = 200_000
# Photo files listed under --images.
MAX_IMAGES = 200_000
# Folder names too generic to name a data set by.
GENERIC = frozenset({"raw", "data", "input", "inputs", "export", "exports", "files", "tmp", ""})


def add_parser(sub) -> None:
    """The ``init`` subcommand and its flags."""
    p = sub.add_parser("init", help=HELP, description=HELP + ". Flags settle what the data "
                       "cannot decide.")
    p.add_argument("--events", required=True, help="the event log: a file or glob (.csv, "
                   ".parquet, .jsonl)")
    p.add_argument("--items", help="the item table (catalogue), if any")
    p.add_argument("--users", help="the user table, if any")
    p.add_argument("--images", help="folder of item photos, if any")
    p.add_argument("--out", help="config file to write (default: <name>.yaml here)")
    p.add_argument("--name", help="the data set's name (default: the events' folder)")
    p.add_argument("--run_dir", help="the run root the config names (default: runs/<name>)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    settle = p.add_argument_group("what the data cannot always decide")
    settle.add_argument("--user_col", help="the events' user id column")
    settle.add_argument("--item_col", help="the events' item id column")
    settle.add_argument("--timestamp_col", help="the events' time column")
    settle.add_argument("--timestamp_format",
                        help="its format: a strptime pattern, unix_s, unix_ms or iso")
    settle.add_argument("--event_col", help="the events' event-type column")
    settle.add_argument("--event_map", help="event values by funnel step, e.g. "
                        "view=pv,cart=cart,purchase=buy,other=fav (steps: impression, view or "
                        "click, cart, purchase, other)")
    settle.add_argument("--event_value", help="a log without an event-type column: what every "
                        "row is (default purchase)")
    run = p.add_argument_group("the run")
    run.add_argument("--sample_rows", type=int, default=SAMPLE_ROWS,
                     help=f"rows read of each table (default {SAMPLE_ROWS:,})")
    run.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    run.add_argument("--encoder_steps", type=int, default=None,
                     help="train the photo encoder for one epoch of at least this many steps")
    run.add_argument("--min_auc", type=float, default=0.5,
                     help="the model gate's lowest eval AUC (default 0.5)")
    p.add_argument("--verbose", action="store_true", help="on an error, its traceback too")


def _name(args) -> str:
    if args.name:
        return args.name
    path = os.path.dirname(os.path.abspath(args.events))
    while os.path.basename(path).lower() in GENERIC and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    folder = os.path.basename(path) or os.path.basename(args.events).split(".")[0]
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in folder) or "shop"


def _table(path: Optional[str], data_dir: str, limit: int) -> Optional[init_config.Table]:
    if not path:
        return None
    read = sample.read_sample(path, limit)
    return init_config.Table(_relative(path, data_dir), read.columns, read.rows, read.complete)


def _relative(path: str, base: str) -> str:
    if "://" in path:
        return path
    return os.path.relpath(os.path.abspath(path), base)


def _formats(args) -> str:
    given = {flag: sample.format_of(getattr(args, flag))
             for flag in ("events", "items", "users") if getattr(args, flag)}
    if len(set(given.values())) > 1:
        raise ConfigError("the inputs are in different formats (" + ", ".join(
            f"--{k} {v}" for k, v in given.items()) + "): a run reads one format; convert them")
    return given["events"]


def _line(label: str, text: str) -> str:
    return f"  {label:<12}{text}"


def run(args: argparse.Namespace) -> int:
    """Writes the config; prints what it read, what it guessed and what to check.

    Raises:
        UserError: an input is missing, or the data cannot decide something
            (``shoprec.core.infer.Undecided``: the message names the flag).
    """
    fmt = _formats(args)
    files = [args.events, args.items, args.users]
    data_dir = sample.common_folder([f for f in files if f and "://" not in f])
    hints = Hints(user_col=args.user_col, item_col=args.item_col,
                  timestamp_col=args.timestamp_col, timestamp_format=args.timestamp_format,
                  event_col=args.event_col, event_map=parse_event_map(args.event_map or ""),
                  event_value=args.event_value)
    tables = {k: _table(getattr(args, k), data_dir, args.sample_rows)
              for k in ("events", "items", "users")}
    images = None
    if args.images:
        found, _ = sample.list_images(args.images, MAX_IMAGES)
        images = (_relative(args.images, data_dir), found)
    name = _name(args)
    settings = init_config.Settings(
        name=name, run_dir=args.run_dir or os.path.join("runs", name), data_dir=data_dir,
        format=fmt, images=images, epochs=args.epochs, encoder_steps=args.encoder_steps,
        min_auc=args.min_auc)
    proposal = init_config.propose(tables["events"], tables["items"], tables["users"], hints,
                                   settings)
    out = args.out or f"{name}.yaml"
    if os.path.exists(out) and not args.force:
        raise ConfigError(f"{out} exists: pass --force to replace it, or --out another file")
    read = ", ".join(f"{t.path} ({len(t.rows):,} rows{'' if t.complete else ', a sample'})"
                     for t in tables.values() if t)
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    header = [f"Written by `shoprec init` on {when} from {read}"
              + (f", photos under {images[0]} ({len(images[1]):,} files)" if images else ""),
              "Each guess has its evidence beside it; check those `shoprec init` listed.",
              f"Run it:  shoprec run --config {os.path.basename(out)} --date YYYY-MM-DD"]
    text = commented_yaml.render(proposal.config, proposal.notes, header)
    _write_checked(out, text)
    print(f"shoprec init: wrote {out} from {read}")
    data = proposal.config["dataset"]
    for label, key in (("timestamp", "timestamp"), ("user id", "user_id"),
                       ("item id", "item_id")):
        column = data["events"][key]
        print(_line(label, f"{column}: {proposal.notes[f'dataset.events.{key}']}"))
    funnel = ("event_types" if data["events"].get("event_type") else "event_value")
    print(_line("events", proposal.notes[f"dataset.events.{funnel}"]))
    print(_line("labels", f"{data['labels']}: {proposal.notes['dataset.labels']}"))
    print(_line("split", proposal.notes["ingest.eval_start"]))
    print(_line("features", f"{len(data['features'])} (see the file)"))
    rest = [c for c in proposal.checks if not c.startswith(("dataset.events.timestamp",
                                                            "dataset.events.user_id",
                                                            "dataset.events.item_id",
                                                            f"dataset.events.{funnel}",
                                                            "ingest.eval_start"))]
    if rest:
        print("check:")
        for line in rest:
            print(f"  - {line}")
    print(f"next: shoprec run --config {out} --date {when}")
    return 0


def _write_checked(out: str, text: str) -> None:
    """Writes ``text`` to ``out`` once shoprec loads it (a config it rejects is a bug here)."""
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    handle, staged = tempfile.mkstemp(prefix=".init-", suffix=".yaml", dir=folder)
    try:
        with os.fdopen(handle, "w") as f:
            f.write(text)
        try:
            config_lib.load(staged)
        except ConfigError as err:
            raise RuntimeError(f"shoprec init wrote a config shoprec rejects: {err}") from err
        os.replace(staged, out)
    finally:
        if os.path.exists(staged):
            os.remove(staged)
