"""Published model versions and the CURRENT pointer (shoprec.io.models) on real files.

The tests taking ``root`` run on a local disk and on ``gs://`` (the Cloud Storage emulator).
"""

import datetime as dt
import json
import os
import signal
import subprocess
import sys

import pytest

from shoprec.core.errors import StageOrderError
from shoprec.core.layout import Layout
from shoprec.io import files, models

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def _model(tmp_path, name, text):
    folder = tmp_path / name
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_text(text)
    (folder / "variables" / "v.index").write_text(text + "-index")
    return str(folder)


def test_versions_sort_by_publishing_time():
    first = models.new_version(dt.datetime(2026, 12, 1, 23, 59, 59, 999999, dt.timezone.utc))
    second = models.new_version(dt.datetime(2026, 12, 2, 0, 0, 0, 0, dt.timezone.utc))
    assert first == "20261201T235959999999Z"
    assert second == "20261202T000000000000Z"
    assert sorted([second, first]) == [first, second]


def test_no_published_model_is_a_stage_order_error(tmp_path):
    layout = Layout(str(tmp_path / "run"))
    assert models.current_version(layout) is None
    with pytest.raises(StageOrderError, match=r"no published model .*`shoprec push`"):
        models.require_current(layout)


def test_publish_copies_the_version_and_moves_the_pointer_last(tmp_path):
    layout = Layout(str(tmp_path / "day1"), models_dir=str(tmp_path / "models"))
    one = models.publish(layout, "v1", {"model": _model(tmp_path, "m1", "one")},
                         {"verdict.json": {"blessed": True}})
    assert one == str(tmp_path / "models" / "v1")
    assert models.require_current(layout) == ("v1", layout.published_model("v1"))
    with open(os.path.join(layout.published_model("v1"), "variables", "v.index")) as f:
        assert f.read() == "one-index"
    with open(os.path.join(one, "verdict.json")) as f:
        assert json.load(f) == {"blessed": True}

    # Another day's run folder, the same models folder: it sees v1, then v2.
    other = Layout(str(tmp_path / "day2"), models_dir=str(tmp_path / "models"))
    assert models.current_version(other) == "v1"
    models.publish(other, "v2", {"model": _model(tmp_path, "m2", "two")}, {})
    assert models.current_version(layout) == "v2"
    # v1 is kept; no staging folder or temporary pointer is left behind.
    assert sorted(os.listdir(tmp_path / "models")) == ["CURRENT", "v1", "v2"]
    with open(layout.current_pointer) as f:
        assert f.read() == "v2\n"
    with pytest.raises(FileExistsError):
        models.publish(other, "v2", {"model": _model(tmp_path, "m3", "three")}, {})
    assert models.current_version(layout) == "v2"


def test_a_publish_that_died_before_the_pointer_moved_leaves_the_old_version_current(tmp_path):
    layout = Layout(str(tmp_path / "run"))
    models.publish(layout, "v1", {"model": _model(tmp_path, "m1", "one")}, {})
    # What a job killed mid-copy leaves: a half-filled staging folder.
    os.makedirs(os.path.join(layout.version_staging_dir("v2"), "model"))
    assert models.require_current(layout) == ("v1", layout.published_model("v1"))
    # The next publish of that version starts its staging folder afresh.
    models.publish(layout, "v2", {"model": _model(tmp_path, "m2", "two")}, {})
    assert models.current_version(layout) == "v2"
    assert not os.path.exists(layout.version_staging_dir("v2"))


def test_a_pointer_naming_a_missing_version_says_so(tmp_path):
    layout = Layout(str(tmp_path / "run"))
    os.makedirs(layout.models_root)
    with open(layout.current_pointer, "w") as f:
        f.write("v9\n")
    with pytest.raises(StageOrderError, match="names version v9, but .* is missing"):
        models.require_current(layout)


# Publishes versions v0..v{N-1} one after another, each a model of three files
# that all hold the version's name; killed at before_flip of the version named
# by a third argument, if any.
PUBLISHER = """
import os, sys, tempfile
from shoprec.core.layout import Layout
from shoprec.io import models, publish
root, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    version = f"v{i}"
    if len(sys.argv) > 3 and sys.argv[3] == version:
        os.environ[publish.FAULT_ENV] = "before_flip"
    with tempfile.TemporaryDirectory() as model:
        os.makedirs(os.path.join(model, "variables"))
        for name in ("saved_model.pb", "variables/v.index", "variables/v.data"):
            with open(os.path.join(model, name), "w") as f:
                f.write(version)
        models.publish(Layout(os.path.join(root, "run")), version, {"model": model}, {})
"""


def _publisher(root, *args):
    return subprocess.Popen([sys.executable, "-c", PUBLISHER, root, *map(str, args)],
                            env=dict(os.environ, PYTHONPATH=REPO))


def _current_model(layout):
    """(version, {file: text}) of the model CURRENT names, as a reader finds it."""
    version, model_dir = models.require_current(layout)
    texts = {n: files.read(os.path.join(model_dir, n)).decode()
             for n in files.relative_files(model_dir)}
    return version, texts


def test_current_flips_atomically_for_a_reader_reading_all_along(root):
    layout = Layout(os.path.join(root, "run"))
    count = 12
    publisher = _publisher(root, count)
    seen = []
    try:
        while True:
            done = publisher.poll() is not None
            if models.current_version(layout) is not None:
                version, texts = _current_model(layout)
                # Whole: every file of the version it names, each that version's.
                assert texts == {n: version for n in ("saved_model.pb", "variables/v.data",
                                                      "variables/v.index")}, texts
                seen.append(int(version[1:]))
            if done:
                break
    finally:
        publisher.wait(timeout=60)
    assert publisher.returncode == 0
    # Never backwards, ending at the last; it read while the pointer moved (12 of 12
    # versions seen here, on both).
    assert seen == sorted(seen) and seen[-1] == count - 1 and len(set(seen)) > 1, seen


def test_a_publish_killed_before_the_pointer_moved_leaves_the_old_version_current(root):
    layout = Layout(os.path.join(root, "run"))
    killed = _publisher(root, 3, "v2")
    assert killed.wait(timeout=60) == -signal.SIGKILL
    # v2 was copied into place whole, but CURRENT was not moved: readers use v1.
    assert files.relative_files(layout.version_dir("v2")) == [
        "_SUCCESS", "model/saved_model.pb", "model/variables/v.data", "model/variables/v.index"]
    assert _current_model(layout)[0] == "v1"
