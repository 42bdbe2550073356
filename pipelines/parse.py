"""Validating input rows against the feature registry.

Every row is checked against its registry record (required, type, inclusive
range) before anything joins it; a row that fails becomes a dead letter with a
stable reason and the raw record as read, and good rows pass on as plain dicts
keyed by registry feature name. Rows come from :class:`pipelines.read.ReadTable`,
which yields the same rows for CSV and Parquet.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
from typing import Any, Dict, Iterable, List, Tuple

import apache_beam as beam

from pipelines import dead_letter as dl
from pipelines.outputs import Outputs
from shoprec.config import parse_timestamp
from transforms import features as F

EVENTS = "events"
ITEMS = "items"
USERS = "users"

EVENT_TYPES = ("impression", "click", "purchase")
TIMESTAMP_COLUMN = "timestamp"
EVENT_TYPE_COLUMN = "event_type"
EVENT_COLUMNS = (TIMESTAMP_COLUMN, F.USER_KEY, F.ITEM_KEY, EVENT_TYPE_COLUMN)
IMAGE_PATH_COLUMN = "image_path"

# Item features ingest derives from the photo instead of reading a column.
IMAGE_KEY = F.image_feature().name
HAS_IMAGE_KEY = "item_has_image"
assert HAS_IMAGE_KEY in F.BY_NAME, "registry lost the image-presence flag"


class RowError(ValueError):
    """A value failed validation; ``reason`` is the dead-letter reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def table_key(source: F.Source) -> F.Feature:
    """The registry feature keying a side table (items or users)."""
    return F.BY_NAME[F.ITEM_KEY if source == F.Source.ITEM else F.USER_KEY]


def table_features(source: F.Source) -> Tuple[F.Feature, ...]:
    """Registry features read from a side table's own columns, key first."""
    derived = {IMAGE_KEY, HAS_IMAGE_KEY}
    return (table_key(source),) + tuple(
        f for f in F.of_source(source) if f.name not in derived)


def required_columns(input_name: str) -> List[str]:
    """Columns an input file's header must name; optional ones may be absent."""
    if input_name == EVENTS:
        return list(EVENT_COLUMNS)
    source = F.Source.ITEM if input_name == ITEMS else F.Source.USER
    columns = [f.source_column for f in table_features(source) if f.required]
    return columns + ([IMAGE_PATH_COLUMN] if input_name == ITEMS else [])


def is_missing(value: Any) -> bool:
    """Blank strings, None and NaN (Parquet nulls) all mean 'no value'."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and not value.strip()


def convert(feature: F.Feature, value: Any) -> Any:
    """Validates one raw value and returns it typed for ``feature``.

    Args:
        feature: The registry record the value belongs to.
        value: The value as read (a CSV string, or a Parquet scalar).

    Returns:
        str, float or int per ``feature.dtype``; the registry default when an
        optional value is missing.

    Raises:
        RowError: reason ``missing_field``, ``bad_type`` or ``out_of_range``.
    """
    column = feature.source_column
    if is_missing(value):
        if feature.required:
            raise RowError("missing_field", f"{column} is empty")
        return feature.default
    if feature.dtype == "string":
        return str(value).strip()
    try:
        text = str(value).strip()
        number = float(text) if feature.dtype == "float32" else int(text)
    except ValueError as err:
        raise RowError("bad_type", f"{column}={value!r} is not {feature.dtype}") from err
    if not math.isfinite(number):
        raise RowError("bad_type", f"{column}={value!r} is not finite")
    low, high = feature.min_value, feature.max_value
    if feature.kind == F.Kind.FLAG:
        low, high = 0, 1  # Flags are 0/1 whatever the registry leaves unset.
    if (low is not None and number < low) or (high is not None and number > high):
        raise RowError("out_of_range", f"{column}={value!r} outside [{low}, {high}]")
    return number


def parse_event(row: Dict[str, Any]) -> Dict[str, Any]:
    """Validates one events row.

    Returns:
        {'timestamp': unix seconds, 'user_id', 'item_id', 'event_type'}.

    Raises:
        RowError: missing_field, bad_timestamp or bad_event_type.
    """
    out = {name: convert(F.BY_NAME[name], row.get(name)) for name in (F.USER_KEY, F.ITEM_KEY)}
    raw_ts = row.get(TIMESTAMP_COLUMN)
    if is_missing(raw_ts):
        raise RowError("missing_field", "timestamp is empty")
    try:
        out[F.TIMESTAMP_KEY] = parse_timestamp(raw_ts)
    except (ValueError, OverflowError) as err:
        raise RowError("bad_timestamp", f"timestamp={raw_ts!r}: {err}") from err
    raw_type = row.get(EVENT_TYPE_COLUMN)
    if is_missing(raw_type):
        raise RowError("missing_field", "event_type is empty")
    event_type = str(raw_type).strip().lower()
    if event_type not in EVENT_TYPES:
        raise RowError("bad_event_type", f"event_type={raw_type!r} not in {EVENT_TYPES}")
    out[EVENT_TYPE_COLUMN] = event_type
    return out


def parse_table_row(source: F.Source, row: Dict[str, Any]) -> Dict[str, Any]:
    """Validates one items or users row into {registry name: typed value}.

    Items also keep ``image_path`` ('' when absent) for the image loader.

    Raises:
        RowError: the first failing value's reason.
    """
    out = {f.name: convert(f, row.get(f.source_column)) for f in table_features(source)}
    if source == F.Source.ITEM:
        path = row.get(IMAGE_PATH_COLUMN)
        out[IMAGE_PATH_COLUMN] = "" if is_missing(path) else str(path).strip()
    return out


class _Validate(beam.DoFn):
    """Applies a row parser; a RowError becomes a dead letter with the raw record."""

    def __init__(self, input_name: str, parser):
        self._input = input_name
        self._parser = parser

    def process(self, element: Tuple[str, Dict[str, Any]]):
        record, row = element
        try:
            parsed = self._parser(row)
        except RowError as err:
            yield dl.tagged(self._input, err.reason, err.detail, record)
            return
        beam.metrics.Metrics.counter(dl.NAMESPACE, f"rows_valid/{self._input}").inc()
        yield parsed


def _first_of_key(input_name: str, key_and_rows):
    """Keeps one row per key; the others are ``duplicate_key`` dead letters.

    The kept row is the smallest by its JSON form, so re-runs keep the same one.
    """
    key, rows = key_and_rows
    ordered = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))
    yield key, ordered[0]
    for extra in ordered[1:]:
        yield dl.tagged(input_name, "duplicate_key", f"another row has key {key!r}",
                        json.dumps(extra, sort_keys=True, default=str))


class ParseEvents(beam.PTransform):
    """(record, row) pairs → validated event dicts, plus dead letters."""

    def expand(self, records) -> Outputs:
        parsed = records | "Validate" >> beam.ParDo(_Validate(EVENTS, parse_event)).with_outputs(
            dl.DEAD_LETTER_TAG, main="main")
        return Outputs(parsed.main, parsed[dl.DEAD_LETTER_TAG])


class _ParseTable(beam.PTransform):
    """(record, row) pairs → (key, validated row), one row per key, plus dead letters."""

    source: F.Source
    input_name: str

    def expand(self, records) -> Outputs:
        source, input_name = self.source, self.input_name
        key = table_key(source).name
        parsed = records | "Validate" >> beam.ParDo(
            _Validate(input_name, functools.partial(parse_table_row, source))).with_outputs(
                dl.DEAD_LETTER_TAG, main="main")
        unique = (parsed.main
                  | "Key" >> beam.Map(lambda r: (r[key], r))
                  | "GroupByKey" >> beam.GroupByKey()
                  | "FirstOfKey" >> beam.FlatMap(lambda kv: _first_of_key(input_name, kv))
                  .with_outputs(dl.DEAD_LETTER_TAG, main="main"))
        dead = ((parsed[dl.DEAD_LETTER_TAG], unique[dl.DEAD_LETTER_TAG])
                | "FlattenDeadLetters" >> beam.Flatten())
        return Outputs(unique.main, dead)


class ParseItems(_ParseTable):
    """(record, row) pairs → (item_id, item row incl. image_path); duplicates rejected."""

    source = F.Source.ITEM
    input_name = ITEMS


class ParseUsers(_ParseTable):
    """(record, row) pairs → (user_id, user row); duplicates rejected."""

    source = F.Source.USER
    input_name = USERS


def default_user(user_id: str) -> Dict[str, Any]:
    """The user row for an id the users table lacks: registry defaults."""
    row: Dict[str, Any] = {F.USER_KEY: user_id}
    for f in table_features(F.Source.USER)[1:]:
        row[f.name] = f.default
    return row


def csv_line(values: Iterable[Any]) -> str:
    """One CSV line (no terminator), quoting as needed."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(list(values))
    return buf.getvalue()
