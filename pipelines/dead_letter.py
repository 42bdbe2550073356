"""Dead letters: every rejected record, with the stage and reason that rejected it.

Nothing is dropped silently: a transform that rejects a record emits a
:class:`DeadLetter` on its ``dead_letter`` output and bumps a Beam counter
``dead_letter/<input>/<reason>`` so the run can report counts per reason.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import apache_beam as beam

NAMESPACE = "shoprec"
DEAD_LETTER_TAG = "dead_letter"


class DeadLetter(NamedTuple):
    input: str  # which input the record came from: events, items, users, images, pairs
    reason: str  # short, stable, machine-readable: e.g. bad_timestamp, unknown_item
    detail: str  # human-readable detail
    record: str  # the offending record, as read (truncated)

    def to_json(self) -> str:
        return json.dumps(self._asdict(), sort_keys=True)


def dead_letter(input_name: str, reason: str, detail: str, record: Any) -> DeadLetter:
    """Builds a dead letter and counts it under ``dead_letter/<input>/<reason>``."""
    beam.metrics.Metrics.counter(NAMESPACE, f"dead_letter/{input_name}/{reason}").inc()
    text = record if isinstance(record, str) else repr(record)
    return DeadLetter(input_name, reason, detail, text[:2000])


def tagged(input_name: str, reason: str, detail: str, record: Any) -> beam.pvalue.TaggedOutput:
    """A dead letter on the ``dead_letter`` tagged output of a DoFn."""
    return beam.pvalue.TaggedOutput(DEAD_LETTER_TAG,
                                    dead_letter(input_name, reason, detail, record))


def counts_from_result(result) -> dict:
    """Counter values of a finished pipeline in the shoprec namespace.

    Returns:
        {counter name: value}, e.g. {'dead_letter/events/bad_timestamp': 3}.
    """
    from apache_beam.metrics.metric import MetricsFilter

    query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    out: dict = {}
    for counter in query["counters"]:
        name = counter.key.metric.name
        out[name] = out.get(name, 0) + (counter.committed if counter.committed is not None
                                        else counter.attempted)
    return dict(sorted(out.items()))
