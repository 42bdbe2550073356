"""Column profiles of hand-made values: kinds, blanks, timestamps and their formats."""

import datetime as dt

from shoprec.core.profile import determines, name_tokens, profile


def test_kinds_blanks_and_counts():
    p = profile("age", ["31", "", "45", None, "31", float("nan")])
    assert (p.rows, p.blanks, p.distinct, p.kind) == (6, 3, 2, "int")
    assert p.top == (("31", 2), ("45", 1))
    assert p.numbers == (31.0, 31.0, 45.0)
    assert profile("article_id", ["0108775015", "0108775044"]).kind == "code"
    assert profile("price", ["0.5", "1e-2", "3"]).kind == "float"
    assert profile("name", ["a b", "c"]).kind == "string"
    assert profile("flag", [True, False]).kind == "string"
    # Typed values (JSON lines, Parquet): an int stays an int; 2.0 reads as "2".
    p = profile("n", [1, 2.0, 3])
    assert p.kind == "int" and p.texts == ("1", "2", "3")


def test_timestamp_formats_and_their_share():
    days = ["2020-09-20", "2020-09-21"] * 50
    p = profile("t_dat", days + ["junk"])
    assert p.timestamp_format == "%Y-%m-%d"
    assert p.timestamp_share == 100 / 101
    assert p.times[0] == 1600560000  # 2020-09-20T00:00:00Z
    assert profile("ts", ["1511544070", "1511561733"]).timestamp_format == "unix_s"
    assert profile("ms", [1511544070123, 1511561733000]).timestamp_format == "unix_ms"
    assert profile("iso", ["2026-11-08T18:17:28Z"]).timestamp_format == "iso"
    assert profile("d", [dt.date(2020, 1, 2)]).timestamp_format == "auto"
    # Small integers are no epoch seconds (before 2000); zero-padded codes never are.
    assert profile("user_id", ["1", "100", "2000"]).timestamp_format is None
    assert profile("code", ["0946684800"]).timestamp_format is None
    # Under 95% parsing: not a timestamp.
    assert profile("mixed", ["2020-01-01"] * 9 + ["x"]).timestamp_format is None


def test_names_and_codes():
    assert name_tokens("customerID") == ["customer", "id"]
    assert name_tokens("t_dat") == ["t", "dat"]
    code = profile("c", ["1", "2", "1", "3"])
    name = profile("n", ["red", "blue", "red", "blue"])
    assert determines(code, name)
    assert not determines(name, code)
