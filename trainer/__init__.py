"""shoprec trainer."""

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)
