"""Validating input rows against the data set's raw schema and the feature registry.

Every row is checked column by column against its table's raw schema (type,
required, range, allowed values, timestamp format), then its feature columns
are converted as their registry records say. A row that fails becomes a dead
letter with a stable reason and the raw record as read; good rows pass on as
plain dicts: events keyed by role (timestamp, user_id, item_id, event_type as
our funnel stage, plus the event columns labels or items need), tables keyed
by registry feature name. Rows come from :class:`pipelines.read.ReadTable`,
which yields the same rows for CSV, JSONL and Parquet.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Dict, Iterable, List, Tuple

import apache_beam as beam

from pipelines import dead_letter as dl
from pipelines.outputs import Outputs
from shoprec.core import dataset as ds
from shoprec.core.dataset import is_missing
from shoprec.core import images, timestamps
from shoprec.core import registry as F

EVENTS = "events"
ITEMS = "items"
USERS = "users"

EVENT_TYPE_KEY = "event_type"
IMAGE_PATH_KEY = "image_path"
# The item flag ingest derives from the photo instead of reading a column.
HAS_IMAGE_KEY = "item_has_image"


class RowError(ValueError):
    """A value failed validation; ``reason`` is the dead-letter reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _number(text: str, kind: str, column: str):
    try:
        number = float(text) if kind == "float" else int(text)
    except ValueError as err:
        raise RowError("bad_type", f"{column}={text!r} is not {kind}") from err
    if not math.isfinite(number):
        raise RowError("bad_type", f"{column}={text!r} is not finite")
    return number


def to_timestamp(value: Any, fmt: str, column: str = "timestamp") -> int:
    """Parses a raw timestamp in ``fmt`` (see ``ColumnSpec``) into unix seconds.

    Raises:
        RowError: ``bad_timestamp``.
    """
    try:
        return timestamps.to_timestamp(value, fmt)
    except (ValueError, OverflowError) as err:
        raise RowError("bad_timestamp", f"{column}={value!r}: {err}") from err


def check_column(spec: ds.ColumnSpec, value: Any) -> Any:
    """Validates one raw value against its schema column.

    Returns:
        The value typed (str, int, float; timestamps as unix seconds), or None
        when an optional value is missing.

    Raises:
        RowError: ``missing_field``, ``bad_type``, ``bad_timestamp``,
        ``out_of_range`` or ``bad_value`` (not one of the allowed values).
    """
    if is_missing(value):
        if spec.required:
            raise RowError("missing_field", f"{spec.name} is empty")
        return None
    text = str(value).strip()
    if spec.type == "timestamp":
        return to_timestamp(text, spec.format, spec.name)
    if spec.type == "string":
        typed = text
    else:
        if isinstance(value, float) and spec.type == "int" and value.is_integer():
            text = str(int(value))  # Parquet/JSON may carry ints as floats.
        typed = _number(text, spec.type, spec.name)
        if (spec.min is not None and typed < spec.min) or (
                spec.max is not None and typed > spec.max):
            raise RowError("out_of_range", f"{spec.name}={value!r} outside "
                                           f"[{spec.min}, {spec.max}]")
    if spec.values and text not in spec.values and str(typed) not in spec.values:
        raise RowError("bad_value", f"{spec.name}={value!r} not in {list(spec.values)}")
    return typed


def convert(feature: F.Feature, value: Any) -> Any:
    """Validates one raw value and returns it typed for ``feature``.

    Args:
        feature: The registry record the value belongs to.
        value: The value as read (a CSV string, or a Parquet/JSON scalar).

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
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # A numeric code read as float is still the same id.
        return str(value).strip()
    number = _number(str(value).strip(), "float" if feature.dtype == "float32" else "int", column)
    low, high = feature.min_value, feature.max_value
    if feature.kind == F.Kind.FLAG:
        low, high = 0, 1  # Flags are 0/1 whatever the registry leaves unset.
    if (low is not None and number < low) or (high is not None and number > high):
        raise RowError("out_of_range", f"{column}={value!r} outside [{low}, {high}]")
    return number


def required_columns(table) -> List[str]:
    """Columns an input file's header must name; optional ones may be absent."""
    columns = [c.name for c in table.columns if c.required]
    if isinstance(table, ds.TableSpec):
        columns += [c for c in images.pattern_columns(table.image_path) if c not in columns
                    and "{" in (table.image_path or "")]
    return columns


class EventParser:
    """Validates an events row into {timestamp, user_id, item_id, event_type, kept columns}.

    Picklable, so Beam ships it to workers.
    """

    def __init__(self, dataset: ds.DatasetConfig):
        self._spec = dataset.events
        self._funnel = dataset.funnel_of
        self._kept = dataset.event_columns_kept()
        start, end = (dataset.events.time_range or (None, None))
        self._range = (None if start is None else timestamps.parse_timestamp(start),
                       None if end is None else timestamps.parse_timestamp(end))

    def __call__(self, row: Dict[str, Any]) -> Dict[str, Any]:
        spec = self._spec
        typed = {c.name: check_column(c, row.get(c.name)) for c in spec.columns}
        ts = typed[spec.timestamp]
        start, end = self._range
        if (start is not None and ts < start) or (end is not None and ts >= end):
            raise RowError("timestamp_out_of_range",
                           f"{spec.timestamp}={row.get(spec.timestamp)!r} outside the data "
                           f"set's time range {list(spec.time_range)}")
        out = {F.TIMESTAMP_KEY: ts, F.USER_KEY: typed[spec.user_id],
               F.ITEM_KEY: typed[spec.item_id]}
        if spec.event_type:
            raw_type = typed[spec.event_type]
            if raw_type is None:
                raise RowError("missing_field", f"{spec.event_type} is empty")
            stage = self._funnel.get(str(raw_type).lower())
            if stage is None:
                raise RowError("bad_event_type", f"{spec.event_type}={raw_type!r} not in "
                                                 f"{sorted(self._funnel)}")
        else:
            stage = spec.event_value
        out[EVENT_TYPE_KEY] = stage
        for column in self._kept:
            out[column] = "" if typed[column] is None else str(typed[column])
        return out


class TableParser:
    """Validates an items or users row into {registry name: typed value}.

    Items also keep ``image_path`` ('' when absent) for the image loader.
    """

    def __init__(self, dataset: ds.DatasetConfig, source: F.Source):
        registry = dataset.registry
        self._table = dataset.items if source == F.Source.ITEM else dataset.users
        self._source = source
        self._key = registry.item_key if source == F.Source.ITEM else registry.user_key
        self._features = table_features(registry, source)

    def __call__(self, row: Dict[str, Any]) -> Dict[str, Any]:
        typed = {c.name: check_column(c, row.get(c.name)) for c in self._table.columns}
        out = {self._key: convert(self._features[0], row.get(self._table.key))}
        for f in self._features[1:]:
            out[f.name] = convert(f, typed.get(f.source_column))
        if self._source == F.Source.ITEM:
            pattern = self._table.image_path
            out[IMAGE_PATH_KEY] = images.image_path(pattern, row) if pattern else ""
        return out


def table_features(registry: F.Registry, source: F.Source) -> Tuple[F.Feature, ...]:
    """Registry features read from a side table's own columns, key first."""
    embedding = registry.embedding_feature()
    # Joined from the embed stage's table, not read from the item file.
    derived = {embedding.name, HAS_IMAGE_KEY} if embedding is not None else set()
    key = registry.item_key if source == F.Source.ITEM else registry.user_key
    return (registry.by_name[key],) + tuple(
        f for f in registry.of_source(source) if f.name not in derived)


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

    def __init__(self, dataset: ds.DatasetConfig):
        super().__init__()
        self._parser = EventParser(dataset)

    def expand(self, records) -> Outputs:
        parsed = records | "Validate" >> beam.ParDo(_Validate(EVENTS, self._parser)).with_outputs(
            dl.DEAD_LETTER_TAG, main="main")
        return Outputs(parsed.main, parsed[dl.DEAD_LETTER_TAG])


class ParseTable(beam.PTransform):
    """(record, row) pairs → (key, validated row), one row per key, plus dead letters.

    Items rows carry ``image_path``; a second row with the same key is a
    ``duplicate_key`` dead letter.
    """

    def __init__(self, dataset: ds.DatasetConfig, source: F.Source):
        super().__init__()
        self._parser = TableParser(dataset, source)
        self._input = ITEMS if source == F.Source.ITEM else USERS
        registry = dataset.registry
        self._key = registry.item_key if source == F.Source.ITEM else registry.user_key

    def expand(self, records) -> Outputs:
        input_name, key = self._input, self._key
        parsed = records | "Validate" >> beam.ParDo(
            _Validate(input_name, self._parser)).with_outputs(dl.DEAD_LETTER_TAG, main="main")
        unique = (parsed.main
                  | "Key" >> beam.Map(lambda r: (r[key], r))
                  | "GroupByKey" >> beam.GroupByKey()
                  | "FirstOfKey" >> beam.FlatMap(lambda kv: _first_of_key(input_name, kv))
                  .with_outputs(dl.DEAD_LETTER_TAG, main="main"))
        dead = ((parsed[dl.DEAD_LETTER_TAG], unique[dl.DEAD_LETTER_TAG])
                | "FlattenDeadLetters" >> beam.Flatten())
        return Outputs(unique.main, dead)


def default_user(user_id: str, registry: F.Registry) -> Dict[str, Any]:
    """The user row for an id the users table lacks: registry defaults."""
    row: Dict[str, Any] = {registry.user_key: user_id}
    for f in table_features(registry, F.Source.USER)[1:]:
        row[f.name] = f.default
    return row


def csv_line(values: Iterable[Any]) -> str:
    """One CSV record (no terminator), quoting as needed, line breaks in values included."""
    values = list(values)
    texts = [v if type(v) is str else str(v) if type(v) is int else None for v in values]
    if None not in texts and (len(texts) > 1 or texts and texts[0]):
        line = ",".join(texts)
        # Nothing to quote (the writer quotes only these; one empty field is '""').
        if line.count(",") == len(texts) - 1 and not any(c in line for c in '"\r\n'):
            return line
    buf = io.StringIO()
    # The writer quotes only the line-end characters of its own terminator, so
    # it writes with "\r\n" (RFC 4180's) and the terminator is cut off after:
    # with "" a value holding a line break came out unquoted (found by fuzzing).
    csv.writer(buf, lineterminator="\r\n").writerow(list(values))
    return buf.getvalue()[:-2]

