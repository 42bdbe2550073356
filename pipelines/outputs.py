"""The shape every validating ingest transform returns."""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam


class Outputs(NamedTuple):
    """Good records on ``main``; rejected ones as DeadLetters on ``dead_letter``."""

    main: beam.PCollection
    dead_letter: beam.PCollection
