"""Test session set-up shared by every test package."""

import os
import uuid

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import pytest
import tensorflow as tf

from tests import gcs_emulator as gcs_emulator_lib

# MirroredStrategy tests need more than one device and this machine has no GPU:
# split the CPU into two logical devices before TensorFlow initializes its
# runtime. Tests that do not ask for a strategy still run on one device.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])


@pytest.fixture(scope="session")
def gcs_emulator():
    """A Cloud Storage emulator on 127.0.0.1 for the session (``tests/gcs_emulator.py``).

    Skipped where it cannot start outside CI; in CI (``CI=true``) that is a
    failure: ``make install`` installs it with the ``test`` extra.
    """
    try:
        with gcs_emulator_lib.running() as url:
            yield url
    except gcs_emulator_lib.EmulatorUnavailable as err:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CI: the Cloud Storage emulator did not start: {err}")
        pytest.skip(f"no Cloud Storage emulator: {err}")


@pytest.fixture
def gcs(gcs_emulator, monkeypatch):
    """A fresh ``gs://`` folder on the emulator; this process and its children talk to it."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    return f"gs://{gcs_emulator_lib.BUCKET}/{uuid.uuid4().hex[:12]}"
