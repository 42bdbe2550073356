"""Image-path patterns and their resolution against the images root, by hand."""

import pytest

from shoprec.core import images


def test_image_path_patterns():
    row = {"article_id": "0108775015", "path": " a/b.jpg "}
    assert images.image_path("images/{article_id[:3]}/{article_id}.jpg", row) == (
        "images/010/0108775015.jpg")
    assert images.image_path("{article_id[-3:]}", row) == "015"
    assert images.image_path("path", row) == "a/b.jpg"
    assert images.pattern_columns("x/{a}/{b[:2]}") == ("a", "b")
    assert images.pattern_columns("path") == ("path",)
    assert images.pattern_columns(None) == ()


def test_resolve_joins_relative_paths_and_keeps_allowed_absolute_ones():
    assert images.resolve("/root", "a/b.png") == "/root/a/b.png"
    assert images.resolve("/root", "a/../b.png") == "/root/a/../b.png"  # stays under the root
    allowed = ("/elsewhere", "gs://bucket/")
    assert images.resolve("/root", "/elsewhere/b.png", allowed) == "/elsewhere/b.png"
    assert images.resolve("/root", "gs://bucket/b.png", allowed) == "gs://bucket/b.png"
    # An object-store root is joined with one slash, however it ends.
    assert images.resolve("gs://bucket/photos/", "a/b.png") == "gs://bucket/photos/a/b.png"
    assert images.resolve("gs://bucket/photos", "a/b.png") == "gs://bucket/photos/a/b.png"


@pytest.mark.parametrize("path, allowed, why", [
    ("../../../../etc/passwd", (), "leaves the images root"),
    ("a/../../b.png", (), "leaves the images root"),
    ("a\\..\\..\\b.png", (), "leaves the images root"),
    ("/etc/passwd", (), "lies under none of"),
    ("C:\\photos\\b.png", (), "lies under none of"),
    ("https://example.com/b.png", (), "lies under none of"),
    ("/elsewhere/../etc/passwd", ("/elsewhere",), "lies under none of"),
    ("/elsewhere-not/b.png", ("/elsewhere",), "lies under none of"),
    ("gs://other/b.png", ("gs://bucket/",), "lies under none of"),
    ("a\x00.png", (), "NUL"),
])
def test_paths_that_leave_the_root_or_the_allowed_prefixes_are_refused(path, allowed, why):
    with pytest.raises(images.PathOutsideRoot, match=why):
        images.resolve("/root", path, allowed)
    assert images.OUTSIDE_ROOT == "image_path_outside_root"
