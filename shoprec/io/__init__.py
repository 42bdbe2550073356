"""The layer below ``pipelines`` and ``trainer``: reading what both read the same way.

An input table's rows (CSV, JSON lines, Parquet) and an item photo's pixels
are read here, once, so the Beam jobs and the image encoder's catalogue see
the same rows and the same pixels. Imports ``shoprec.core`` only.
"""

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)
