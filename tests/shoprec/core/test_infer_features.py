"""Attribute columns → features by cardinality and content; photo paths from a file list."""

from shoprec.core import infer_features as infer
from shoprec.core.profile import profile, profiles


def _kind(name, values, complete=True):
    attribute = infer.classify(profile(name, values), "item", complete)
    return attribute.feature["kind"] if attribute.feature else None


def test_kinds_by_cardinality_and_content():
    colours = ["red", "blue", "green"] * 40
    assert _kind("colour", colours) == "categorical"
    assert _kind("price", [str(0.5 + i) for i in range(120)]) == "numeric"
    # Numbers that name something are never amounts: codes, ..._no, a few integers.
    assert _kind("department_no", [str(1000 + i % 60) for i in range(120)]) == "categorical"
    assert _kind("index_group", [str(i % 5) for i in range(120)]) == "categorical"
    assert _kind("cat", [str(2520377 + i % 60) for i in range(120)]) == "categorical"
    assert _kind("seller", [str(4100200 + i % 60) for i in range(120)]) == "categorical"
    assert _kind("stock", [str(i % 60) for i in range(120)]) == "numeric"
    assert _kind("ean", [f"0{i:07d}" for i in range(120)]) == "hashed"
    # Many one-word values: hashed; many-worded ones: text.
    assert _kind("postal_code", [f"{i:x}ab{i}" for i in range(6000)]) == "hashed"
    assert _kind("desc", [f"soft cotton shirt number {i}" for i in range(120)]) == "text"
    # Nothing to learn from: always blank, one value, a date.
    assert _kind("empty", ["", None]) is None
    assert _kind("shop", ["main"] * 5) is None
    assert _kind("launched", ["2020-01-02"] * 3 + ["2021-01-01"]) is None
    assert _kind("photo", [f"img/{i}.JPG" for i in range(9)] + ["https://x.test/p"]) is None


def test_numeric_details_and_blanks():
    prices = [str(v) for v in [1.5, 2.5, 2.5, 3, 3, 3, 200] * 20] + [""]
    attribute = infer.classify(profile("price", prices), "item", True)
    assert attribute.feature == {"name": "item_price", "source": "item", "column": "price",
                                 "required": False, "kind": "numeric", "log": True,
                                 "default": 3.0}
    assert attribute.evidence == ("numeric: float from 1.5 to 200, median 3; heavy-tailed, log1p, "
                                  "1% blank")
    # A partial sample may have missed blanks: optional, with a default.
    attribute = infer.classify(profile("colour", ["red", "blue"] * 3), "user", False)
    assert attribute.feature["required"] is False and attribute.feature["default"] == "missing"
    assert attribute.feature["name"] == "user_colour"


def test_a_code_is_left_out_for_its_name():
    rows = [{"colour_code": str(i % 4), "colour_name": ["red", "blue", "green", "black"][i % 4],
             "size": str(i % 3)} for i in range(40)]
    table = profiles(["colour_code", "colour_name", "size"], rows)
    out = {a.column: a for a in infer.attributes(table, "item", (), True)}
    assert out["colour_code"].feature is None
    assert out["colour_code"].evidence == "left out: a code of colour_name (one name per value)"
    assert out["colour_name"].feature["kind"] == "categorical"
    assert out["size"].feature["kind"] == "categorical"


def test_item_attributes_of_an_event_log():
    rows = [{"item": f"i{i % 10}", "category": f"c{i % 10 // 5}", "user": f"u{i}"}
            for i in range(50)]
    table = profiles(["item", "category", "user"], rows)
    assert infer.item_columns_of_events(table, rows, "item", []) == ["category"]


def test_photo_path_pattern_or_column():
    keys = ["0108775015", "0108775044", "0111565001"]
    files = ["010/0108775015.jpg", "010/0108775044.jpg", "011/0111565001.jpg", "x.png"]
    found, up, why = infer.photo_path(keys, files, "article_id", "images", {})
    assert (found, up) == ("{article_id[:3]}/{article_id}.jpg", False)
    assert why == ("3 of 3 items have a photo named after their article_id, 3 of them at "
                   "{article_id[:3]}/{article_id}.jpg")
    flat = infer.photo_path(["a", "b"], ["a.png", "b.png"], "id", "photos", {})
    assert flat[0] == "{id}.png"
    # A column of paths relative to the folder's parent (the generated shop's).
    column = infer.photo_path(["a", "b"], ["a.png", "b.png"], "id", "images",
                              {"image_path": ["images/a.png", "images/b.png"]})
    assert column[:2] == ("image_path", True)
    assert infer.photo_path(["a"], ["z.png"], "id", "images", {})[0] is None
