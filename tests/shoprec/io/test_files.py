"""The run machinery's file layer, on a local disk and on the Cloud Storage emulator alike."""

import os

import pytest

from shoprec.io import files


def _names(root, infos):
    return [i.path[len(root) + 1:] for i in infos]


def test_write_read_list_and_delete(root):
    for name, text in (("a/b.txt", "bb"), ("a/c/d.txt", "dddd"), ("e.csv", "e")):
        files.write(os.path.join(root, name), text.encode(), "text/plain")
    assert files.read(os.path.join(root, "a/c/d.txt")) == b"dddd"
    assert files.read(os.path.join(root, "a/missing.txt")) is None
    assert files.exists(os.path.join(root, "a")) and files.exists(os.path.join(root, "e.csv"))
    assert not files.exists(os.path.join(root, "z"))
    # A folder names every file under it; a glob's * stays within one folder.
    found = files.listing(os.path.join(root, "a"))
    assert _names(root, found) == ["a/b.txt", "a/c/d.txt"]
    assert [i.size for i in found] == [2, 4]
    assert _names(root, files.listing(os.path.join(root, "a", "*.txt"))) == ["a/b.txt"]
    assert _names(root, files.listing(os.path.join(root, "*.csv"))) == ["e.csv"]
    assert files.relative_files(os.path.join(root, "a")) == ["b.txt", "c/d.txt"]
    files.delete([os.path.join(root, "a"), os.path.join(root, "absent")])
    assert _names(root, files.listing(root)) == ["e.csv"]


def test_create_new_is_exclusive_and_replace_checks_the_version(root):
    path = os.path.join(root, ".lock")
    first = files.create_new(path, b"one")
    with pytest.raises(FileExistsError):
        files.create_new(path, b"two")
    data, version = files.read_version(path)
    assert (data, version) == (b"one", first)
    second = files.replace(path, b"three", version)
    # The version read before is stale now: a second replacement of it is refused.
    with pytest.raises(FileExistsError):
        files.replace(path, b"four", version)
    assert files.read(path) == b"three"
    files.delete_version(path, second)
    assert files.read_version(path) is None


def test_copy_and_move_between_the_disk_and_the_store(root, tmp_path):
    local = tmp_path / "model"
    (local / "variables").mkdir(parents=True)
    (local / "saved_model.pb").write_bytes(b"graph")
    (local / "variables" / "v.index").write_bytes(b"index")
    files.copy_tree(str(local), os.path.join(root, "staging"))
    files.move_tree(os.path.join(root, "staging"), os.path.join(root, "v1"))
    assert not files.exists(os.path.join(root, "staging"))
    assert files.relative_files(os.path.join(root, "v1")) == ["saved_model.pb",
                                                              "variables/v.index"]
    back = tmp_path / "back"
    files.copy_tree(os.path.join(root, "v1"), str(back))
    assert (back / "variables" / "v.index").read_bytes() == b"index"


def test_other_schemes_are_refused():
    with pytest.raises(ValueError, match="local paths or gs://"):
        files.listing("s3://bucket/run")
