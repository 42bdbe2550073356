"""Clearing a stage's folder (optionally keeping a child) and writing its report."""

import json
import os

from shoprec.io import outputs


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_clear_removes_everything_or_keeps_the_named_children(tmp_path):
    stage = tmp_path / "train"
    for name in ("model/saved_model.pb", "backup/ckpt-1", "metrics.json"):
        (stage / name).parent.mkdir(parents=True, exist_ok=True)
        (stage / name).write_text("x")
    outputs.clear(str(stage), keep=("backup",))
    assert _tree(tmp_path) == ["train", "train/backup", "train/backup/ckpt-1"]
    outputs.clear(str(stage))
    assert _tree(tmp_path) == []
    outputs.clear(str(stage))  # nothing there: a no-op


def test_write_report_is_sorted_indented_json(tmp_path):
    path = tmp_path / "report.json"
    outputs.write_report(str(path), {"b": 1, "a": {"d": 2, "c": tmp_path.name}})
    text = path.read_text()
    assert json.loads(text) == {"a": {"c": tmp_path.name, "d": 2}, "b": 1}
    assert text.index('"a"') < text.index('"b"') and text.startswith('{\n  "a"')


def test_clearing_a_published_folder_removes_its_link_not_its_version(tmp_path):
    version = tmp_path / ".versions" / "score-1"
    version.mkdir(parents=True)
    (version / "scores.parquet").write_text("x")
    os.symlink(os.path.join(".versions", "score-1"), tmp_path / "score")
    outputs.clear(str(tmp_path / "score"))
    assert not os.path.lexists(tmp_path / "score")
    assert (version / "scores.parquet").read_text() == "x"
