"""Publishing a staged stage folder: a link flip on disk, a copy with the marker last on gs://.

The ``gs://`` tests run on the Cloud Storage emulator (``tests/gcs_emulator.py``).
"""

import os
import subprocess
import sys

import pytest

from shoprec.core.errors import StageOrderError
from shoprec.core.layout import Layout
from shoprec.io import files, manifest, publish
from shoprec.io.outputs import require_success, write_report, write_success

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def _stage(layout, text, stage="ingest"):
    """Stages a finished output holding ``text`` (as a stage run for publishing leaves it)."""
    staged = layout.staging_dir(stage)
    os.makedirs(os.path.join(staged, "examples"), exist_ok=True)
    with open(os.path.join(staged, "examples", "train-00000-of-00001.txt"), "w") as f:
        f.write(text)
    write_success(staged, stage, {"fingerprint": text})


def _read(layout, stage="ingest"):
    require_success(layout.stage_dir(stage), stage)
    with open(os.path.join(layout.stage_dir(stage), "examples",
                           "train-00000-of-00001.txt")) as f:
        return f.read()


def _tree(root):
    out = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(folder, name)
            out[os.path.relpath(path, root)] = (os.path.islink(path) and os.readlink(path),
                                                os.lstat(path).st_mtime_ns)
    return out


def test_publish_flips_a_link_to_the_new_version_and_deletes_the_old(tmp_path):
    layout = Layout(str(tmp_path))
    _stage(layout, "day one")
    first = publish.publish(layout, "ingest")
    assert os.path.islink(layout.stage_dir("ingest")) and _read(layout) == "day one"
    assert os.path.dirname(first) == layout.versions_dir
    assert not os.path.exists(layout.staging_dir("ingest"))

    _stage(layout, "day two")
    assert _read(layout) == "day one"  # staged, not yet published: readers see the old one
    second = publish.publish(layout, "ingest")
    assert _read(layout) == "day two"
    assert os.listdir(layout.versions_dir) == [os.path.basename(second)]
    assert first != second


def test_publishing_twice_changes_nothing(tmp_path):
    layout = Layout(str(tmp_path))
    _stage(layout, "out")
    version = publish.publish(layout, "ingest")
    before = _tree(tmp_path)
    assert publish.publish(layout, "ingest") == version
    assert _tree(tmp_path) == before


def test_a_folder_written_in_place_is_replaced_whole(tmp_path):
    layout = Layout(str(tmp_path))
    in_place = layout.stage_dir("ingest")
    os.makedirs(os.path.join(in_place, "examples"))
    with open(os.path.join(in_place, "examples", "stale-00001.txt"), "w") as f:
        f.write("stale shard")
    write_success(in_place, "ingest")
    _stage(layout, "new")
    publish.publish(layout, "ingest")
    assert _read(layout) == "new"
    assert os.listdir(os.path.join(in_place, "examples")) == ["train-00000-of-00001.txt"]
    assert len(os.listdir(layout.versions_dir)) == 1


def test_nothing_staged_and_nothing_published_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to publish"):
        publish.publish(Layout(str(tmp_path)), "ingest")


def test_a_staged_folder_is_never_accepted_by_readers(tmp_path):
    layout = Layout(str(tmp_path))
    _stage(layout, "finished but not published")
    with pytest.raises(StageOrderError, match="run `shoprec ingest` first"):
        require_success(layout.stage_dir("ingest"), "ingest")
    # A failed staged run points at its report, and leaves the published one in use.
    _stage(layout, "good")
    publish.publish(layout, "ingest")
    os.makedirs(layout.staging_dir("ingest"))
    write_report(os.path.join(layout.staging_dir("ingest"), "report.json"), {"status": "failed"})
    assert _read(layout) == "good"


SHARDS = 3


def _stage_shards(layout, text, stage="ingest"):
    """Stages a finished output of :data:`SHARDS` files, each holding ``text``."""
    staged = layout.staging_dir(stage)
    for i in range(SHARDS):
        files.write(os.path.join(staged, "examples", f"train-{i:05d}-of-{SHARDS:05d}.txt"),
                    text.encode())
    write_success(staged, stage, {"fingerprint": text})


def _read_whole(layout, stage="ingest"):
    """The text of the published folder, checked whole: every shard there, all one output."""
    require_success(layout.stage_dir(stage), stage)
    folder = os.path.join(layout.stage_dir(stage), "examples")
    shards = {files.read(os.path.join(folder, n)) for n in files.relative_files(folder)}
    assert len(files.relative_files(folder)) == SHARDS and len(shards) == 1, shards
    return shards.pop().decode()


def test_a_gs_publish_is_a_copy_with_the_marker_last_and_is_idempotent(gcs):
    layout = Layout(gcs)
    _stage_shards(layout, "v1")
    with pytest.raises(StageOrderError, match="run `shoprec ingest` first"):
        require_success(layout.stage_dir("ingest"), "ingest")  # staged: never accepted
    assert publish.publish(layout, "ingest") == layout.stage_dir("ingest")
    assert _read_whole(layout) == "v1" and not files.exists(layout.staging_dir("ingest"))
    before = files.listing(gcs)
    publish.publish(layout, "ingest")
    assert files.listing(gcs) == before  # the same objects, not rewritten


@pytest.mark.parametrize("point", ["before_publish", "mid_copy", "before_flip",
                                   "before_cleanup"])
def test_a_gs_publish_killed_at_any_point_leaves_it_whole_or_absent(gcs, point):
    layout = Layout(gcs)
    _stage_shards(layout, "old")
    publish.publish(layout, "ingest")
    _stage_shards(layout, "new")
    env = dict(os.environ, PYTHONPATH=REPO, **{publish.FAULT_ENV: point})
    code = ("import sys; from shoprec.core.layout import Layout; from shoprec.io import publish; "
            "publish.publish(Layout(sys.argv[1]), 'ingest')")
    killed = subprocess.run([sys.executable, "-c", code, gcs], env=env)
    assert killed.returncode == -9
    copied = files.relative_files(layout.stage_dir("ingest"))
    if point in ("mid_copy", "before_flip"):
        # The old folder is gone and the new one not yet marked: refused, not half read.
        assert len(copied) == {"mid_copy": 1, "before_flip": SHARDS}[point]
        with pytest.raises(StageOrderError, match="did not finish"):
            require_success(layout.stage_dir("ingest"), "ingest")
    else:
        assert _read_whole(layout) == {"before_publish": "old", "before_cleanup": "new"}[point]
    # The next run finds the staged output by its manifest and publishes it.
    pending = publish.unpublished(layout, "ingest")
    assert [manifest.read(p)["fingerprint"] for p in pending] == ["new"]
    publish.publish(layout, "ingest")
    assert _read_whole(layout) == "new" and not files.exists(layout.staging_dir("ingest"))


@pytest.mark.parametrize("point", ["before_publish", "before_flip", "before_cleanup"])
def test_a_publish_killed_at_any_point_leaves_a_whole_output_and_finishes_on_retry(tmp_path,
                                                                                 point):
    layout = Layout(str(tmp_path))
    _stage(layout, "old")
    publish.publish(layout, "ingest")
    old_marker = manifest.marker_bytes(layout.stage_dir("ingest"))
    _stage(layout, "new")
    env = dict(os.environ, PYTHONPATH=REPO, **{publish.FAULT_ENV: point})
    code = ("import sys; from shoprec.core.layout import Layout; from shoprec.io import publish; "
            "publish.publish(Layout(sys.argv[1]), 'ingest')")
    killed = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env)
    assert killed.returncode == -9
    # Before the flip the old output is published, from the flip on the new one: never a mix.
    expected = "new" if point == "before_cleanup" else "old"
    assert _read(layout) == expected
    if expected == "old":
        assert manifest.marker_bytes(layout.stage_dir("ingest")) == old_marker
    # The next run finds the finished output by its manifest and publishes it (killed
    # before the clean-up: the old version is what is left unpublished; it goes now).
    pending = publish.unpublished(layout, "ingest")
    assert [manifest.read(p)["fingerprint"] for p in pending] == [
        "old" if point == "before_cleanup" else "new"]
    publish.publish(layout, "ingest", source=None if point == "before_cleanup" else pending[0])
    assert _read(layout) == "new"
    assert len(os.listdir(layout.versions_dir)) == 1


def test_fault_points_are_named():
    with pytest.raises(ValueError, match="unknown fault point"):
        publish.fault_point("halfway")
