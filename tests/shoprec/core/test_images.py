"""Image-path patterns and their resolution against the images root, by hand."""

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


def test_resolve_keeps_absolute_paths_and_urls():
    assert images.resolve("/root", "a/b.png") == "/root/a/b.png"
    assert images.resolve("/root", "/elsewhere/b.png") == "/elsewhere/b.png"
    assert images.resolve("/root", "gs://bucket/b.png") == "gs://bucket/b.png"
    # An object-store root is joined with one slash, however it ends.
    assert images.resolve("gs://bucket/photos/", "a/b.png") == "gs://bucket/photos/a/b.png"
    assert images.resolve("gs://bucket/photos", "a/b.png") == "gs://bucket/photos/a/b.png"
