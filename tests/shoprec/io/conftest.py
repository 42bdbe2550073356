"""Fixtures of the io tests."""

import pytest


@pytest.fixture(params=["local", "gs"])
def root(request, tmp_path):
    """A folder on the local disk, or a fresh ``gs://`` folder on the Cloud Storage emulator."""
    if request.param == "local":
        return str(tmp_path)
    return request.getfixturevalue("gcs")
