"""Robot filtering and a per-user anomaly score.

A user who logs more than ``max_events`` events in one ``window_s`` bucket
(fixed buckets: ``timestamp // window_s``) is robotic *from that bucket on*:
their events from its start are ``robot_user`` dead letters, and their earlier
events stay. Deciding from the first burst onward, not for the whole log,
keeps the filter point-in-time: an event can only remove events at or after
it, never an earlier example.

Every user also gets an anomaly row for a later anomaly-detection task:
events, the busiest bucket's count, the number of robotic buckets, when the
user turned robotic, and ``score = busiest bucket / max_events`` (> 1 is
robotic). Counting is a combine per (user, bucket), and the flagged users
are joined to the events by key (``pipelines.keyed``), so no worker holds a
user's whole log, nor the flagged users.

With ``pass_flagged`` the rule still flags (and counts) robotic users, but
their events stay: a model that learns to detect bots needs them as examples.
"""

from __future__ import annotations

from typing import Any, Dict, NamedTuple

import apache_beam as beam

from pipelines import dead_letter as dl
from pipelines.events import event_record
from pipelines.keyed import AttachOne
from pipelines.parse import EVENTS
from shoprec.core import registry as F

ANOMALY_COLUMNS = ("user_id", "events", "max_events_per_window", "robotic_windows",
                   "robotic_from", "score")


class AnomalyOutputs(NamedTuple):
    main: beam.PCollection  # events kept
    dead_letter: beam.PCollection  # robot_user dead letters
    users: beam.PCollection  # one anomaly row (dict, ANOMALY_COLUMNS) per user


def anomaly_row(user_id: str, bucket_counts: Dict[int, int], window_s: int,
                max_events: int) -> Dict[str, Any]:
    """The anomaly row of one user from their events per bucket."""
    robotic = sorted(b for b, n in bucket_counts.items() if n > max_events)
    busiest = max(bucket_counts.values()) if bucket_counts else 0
    return {"user_id": user_id, "events": sum(bucket_counts.values()),
            "max_events_per_window": busiest, "robotic_windows": len(robotic),
            "robotic_from": robotic[0] * window_s if robotic else None,
            "score": round(busiest / max_events, 4)}


def score_users(per_bucket: beam.PCollection, window_s: int, max_events: int):
    """((user, bucket), events in it) → (anomaly rows, (user, robotic_from) of robotic users).

    Applied in the caller's scope (its labels: ByUser, GroupByUser, Score,
    Robotic, RoboticFrom). Only the counts per bucket are grouped by user: at
    most one entry per active bucket. With ``max_events`` 0 nobody is robotic
    (rows are scored against 1) and the second PCollection is None.
    """
    limit = max_events or 1
    users = (per_bucket
             | "ByUser" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1])))
             | "GroupByUser" >> beam.GroupByKey()
             | "Score" >> beam.Map(lambda kv: anomaly_row(kv[0], dict(kv[1]), window_s, limit)))
    if not max_events:
        return users, None

    def count_flagged(row):
        beam.metrics.Metrics.counter(dl.NAMESPACE, "anomaly/robot_users").inc()
        return row["user_id"], row["robotic_from"]

    flagged = (users
               | "Robotic" >> beam.Filter(lambda r: r["robotic_from"] is not None)
               | "RoboticFrom" >> beam.Map(count_flagged))
    return users, flagged


def robot_event(event: Dict[str, Any], start, max_events: int, window_s: int,
                pass_flagged: bool):
    """The event itself, or its ``robot_user`` dead letter, for a user robotic from ``start``."""
    if start is None or event[F.TIMESTAMP_KEY] < start:
        return event
    if pass_flagged:
        beam.metrics.Metrics.counter(dl.NAMESPACE, "anomaly/passed_events").inc()
        return event
    return dl.tagged(EVENTS, "robot_user", f"user logged more than {max_events} events in "
                                           f"{window_s}s from {start}", event_record(event))


class FilterRobots(beam.PTransform):
    """Events → (kept events, ``robot_user`` dead letters, per-user anomaly rows).

    Args:
        window_s: Bucket width in seconds (60: events per minute).
        max_events: Most events a person logs in one bucket; 0 disables the
            filter (rows are still scored against 1).
        pass_flagged: Keep robotic users' events (counted under
            ``anomaly/passed_events``) instead of dead-lettering them.
    """

    def __init__(self, window_s: int, max_events: int, pass_flagged: bool = False):
        super().__init__()
        if window_s < 1 or max_events < 0:
            raise ValueError("window_s must be >= 1 and max_events >= 0")
        self._window_s = int(window_s)
        self._max_events = int(max_events)
        self._pass_flagged = bool(pass_flagged)

    def expand(self, events) -> AnomalyOutputs:
        window_s, max_events, pass_flagged = self._window_s, self._max_events, self._pass_flagged

        per_bucket = (events
                      | "KeyUserBucket" >> beam.Map(
                          lambda e: ((e[F.USER_KEY], e[F.TIMESTAMP_KEY] // window_s), 1))
                      | "CountPerBucket" >> beam.CombinePerKey(sum))
        users, flagged = score_users(per_bucket, window_s, max_events)
        if not max_events:
            empty = events.pipeline | "NoRobots" >> beam.Create([])
            return AnomalyOutputs(events, empty, users)

        def check(event_and_start):
            event, start = event_and_start
            yield robot_event(event, start, max_events, window_s, pass_flagged)

        # Flagged users are joined to the events by key: no worker holds them all.
        out = (events
               | "KeyByUser" >> beam.Map(lambda e: (e[F.USER_KEY], e))
               | "JoinFlagged" >> AttachOne(flagged)
               | "DropRobotEvents" >> beam.FlatMap(check).with_outputs(
                   dl.DEAD_LETTER_TAG, main="main"))
        return AnomalyOutputs(out.main, out[dl.DEAD_LETTER_TAG], users)
