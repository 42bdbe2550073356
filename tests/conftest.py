"""Test session set-up shared by every test package."""

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf

# MirroredStrategy tests need more than one device and this machine has no GPU:
# split the CPU into two logical devices before TensorFlow initializes its
# runtime. Tests that do not ask for a strategy still run on one device.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
