"""What an event log's sample says about its time, its users' activity and its junk.

``shoprec init`` sets from these: the train / eval / test split (day
boundaries at 80% and 90% of the events), the ``time_range`` that keeps a
few stray timestamps far from the rest out, the robot filter's ceiling
(twice the busiest user-window seen), duplicate handling, the history
length and the dead-letter limits a known property of the data needs.
"""

from __future__ import annotations

import bisect
import collections
import datetime as dt
import math
from typing import Dict, List, Optional, Sequence, Tuple

from shoprec.core.infer import Undecided

DAY = 86400
HOUR = 3600
# Fewer sampled events than this decide nothing.
MIN_EVENTS = 1000
# Shares of the log's events before the eval start and before the test start.
EVAL_AT, TEST_AT = 0.8, 0.9
# Share of events the time range is fitted to before widening over adjacent days.
CORE_QUANTILES = (0.001, 0.999)
# A dead-letter reason above this share of a sample gets its own limit.
NOTICEABLE = 0.005


def iso(seconds: int, granularity: int) -> str:
    """A UTC instant as a config writes it (a date for day boundaries)."""
    moment = dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
    return moment.strftime("%Y-%m-%d" if granularity == DAY else "%Y-%m-%dT%H:%M:%SZ")


def enough_events(count: int, complete: bool) -> None:
    """Raises Undecided when a log is too small to infer anything from."""
    if count < MIN_EVENTS:
        raise Undecided(f"events: {count:,} rows{'' if complete else ' read'}; init needs at "
                        f"least {MIN_EVENTS:,} to infer types, a funnel and a time split: "
                        "give it a longer log")


def _quantile(ordered: Sequence[int], q: float) -> int:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def time_range(times: Sequence[int]) -> Tuple[Optional[Tuple[int, int]], int, str]:
    """([start, end) in unix seconds or None, rows outside, evidence).

    The range is the whole UTC days holding the central 99.8% of the
    events, widened over every adjacent day that has events: stray times
    separated from the rest by an empty day fall outside.
    """
    ordered = sorted(times)
    days = collections.Counter(t // DAY for t in ordered)
    low, high = (_quantile(ordered, q) // DAY for q in CORE_QUANTILES)
    while days.get(low - 1):
        low -= 1
    while days.get(high + 1):
        high += 1
    outside = sum(n for d, n in days.items() if d < low or d > high)
    if not outside:
        return None, 0, (f"every event is between {iso(ordered[0], DAY)} and "
                         f"{iso(ordered[-1], DAY)}")
    start, end = iso(low * DAY, DAY), iso((high + 1) * DAY, DAY)
    share = 100 * outside / len(ordered)
    return (low * DAY, (high + 1) * DAY), outside, (
        f"{outside:,} events ({share:.2f}%) lie days away from the rest: outside "
        f"[{start}, {end}), dead letters")


def granularity(times: Sequence[int]) -> int:
    """DAY when every time is a UTC midnight (a day-resolution log), else 1."""
    return DAY if all(t % DAY == 0 for t in times) else 1


def split(times: Sequence[int]) -> Tuple[str, Optional[str], str]:
    """(eval start, test start or None, evidence): the boundaries with the shares of events
    before them nearest 80% and 90%.

    Boundaries are UTC midnights for a log of three days or more, else hours.

    Raises:
        Undecided: the log is too short to split in time.
    """
    ordered = sorted(times)
    span = ordered[-1] - ordered[0]
    step = DAY if span >= 3 * DAY else HOUR

    def share(ts):
        return bisect.bisect_left(ordered, ts) / len(ordered)

    def boundary(target):
        low = _quantile(ordered, target) // step * step
        return min((low, low + step), key=lambda b: abs(share(b) - target))

    eval_ts, test_ts = boundary(EVAL_AT), boundary(TEST_AT)
    if not ordered[0] < eval_ts <= ordered[-1]:
        raise Undecided(f"events: the log spans {span / HOUR:.1f} hours: too short to split "
                        "into train and eval by time; give it a longer log")
    if not eval_ts < test_ts <= ordered[-1]:
        test_ts = None
    tail = (f", test from {iso(test_ts, step)} ({100 - 100 * share(test_ts):.0f}%)"
            if test_ts else " (no test split)")
    return iso(eval_ts, step), iso(test_ts, step) if test_ts else None, (
        f"the log runs {iso(ordered[0], DAY)} to {iso(ordered[-1], DAY)} ({span / DAY:.1f} days): "
        f"train before {iso(eval_ts, step)} ({100 * share(eval_ts):.0f}% of events), eval "
        f"from there{tail}")


def busiest(users: Sequence[str], times: Sequence[int], window_s: int) -> int:
    """The most events one user has in one ``window_s`` bucket."""
    counts = collections.Counter((u, t // window_s) for u, t in zip(users, times))
    return max(counts.values()) if counts else 0


def robot_ceiling(users: Sequence[str], times: Sequence[int]) -> Tuple[int, int, str]:
    """(window_s, max_events, evidence): twice the busiest user-window of the sample."""
    window = DAY if granularity(times) == DAY else 60
    top = busiest(users, times, window)
    ceiling = max(30, 2 * top)
    unit = "day" if window == DAY else "minute"
    return window, ceiling, (f"the busiest user-{unit} of the sample has {top} events: a user "
                             f"over {ceiling} in one {unit} is taken for a robot")


def duplicate_share(rows: Sequence[Dict]) -> float:
    """Share of rows that repeat an earlier row exactly."""
    seen = collections.Counter(tuple(sorted((k, str(v)) for k, v in row.items())) for row in rows)
    return sum(n - 1 for n in seen.values()) / max(1, len(rows))


def history_length(users: Sequence[str]) -> Tuple[int, str]:
    """(N, evidence): the last N interactions kept, about a typical active user's count."""
    per_user = sorted(collections.Counter(users).values())
    p75 = per_user[int(0.75 * (len(per_user) - 1))] if per_user else 0
    length = max(10, min(50, int(math.ceil(p75 / 10.0)) * 10))
    return length, f"a user has {p75} events or fewer in 75% of cases: keep the last {length}"


def limit_for(share: float) -> float:
    """A dead-letter limit a little above a share seen in the sample."""
    return min(0.99, math.ceil((share * 1.1 + 0.02) * 100) / 100)


def id_embedding_dim(positives: int, ids: int, label: str) -> Tuple[int, str]:
    """Small id embeddings where each id has few positives to learn from."""
    per_id = positives / max(1, ids)
    dim = 4 if per_id < 1 else 8 if per_id < 10 else 16
    return dim, f"{per_id:.2f} {label} events per id: embeddings of {dim}"


def stage_counts(stages: List[str]) -> Dict[str, int]:
    return dict(collections.Counter(stages))
