"""A keyed join that never lists a group: one value per key handed to each of the key's many.

Beam's ``CoGroupByKey`` builds a list of every value of a key for each of
its inputs, so one hot key (a bot's events, an item everyone buys) would
make one worker hold all of them at once. :class:`AttachOne` joins a table
of at most one value per key (a user's row, a state) to any number of
values of that key with a ``GroupByKey`` of the two, tagged, and reads the
group twice: once to find the one value, once to hand it to each of the
others. Nothing is listed. Dataflow pages a large group's values from the
shuffle (a state-backed iterable; the in-process runner's
``use_state_iterables`` does the same), so a worker holds a page of a hot
key's values, never all of them.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Tuple

import apache_beam as beam

_ONE, _MANY = 0, 1
# Beam distributions of what a grouping step lists of one group, by step: a
# step bounded per key shows the same maximum whatever one key's events.
HELD_NAMESPACE = "shoprec.held"


def held(step: str, n: int) -> None:
    """Records that ``step`` listed ``n`` values of one group at once."""
    beam.metrics.Metrics.distribution(HELD_NAMESPACE, step).update(n)


def largest_held(result) -> Dict[str, int]:
    """{step: the most values it listed of one group} of a finished pipeline."""
    from apache_beam.metrics.metric import MetricsFilter

    query = result.metrics().query(MetricsFilter().with_namespace(HELD_NAMESPACE))
    out: Dict[str, int] = {}
    for dist in query["distributions"]:
        value = dist.committed if dist.committed is not None else dist.attempted
        name = dist.key.metric.name
        out[name] = max(out.get(name, 0), value.max)
    return out


def attach(key_and_values: Tuple[Any, Iterable[Tuple[int, Any]]]):
    """(key, tagged values) → (value, the key's one value or None) per value of the many."""
    _, values = key_and_values
    one: Optional[Any] = None
    for tag, value in values:
        if tag == _ONE:
            one = value
            break
    for tag, value in values:
        if tag == _MANY:
            yield value, one


class AttachOne(beam.PTransform):
    """(key, value) → (value, the key's value in ``table`` or None), streamed per key.

    Args:
        table: (key, value) with at most one value per key (a second one is
            ignored: callers pass tables unique by key, e.g. ``ParseTable``'s).
    """

    def __init__(self, table: beam.PCollection):
        super().__init__()
        self._table = table

    def expand(self, many):
        ones = self._table | "TagOne" >> beam.MapTuple(lambda k, v: (k, (_ONE, v)))
        tagged = many | "TagMany" >> beam.MapTuple(lambda k, v: (k, (_MANY, v)))
        return ((ones, tagged)
                | "Tagged" >> beam.Flatten()
                | "GroupByKey" >> beam.GroupByKey()
                | "Attach" >> beam.FlatMap(attach))
