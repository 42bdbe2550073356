"""Bounded samples of CSV, JSON lines and Parquet tables, and a photo folder's files."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shoprec.core.errors import ConfigError, InputMissingError
from shoprec.io import sample


def test_csv_sample_is_bounded_and_says_whether_it_is_whole(tmp_path):
    (tmp_path / "a.csv").write_text('id,name\n1,"x, y"\n2,z\nbroken\n3,w\n')
    (tmp_path / "b.csv").write_text("id,name\n4,v\n")
    whole = sample.read_sample(str(tmp_path / "*.csv"), 10)
    assert whole.columns == ("id", "name") and whole.complete and whole.bad_rows == 1
    assert [r["name"] for r in whole.rows] == ["x, y", "z", "w", "v"]
    head = sample.read_sample(str(tmp_path / "*.csv"), 2)
    assert [r["id"] for r in head.rows] == ["1", "2"] and not head.complete


def test_jsonl_and_parquet_keep_their_types(tmp_path):
    lines = [{"id": 1, "price": 2.5}, {"id": 2, "tag": "new"}]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    got = sample.read_sample(str(tmp_path / "t.jsonl"), 10)
    assert got.columns == ("id", "price", "tag") and got.rows == tuple(lines)
    pq.write_table(pa.table({"id": ["007", "008"], "n": [3, 4]}), str(tmp_path / "t.parquet"))
    got = sample.read_sample(str(tmp_path / "t.parquet"), 1)
    assert got.rows == ({"id": "007", "n": 3},) and not got.complete


def test_formats_and_missing_inputs(tmp_path):
    assert [sample.format_of(p) for p in ("a.CSV", "b.csv.gz", "c.pq", "d.ndjson")] == [
        "csv", "csv", "parquet", "jsonl"]
    with pytest.raises(ConfigError, match="cannot tell its format"):
        sample.format_of("e.tsv")
    with pytest.raises(InputMissingError):
        sample.read_sample(str(tmp_path / "none.csv"), 5)


def test_images_are_listed_relative_to_their_folder(tmp_path):
    for name in ("010/0108775015.jpg", "011/0111565001.JPG", "011/notes.txt", "a.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert sample.list_images(str(tmp_path), 10) == (
        ("a.png", "010/0108775015.jpg", "011/0111565001.JPG"), True)
    assert sample.list_images(str(tmp_path), 2)[1] is False
    with pytest.raises(InputMissingError):
        sample.list_images(str(tmp_path / "a.png"), 2)
