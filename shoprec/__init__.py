"""shoprec: behaviour logs, catalogue and photos in; multi-task recommenders out.

Importing any shoprec package runs this module first. It is the one place that
selects Keras 2: tensorflow-recommenders, tensorflow-transform and Beam's
TensorFlow RunInference handler are built on ``tf_keras``, and TensorFlow reads
``TF_USE_LEGACY_KERAS`` the first time ``tf.keras`` is touched. Setting it here,
before any TensorFlow import in this process, also covers Beam workers and
subprocesses, which inherit the environment and re-import these packages.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"

__version__ = "0.1.0"
