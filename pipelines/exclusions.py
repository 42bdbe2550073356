"""Recommend's exclusion rule: the (user, item) pairs a user had a label for lately.

``recommend.exclude_label`` and ``exclude_days``: the items a user bought (a
positive ``exclude_label``) in the ``exclude_days`` before the cut-off are
never recommended to them. :class:`ReadExclusions` reads those pairs from the
raw examples for the recommend job to join by user.
"""

from __future__ import annotations

from typing import Optional, Sequence

import apache_beam as beam

from pipelines import examples
from shoprec.core import registry as F


class ReadExclusions(beam.PTransform):
    """Raw examples → (user_id, item_id) pairs the user had ``label`` for lately.

    Lately: in the ``window_s`` before ``end`` (the cut-off), or, with no
    ``end``, before the last example's timestamp.
    """

    def __init__(self, patterns: Sequence[str], registry: F.Registry, label: str,
                 window_s: int, end: Optional[int]):
        super().__init__()
        self._patterns = list(patterns)
        self._registry = registry
        self._label, self._window, self._end = label, int(window_s), end

    def expand(self, pbegin):
        registry, label, window = self._registry, self._label, self._window
        reads = [pbegin | f"Read{i}" >> beam.io.ReadFromTFRecord(p, validate=False)
                 for i, p in enumerate(self._patterns)]
        # Only the four fields the rule reads: most of an example is features.
        fields = (registry.user_key, registry.item_key, registry.timestamp_key, label)
        rows = (reads
                | "Flatten" >> beam.Flatten()
                | "Decode" >> beam.Map(examples.decode, registry, fields)
                | "Positive" >> beam.Filter(lambda row: bool(row[label])))
        if self._end is not None:
            end = pbegin | "CutOff" >> beam.Create([self._end])
        else:
            end = (rows
                   | "Timestamps" >> beam.Map(lambda row: row[registry.timestamp_key] + 1)
                   | "LastEvent" >> beam.CombineGlobally(max).without_defaults())

        def recent(row, cut) -> bool:
            return cut - window <= row[registry.timestamp_key] < cut

        return (rows
                | "InWindow" >> beam.Filter(recent, cut=beam.pvalue.AsSingleton(end))
                | "Pairs" >> beam.Map(lambda r: (r[registry.user_key], r[registry.item_key])))
