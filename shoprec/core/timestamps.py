"""Time parsing: config instants and raw timestamp columns into unix seconds."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any


def parse_timestamp(value: Any) -> int:
    """Parses unix seconds or ISO-8601 (naive means UTC) into unix seconds.

    Raises:
        ValueError: the value is neither.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return int(parsed.timestamp())


def to_timestamp(value: Any, fmt: str) -> int:
    """Parses a raw timestamp in ``fmt`` into unix seconds.

    Args:
        value: The raw value (string or number).
        fmt: ``auto`` (unix seconds or ISO-8601), ``unix_s``, ``unix_ms``,
            ``iso`` or a ``strptime`` pattern; naive times are UTC.

    Raises:
        ValueError, OverflowError: the value does not parse in ``fmt``.
    """
    text = str(value).strip()
    if fmt == "auto":
        return parse_timestamp(text)
    if fmt in ("unix_s", "unix_ms"):
        seconds = float(text) / (1000 if fmt == "unix_ms" else 1)
        if not math.isfinite(seconds):
            raise ValueError("not finite")
        return int(seconds)
    if fmt == "iso":
        return parse_timestamp(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).isoformat())
    parsed = dt.datetime.strptime(text, fmt)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return int(parsed.timestamp())
