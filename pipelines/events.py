"""From validated events to labelled impressions.

An example is one impression. Its labels come from the events that follow it
for the same user and item: ``click`` if a click follows within the click
window, ``conversion`` if that click is followed by a purchase within the
conversion window. Each click and each purchase is credited once, so one click
never labels two impressions; a click or purchase that credits nothing is a
dead letter rather than a silently ignored event.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Tuple

import apache_beam as beam

from pipelines import dead_letter as dl
from pipelines.outputs import Outputs
from pipelines.parse import EVENTS, EVENT_TYPE_KEY, csv_line
from shoprec.core import dataset as ds
from shoprec.core import registry as F

# Keys of match_labels' examples; BuildExamples renames them to the registry's labels.
CLICK = "click"
CONVERSION = "conversion"

# At equal timestamps an impression precedes its click and a click its purchase:
# logs written at one-second resolution often stamp them alike.
_ORDER = {stage: i for i, stage in enumerate(ds.FUNNEL)}
_CORE = (F.TIMESTAMP_KEY, F.USER_KEY, F.ITEM_KEY, EVENT_TYPE_KEY)


def event_record(event: Dict[str, Any]) -> str:
    """An event as a CSV line (timestamp, user, item, type, kept columns), for dead letters."""
    extras = [event[k] for k in sorted(event) if k not in _CORE]
    return csv_line([event[k] for k in _CORE] + extras)


def event_order(event: Dict[str, Any]):
    """Sort key: time, then funnel order at equal times, then the rest for stability."""
    return (event[F.TIMESTAMP_KEY], _ORDER[event[EVENT_TYPE_KEY]], event[F.ITEM_KEY],
            event_record(event))


def match_labels(events: Iterable[Tuple[int, str]], click_window_s: int,
                 conversion_window_s: int) -> Tuple[List[Dict[str, int]], List[Tuple[int, str]]]:
    """Labels the impressions of one user-item pair.

    A click is credited to the latest preceding impression not yet clicked,
    if that impression is at most ``click_window_s`` older; a purchase to the
    latest preceding click not yet converted, if at most
    ``conversion_window_s`` older. Windows are inclusive.

    Args:
        events: (timestamp, event_type) pairs, any order.
        click_window_s: Longest impression→click delay that counts.
        conversion_window_s: Longest click→purchase delay that counts.

    Returns:
        (examples, orphans): one {'timestamp', 'click', 'conversion'} per
        impression in time order, and the (timestamp, event_type) of every
        click or purchase that credited nothing.
    """
    examples: List[Dict[str, int]] = []
    click_times: Dict[int, int] = {}  # example index → timestamp of its click
    unclicked: List[int] = []  # example indices, oldest first
    unconverted: List[int] = []  # clicked example indices, oldest click first
    orphans: List[Tuple[int, str]] = []
    for ts, kind in sorted(events, key=lambda e: (e[0], _ORDER[e[1]])):
        if kind == "impression":
            unclicked.append(len(examples))
            examples.append({F.TIMESTAMP_KEY: ts, CLICK: 0, CONVERSION: 0})
        elif kind == "click":
            # Older unclicked impressions are even further away, so only the latest can match.
            if unclicked and ts - examples[unclicked[-1]][F.TIMESTAMP_KEY] <= click_window_s:
                index = unclicked.pop()
                examples[index][CLICK] = 1
                click_times[index] = ts
                unconverted.append(index)
            else:
                orphans.append((ts, kind))
        else:
            if unconverted and ts - click_times[unconverted[-1]] <= conversion_window_s:
                examples[unconverted.pop()][CONVERSION] = 1
            else:
                orphans.append((ts, kind))
    return examples, orphans


def label_pair(user_id: str, item_id: str, events: Iterable[Tuple[int, str]],
               click_window_s: int, conversion_window_s: int, names: Dict[str, str]):
    """One pair's examples and the dead letters of its clicks and purchases that credit nothing.

    Args:
        events: The pair's (timestamp, event_type) funnel events, any order.
        names: {CLICK, CONVERSION: the registry label each is, or None}.

    Yields:
        {'user_id', 'item_id', 'timestamp', <labels>} per impression
        (:func:`match_labels`), then an ``orphan_click`` / ``orphan_purchase``
        dead letter per event that credited nothing.
    """
    examples, orphans = match_labels(events, click_window_s, conversion_window_s)
    for example in examples:
        row = {F.USER_KEY: user_id, F.ITEM_KEY: item_id, F.TIMESTAMP_KEY: example[F.TIMESTAMP_KEY]}
        row.update({name: example[key] for key, name in names.items() if name})
        yield row
    for ts, kind in orphans:
        window = click_window_s if kind == "click" else conversion_window_s
        earlier = "impression" if kind == "click" else "click"
        yield dl.tagged(EVENTS, f"orphan_{kind}",
                        f"no unmatched {earlier} in the {window}s before it",
                        csv_line([ts, user_id, item_id, kind]))


class DropUnknownItems(beam.PTransform):
    """Events whose item is not in the valid item table → ``unknown_item`` dead letters.

    Unknown users pass: the users table is optional side information and
    missing users get registry defaults when features are joined.
    """

    def __init__(self, items: beam.PCollection):
        """Args:
            items: (item_id, item row) for every valid item.
        """
        super().__init__()
        self._items = items

    def expand(self, events) -> Outputs:
        def check(event, known):
            if event[F.ITEM_KEY] in known:
                yield event
            else:
                yield dl.tagged(EVENTS, "unknown_item",
                                f"item_id {event[F.ITEM_KEY]!r} is not a valid item",
                                event_record(event))

        # Every worker holds the catalogue's ids only, not its rows.
        ids = self._items | "ItemColumns" >> beam.MapTuple(lambda item_id, _: (item_id, None))
        out = events | "Check" >> beam.FlatMap(
            check, known=beam.pvalue.AsDict(ids)).with_outputs(
                dl.DEAD_LETTER_TAG, main="main")
        return Outputs(out.main, out[dl.DEAD_LETTER_TAG])


def _dedup(event_and_count, policy: str):
    key, count = event_and_count
    event = dict(key)
    yield event
    if policy == "quantity":
        # Identical rows are units of one purchase (e.g. H&M logs one row per
        # unit): one event stands for all of them, and the units are counted.
        if count > 1:
            beam.metrics.Metrics.counter(dl.NAMESPACE, "units_collapsed/events").inc(count - 1)
        return
    for _ in range(count - 1):
        yield dl.tagged(EVENTS, "duplicate_event", f"{count} identical copies",
                        event_record(event))


class DedupEvents(beam.PTransform):
    """Keeps one copy of identical events.

    Events are identical when every parsed value is: timestamp (after parsing,
    so ISO and unix forms of one instant match), user, item, type and the kept
    event columns. Policy ``dead_letter``: every other copy is a
    ``duplicate_event``. Policy ``quantity``: the copies are units of one
    event, counted under ``units_collapsed/events``.
    """

    def __init__(self, policy: str = "dead_letter"):
        super().__init__()
        if policy not in ds.DEDUP_POLICIES:
            raise ValueError(f"dedup policy must be one of {ds.DEDUP_POLICIES}")
        self._policy = policy

    def expand(self, events) -> Outputs:
        out = (events
               | "Key" >> beam.Map(lambda e: tuple(sorted(e.items())))
               | "Count" >> beam.combiners.Count.PerElement()
               | "KeepOne" >> beam.FlatMap(_dedup, self._policy).with_outputs(
                   dl.DEAD_LETTER_TAG, main="main"))
        return Outputs(out.main, out[dl.DEAD_LETTER_TAG])


class BuildExamples(beam.PTransform):
    """Events → one labelled example per impression (see :func:`match_labels`).

    Output rows: {'user_id', 'item_id', 'timestamp', <click label>, <purchase
    label>}, the labels named by the registry labels whose ``event_type`` is
    ``click`` and ``purchase``. Unmatched clicks and purchases are
    ``orphan_click`` / ``orphan_purchase``; other funnel events take no part.
    """

    def __init__(self, click_window_s: int, conversion_window_s: int, registry: F.Registry):
        super().__init__()
        self._click_window_s = int(click_window_s)
        self._conversion_window_s = int(conversion_window_s)
        by_event = {f.event_type: f.name for f in registry.event_labels()}
        self._names = {CLICK: by_event.get("click"), CONVERSION: by_event.get("purchase")}

    def expand(self, events) -> Outputs:
        click_window_s, conversion_window_s = self._click_window_s, self._conversion_window_s
        names = self._names

        def label(pair_and_events):
            (user_id, item_id), timed = pair_and_events
            yield from label_pair(user_id, item_id, timed, click_window_s, conversion_window_s,
                                  names)

        out = (events
               | "FunnelOnly" >> beam.Filter(
                   lambda e: e[EVENT_TYPE_KEY] in ("impression", "click", "purchase"))
               | "KeyByPair" >> beam.Map(lambda e: ((e[F.USER_KEY], e[F.ITEM_KEY]),
                                                    (e[F.TIMESTAMP_KEY], e[EVENT_TYPE_KEY])))
               | "GroupByPair" >> beam.GroupByKey()
               | "Label" >> beam.FlatMap(label).with_outputs(dl.DEAD_LETTER_TAG, main="main"))
        return Outputs(out.main, out[dl.DEAD_LETTER_TAG])
