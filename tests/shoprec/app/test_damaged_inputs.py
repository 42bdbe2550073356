"""Damaged files between stages: one line, an exit code that is not 70, before any job.

The tiny demo run's published folders (``tiny_run``) are copied into a fresh
run folder; then each of a folder's files in turn — its manifest, its data,
its reports — is truncated, deleted, replaced by another of its files,
changed in one byte, re-encoded as UTF-16, made unreadable (a link to
nothing) or joined by a copy of itself (``<file>.copy``, which a reader's
glob would pick up), and the stage that reads the folder runs through
``cli.main``. Every case must print exactly one ``shoprec STAGE:`` line naming
the file (or its folder), no traceback, and exit with neither 0 nor 70.
Every file of each folder gets every damage through the folder's first
reader; each other reader gets one damage, to show its check is wired.
"""

import os
import shutil

import pytest

from shoprec.app import cli, runs
from shoprec.app.stages import BY_NAME
from shoprec.core import config as config_lib
from shoprec.core.errors import CRASH_EXIT_CODE, InputDamagedError, StageOrderError
from shoprec.core.layout import CURRENT_FILE, SUCCESS_FILE
from shoprec.io import models

DAMAGES = ("truncate", "delete", "replace", "change_bytes", "utf16", "unreadable", "added")
# What each reader reads besides the shop's inputs (``models``: models/CURRENT and the
# version it names).
READS = {"ingest": ("embed",), "featurize": ("ingest",), "train": ("featurize",),
         "push": ("ingest", "train", "models"), "score": ("ingest", "models"),
         "recommend": ("ingest", "models"), "report": ("embed", "ingest", "train", "push",
                                                       "recommend")}
# Every file of the folder, every damage, through this reader.
FIRST_READER = {"embed": "ingest", "ingest": "featurize", "featurize": "train",
                "train": "push", "models": "score"}
# The folder's other readers, one damage each (the file, by its place in the folder).
OTHER_READERS = [("ingest", "score", "change_bytes"), ("ingest", "recommend", "truncate"),
                 ("ingest", "push", "delete"), ("models", "recommend", "replace"),
                 ("models", "push", "change_bytes"), ("push", "report", "utf16"),
                 ("recommend", "report", "added")]


def _source(tiny_run, folder):
    layout = tiny_run.layout
    return layout.models_root if folder == "models" else layout.stage_dir(folder)


def _run_folder(tiny_run, tmp_path, reader):
    """A fresh run folder holding copies of the tiny run's folders ``reader`` reads.

    Of the models, ``CURRENT`` and the version it names: no stage reads the others.
    """
    run_dir = tmp_path / "run"
    for folder in READS[reader]:
        shutil.copytree(_source(tiny_run, folder), run_dir / folder)
    if "models" in READS[reader]:
        current = models.current_version(tiny_run.layout)
        for name in os.listdir(run_dir / "models"):
            if name not in (current, CURRENT_FILE):
                shutil.rmtree(run_dir / "models" / name)
    return run_dir


def _files(folder):
    """Every file under ``folder``, relative, sorted (the model versions' too)."""
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, _, names in os.walk(folder) for name in names)


def _damage(path, kind, sibling):
    """Damages the file ``path`` in place; False when ``kind`` cannot change it (empty)."""
    with open(path, "rb") as f:
        data = f.read()
    if kind in ("truncate", "change_bytes") and not data:
        return False
    if kind == "delete":
        os.remove(path)
        return True
    if kind == "unreadable":
        os.remove(path)
        os.symlink(path + ".gone", path)
        return True
    if kind == "added":
        shutil.copyfile(path, path + ".copy")
        return True
    if kind == "truncate":
        data = data[:len(data) // 2]
    elif kind == "change_bytes":
        middle = len(data) // 2
        data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
    elif kind == "utf16":
        data = data.decode("latin-1").encode("utf-16")
    elif kind == "replace":
        data = sibling
    with open(path, "wb") as f:
        f.write(data)
    return True


def _restore(path, source):
    for stale in (path, path + ".copy"):
        if os.path.lexists(stale):
            os.remove(stale)
    shutil.copyfile(source, path)


def _sibling(folder, name):
    """The bytes of another file of ``folder`` that differ from ``name``'s."""
    with open(os.path.join(folder, name), "rb") as f:
        own = f.read()
    for other in _files(folder):
        with open(os.path.join(folder, other), "rb") as f:
            data = f.read()
        if data != own:
            return data
    return own + b"replaced\n"


def _outcome(capsys, tiny_run, run_dir, reader):
    """(exit code, the one ``shoprec READER:`` line or a reason it is not one)."""
    code = cli.main([reader, "--run_dir", str(run_dir), "--data", tiny_run.run_dir])
    captured = capsys.readouterr()
    if "Traceback" in captured.err + captured.out:
        return code, "a traceback"
    lines = captured.err.splitlines()
    if len(lines) == 1 and lines[0].startswith(f"shoprec {reader}: "):
        return code, lines[0]
    return code, f"not one line: {lines}"


def _case(capsys, tiny_run, run_dir, reader, folder, name, kind):
    """Damages ``folder/name`` of the run, runs ``reader``, restores it; a failure or None."""
    path = os.path.join(run_dir, folder, name)
    source = os.path.join(_source(tiny_run, folder), name)
    if kind == "added" and name == CURRENT_FILE:
        return None  # a file beside models/CURRENT is in no version: nothing reads it
    if not _damage(path, kind, _sibling(os.path.join(run_dir, folder), name)):
        return None
    try:
        code, line = _outcome(capsys, tiny_run, run_dir, reader)
    finally:
        _restore(path, source)
    # Named: the file, or for a marker gone its folder ("did not finish").
    named = path if os.path.basename(path) != SUCCESS_FILE else os.path.dirname(path)
    if code in (0, CRASH_EXIT_CODE) or named not in line:
        return f"{folder}/{name} {kind} → {reader}: exit {code}, {line}"
    if code not in (InputDamagedError.exit_code, StageOrderError.exit_code):
        return f"{folder}/{name} {kind} → {reader}: exit {code} ({line})"
    return None


@pytest.mark.parametrize("folder", sorted(FIRST_READER))
def test_every_damaged_file_stops_its_reader_with_one_line(tiny_run, tmp_path, capsys, folder):
    tiny_run, _ = tiny_run
    reader = FIRST_READER[folder]
    run_dir = _run_folder(tiny_run, tmp_path, reader)
    # The copy is intact: the check passes it.
    runs.check_reads(BY_NAME[reader], config_lib.load(run_dir=str(run_dir),
                                                      data_dir=tiny_run.run_dir), {})
    names = _files(os.path.join(run_dir, folder))
    assert SUCCESS_FILE in map(os.path.basename, names) and len(names) > 5
    failures = [failure for name in names for kind in DAMAGES
                if (failure := _case(capsys, tiny_run, run_dir, reader, folder, name, kind))]
    assert not failures, "\n".join(failures)


def test_each_other_reader_checks_what_it_reads(tiny_run, tmp_path, capsys):
    tiny_run, _ = tiny_run
    failures = []
    for i, (folder, reader, kind) in enumerate(OTHER_READERS):
        run_dir = _run_folder(tiny_run, tmp_path / str(i), reader)
        names = [n for n in _files(os.path.join(run_dir, folder)) if n != SUCCESS_FILE]
        failure = _case(capsys, tiny_run, run_dir, reader, folder, names[i % len(names)], kind)
        failures += [failure] if failure else []
    assert not failures, "\n".join(failures)


def _demo_config():
    from importlib import resources

    return resources.files("shoprec").joinpath("configs/demo.yaml").read_bytes()


def _flipped(data):
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


# A config file the parser rejects, and a piece of the message it must give.
CONFIGS = {
    "bad_yaml": (b"model: [16, 8\n", "not valid YAML (line 2, column 1): expected ',' or ']'"),
    "unknown_key": (b"training:\n  epochz: 3\n", "unknown key(s) ['epochz']"),
    "text_for_a_number": (b"ingest:\n  num_shards: four\n",
                          "ingest.num_shards: expected a whole number, got str 'four'"),
    "bool_for_a_number": (b"training:\n  epochs: true\n",
                          "training.epochs: expected a whole number, got bool True"),
    "number_for_text": (b"scoring:\n  rank_by: 3\n", "scoring.rank_by: expected text, got int 3"),
    "date_for_text": (b"generate:\n  start_date: 2026-11-01\n",
                      "generate.start_date: expected text, got date"),
    "number_for_a_list": (b"model:\n  bottom_units: 16\n",
                          "model.bottom_units: expected a list"),
    "text_in_a_list": (b"model:\n  bottom_units: [16, wide]\n",
                       "expected a whole number, got str 'wide'"),
    "utf16": (_demo_config().decode("utf-8").encode("utf-16"), "not UTF-8 text"),
    "changed_byte": (_flipped(_demo_config()), "not UTF-8 text"),
    "cut_in_a_key": (_demo_config()[:_demo_config().index(b"per_replica_batch_size") + 9],
                     "not valid YAML (line"),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_a_config_the_parser_rejects_is_one_line_and_exit_2(tmp_path, capsys, case):
    text, message = CONFIGS[case]
    path = tmp_path / "run.yaml"
    path.write_bytes(text)
    assert cli.main(["featurize", "--config", str(path), "--run_dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    (line,) = captured.err.splitlines()
    assert line.startswith("shoprec featurize: ") and str(path) in line and message in line, line
