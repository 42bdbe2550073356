"""What one column of a table sample holds: type, blanks, cardinality, timestamps, text.

``shoprec init`` decides the roles and features of a data set's columns from
these profiles (``shoprec.core.infer``). A profile is computed from the
values as read — text from CSV, typed scalars from JSON lines and Parquet —
with the same notion of a missing value as ingest (blank, None, NaN).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import math
import re
import statistics
from typing import Any, Dict, List, Optional, Sequence, Tuple

from shoprec.core import timestamps
from shoprec.core.dataset import is_missing

# Unix times shoprec takes for a timestamp column: 2000-01-01 to 2100-01-01.
EPOCH_RANGE_S = (946684800, 4102444800)
# strptime patterns tried on text timestamps, in this order; ISO-8601 after them.
TEXT_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d",
                "%Y/%m/%d %H:%M:%S", "%d/%m/%Y", "%m/%d/%Y", "%d/%m/%Y %H:%M:%S",
                "%m/%d/%Y %H:%M:%S", "%d.%m.%Y", "%d.%m.%Y %H:%M:%S")
# A column is a timestamp when at least this share of its values parse in one format.
TIMESTAMP_SHARE = 0.95
# Values a format is first tried on before all values are parsed in the winner.
_PROBE = 200
_INT = re.compile(r"[+-]?\d+")
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


def text_of(value: Any) -> str:
    """A value as ingest turns it into text (a float that is an integer loses its '.0')."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


@dataclasses.dataclass(frozen=True)
class ColumnProfile:
    """One column of a sample.

    Attributes:
        name: The column.
        rows: Values seen (blanks included).
        blanks: Missing values among them.
        distinct: Distinct non-blank values (as text).
        top: The most frequent values with their counts, most frequent first.
        kind: ``int`` (every value an integer without leading zeros),
            ``float``, ``code`` (integers some of which have leading zeros:
            identifiers, kept as text) or ``string``.
        timestamp_format: The format most of its values parse in (a
            ``ColumnSpec.format``), or None.
        timestamp_share: The share of non-blank values that parse in it.
        times: The parsed unix seconds (when a timestamp), in row order.
        numbers: (min, median, max) of a numeric column.
        tokens: Mean words per value (letters and digits runs).
        texts: The non-blank values as text, in row order.
    """

    name: str
    rows: int
    blanks: int
    distinct: int
    top: Tuple[Tuple[str, int], ...]
    kind: str
    timestamp_format: Optional[str] = None
    timestamp_share: float = 0.0
    times: Tuple[int, ...] = ()
    numbers: Optional[Tuple[float, float, float]] = None
    tokens: float = 0.0
    texts: Tuple[str, ...] = ()

    @property
    def filled(self) -> int:
        return self.rows - self.blanks

    @property
    def numeric(self) -> bool:
        return self.kind in ("int", "float")

    @property
    def distinct_share(self) -> float:
        """Distinct values per non-blank value (1.0: every value differs)."""
        return self.distinct / self.filled if self.filled else 0.0

    def share_blank(self) -> float:
        return self.blanks / self.rows if self.rows else 0.0


def _kind(values: Sequence[Any], texts: Sequence[str]) -> str:
    if values and all(isinstance(v, bool) for v in values):
        return "string"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int" if values else "string"
    if all(_INT.fullmatch(t) for t in texts):
        padded = any(len(t.lstrip("+-")) > 1 and t.lstrip("+-").startswith("0") for t in texts)
        return "code" if padded else "int"
    try:
        numbers = [float(t) for t in texts]
    except ValueError:
        return "string"
    return "float" if all(math.isfinite(n) for n in numbers) else "string"


def parse_time(fmt: str, text: str) -> Optional[int]:
    """Unix seconds of a value in ``fmt`` (epoch formats: only 2000 to 2100), or None."""
    try:
        if fmt in ("unix_s", "unix_ms"):
            seconds = float(text) / (1000 if fmt == "unix_ms" else 1)
            return int(seconds) if EPOCH_RANGE_S[0] <= seconds < EPOCH_RANGE_S[1] else None
        return timestamps.to_timestamp(text, fmt)
    except (ValueError, OverflowError):
        return None


def _candidate_formats(values: Sequence[Any], kind: str) -> Tuple[str, ...]:
    if values and all(isinstance(v, (dt.date, dt.datetime)) for v in values):
        return ("auto",)  # A Parquet date or timestamp: ingest reads its ISO text.
    if kind in ("int", "float"):
        return ("unix_s", "unix_ms")
    if kind == "code":
        return ()
    return TEXT_FORMATS + ("iso",)


def timestamp_format(values: Sequence[Any], texts: Sequence[str], kind: str
                     ) -> Tuple[Optional[str], float, Tuple[int, ...]]:
    """(format, share of values parsing in it, parsed seconds) of the best format.

    Each candidate format is tried on the first values; the best is then
    parsed on all of them. ``(None, 0.0, ())`` when none parses any.
    """
    probe = texts[:_PROBE]
    best, best_share = None, 0.0
    for fmt in _candidate_formats(values, kind):
        share = sum(parse_time(fmt, t) is not None for t in probe) / max(1, len(probe))
        if share > best_share:
            best, best_share = fmt, share
    if best is None:
        return None, 0.0, ()
    parsed = [parse_time(best, t) for t in texts]
    times = tuple(p for p in parsed if p is not None)
    return best, len(times) / max(1, len(texts)), times


def profile(name: str, values: Sequence[Any], top: int = 50) -> ColumnProfile:
    """The profile of one column's sampled values."""
    filled = [v for v in values if not is_missing(v)]
    texts = tuple(text_of(v) for v in filled)
    counts = collections.Counter(texts)
    kind = _kind(filled, texts)
    fmt, share, times = timestamp_format(filled, texts, kind)
    numbers = None
    if kind in ("int", "float") and texts:
        parsed = [float(t) for t in texts]
        numbers = (min(parsed), statistics.median(parsed), max(parsed))
    tokens = (sum(len(_TOKEN.findall(t)) for t in texts) / len(texts)) if texts else 0.0
    return ColumnProfile(name=name, rows=len(values), blanks=len(values) - len(filled),
                         distinct=len(counts), top=tuple(counts.most_common(top)), kind=kind,
                         timestamp_format=fmt if share >= TIMESTAMP_SHARE else None,
                         timestamp_share=share, times=times if share >= TIMESTAMP_SHARE else (),
                         numbers=numbers, tokens=tokens, texts=texts)


def profiles(columns: Sequence[str], rows: Sequence[Dict[str, Any]]) -> Dict[str, ColumnProfile]:
    """{column: profile} of a table sample."""
    return {c: profile(c, [row.get(c) for row in rows]) for c in columns}


def name_tokens(name: str) -> List[str]:
    """A column name's words, lower case: ``customerID`` → ``['customer', 'id']``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [t.lower() for t in re.split(r"[^A-Za-z0-9]+", spaced) if t]


def determines(a: ColumnProfile, b: ColumnProfile) -> bool:
    """Whether each value of ``a`` goes with one value of ``b`` in the same rows (a code
    and its name); only for columns with no blanks."""
    if a.blanks or b.blanks or a.rows != b.rows:
        return False
    return len(set(zip(a.texts, b.texts))) == a.distinct
