"""The event log as Arrow record batches: read, validated with masks, known items only.

Ingest's hot path moves batches of events, not one element per event: Beam's
per-element machinery (bundle processing, windowed values, counters), not
the checks themselves, was most of what a row cost (docs/scale.md).

* :class:`ReadEventBatches`: CSV files, each read whole by one worker
  (RFC 4180: quoted line breaks, ``shoprec.io.tables``' reader and its dead
  letters; Arrow's parser, block by block, up to the first block with a
  quote, :func:`_arrow_csv`),
  JSON lines and Parquet (Beam's batched reader) → :class:`EventBatch`
  elements of up to :data:`BATCH_ROWS` rows.
* :class:`BatchValidator`: the checks of :class:`pipelines.parse.EventParser` as
  vectorised masks over a batch. A row the masks cannot pass for certain
  (a failing value, or one in a form the masks do not decide, such as a
  ``strptime`` timestamp) goes through ``EventParser`` itself, so every
  failing row is a dead letter with the row path's reason, detail and
  record, and a row the parser passes is kept.
* :class:`ValidEvents`: batches → clean event tables (``timestamp``,
  ``user_id``, ``item_id``, ``event_type``, kept columns) with the items the
  catalogue lacks dead-lettered as ``unknown_item``.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pacsv
from apache_beam.io import fileio

from pipelines import dead_letter as dl
from pipelines.events import event_record
from pipelines.outputs import Outputs
from pipelines.parse import EVENTS, EVENT_TYPE_KEY, EventParser, RowError
from shoprec.core import dataset as ds
from shoprec.core import registry as F
from shoprec.core import timestamps
from shoprec.core.errors import UserError
from shoprec.io import tables

BATCH_ROWS = 8192
# Arrow parses a CSV file in blocks of about this many bytes, each cut at a line
# break: a worker holds one block, not the file (a file is one worker's, however large).
BLOCK_BYTES = 2 << 20
# The forms the masks decide, each parsed alike by Arrow and Python; any other
# (unicode digits or spaces, 20-digit numbers, leap seconds, ...) goes to the row parser.
_PRINTABLE = r"^[ -~]*$"
_DIGITS = r"^-?[0-9]{1,18}$"
_FLOAT = r"^-?([0-9]{1,15}\.?[0-9]{0,15}|\.[0-9]{1,15})([eE][+-]?[0-9]{1,2})?$"
_ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_ISO_Z = (r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
          r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z$")


class EventBatch(NamedTuple):
    """Up to :data:`BATCH_ROWS` raw event rows of one input.

    ``table`` holds the values as read (None: they did not fit one Arrow
    type per column, e.g. JSON lines mixing strings and numbers); ``rows``
    the row dicts where Arrow would not give them back as read (JSON lines);
    ``records`` each row's dead-letter record (None: built only for a
    failing row, its cells joined by commas where ``joined``, a CSV file
    with no quotes, else its JSON form, Parquet's record).
    """

    records: Optional[List[str]]
    table: Optional[pa.RecordBatch]
    rows: Optional[List[Dict[str, Any]]]
    joined: bool = False

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else self.table.num_rows

    def row(self, i: int) -> Dict[str, Any]:
        """Row ``i`` as the row reader yields it."""
        if self.rows is not None:
            return self.rows[i]
        return self.table.slice(i, 1).to_pylist()[0]

    def record(self, i: int) -> str:
        if self.records is not None:
            return self.records[i]
        if self.joined:
            return ",".join(self.row(i).values())
        return tables.parquet_record(self.row(i))


def _table(columns: Dict[str, List[Any]]) -> Optional[pa.RecordBatch]:
    try:
        return pa.RecordBatch.from_pydict(columns)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None


def batches(table: pa.Table) -> Iterator[pa.RecordBatch]:
    """``table`` in record batches of up to :data:`BATCH_ROWS` rows, each holding its own rows.

    ``Table.to_batches`` gives slices that share the table's buffers, and a
    slice is pickled with its parent's buffers whole: each batch of a CSV
    block or Parquet file crossed the shuffle after the read (``SpreadBatches``)
    as the whole block or file — measured, an 8,192-row batch of a 1M-row table
    pickled to 41 MB, its own rows 0.3 MB — and the worker reading it held all
    of that. ``concat_arrays`` of one slice copies just its rows.
    """
    for batch in table.to_batches(BATCH_ROWS):
        yield pa.RecordBatch.from_arrays([pa.concat_arrays([column]) for column in batch.columns],
                                         schema=batch.schema)


class _ReadCsvBatches(beam.DoFn):
    """A matched CSV file → EventBatches; blank lines counted, bad records dead-lettered."""

    def __init__(self, header: Sequence[str]):
        self._header = list(header)

    def process(self, readable_file):
        blank = beam.metrics.Metrics.counter(dl.NAMESPACE, f"blank_lines/{EVENTS}")
        read = beam.metrics.Metrics.counter(dl.NAMESPACE, f"rows_read/{EVENTS}")
        with readable_file.open() as f:  # .gz/.bz2 decompressed by extension
            blocks = _Blocks(f, BLOCK_BYTES)
            first = True
            for block in blocks:
                parsed = _arrow_csv(block, self._header, first)
                if parsed is None:
                    # Every line break before this block ended a record (no quotes
                    # so far): the row reader takes over here, after a header line.
                    head = b"" if first else (",".join(self._header) + "\n").encode()
                    yield from self._rows(_Chained(head + block + blocks.rest, f), blank, read)
                    return
                first = False
                table, bad, blanks = parsed
                if blanks:
                    blank.inc(blanks)
                if table.num_rows + len(bad):
                    read.inc(table.num_rows + len(bad))
                for row in bad:
                    yield dl.tagged(EVENTS, row.reason, row.detail, row.record)
                for batch in batches(table):
                    yield EventBatch(None, batch, None, joined=True)

    def _rows(self, f, blank, read):
        header = self._header
        records: List[str] = []
        rows: List[List[str]] = []

        def batch():
            columns = zip(*rows)
            return EventBatch(list(records), pa.RecordBatch.from_arrays(
                [pa.array(c, pa.string()) for c in columns], header), None)

        for row in tables.csv_file_cells(f, header):
            if row is None:
                blank.inc()
                continue
            read.inc()
            if isinstance(row, tables.BadRow):
                yield dl.tagged(EVENTS, row.reason, row.detail, row.record)
                continue
            records.append(row[0])
            rows.append(row[1])
            if len(records) == BATCH_ROWS:
                yield batch()
                records.clear()
                rows.clear()
        if records:
            yield batch()


class _Blocks:
    """A file's bytes in blocks of about ``size``, each ending at a line break (the last at
    the end of the file); ``rest``: what was read past the last block given out."""

    def __init__(self, f, size: int):
        self._f, self._size = f, size
        self.rest = b""

    def __iter__(self) -> Iterator[bytes]:
        while True:
            data = self._f.read(self._size)
            if not data:
                if self.rest:
                    block, self.rest = self.rest, b""
                    yield block
                return
            data = self.rest + data
            cut = data.rfind(b"\n") + 1
            # A line longer than a block: read on until it ends.
            block, self.rest = data[:cut], data[cut:]
            if block:
                yield block


class _Chained:
    """Bytes already read, then the rest of a file: what the row reader reads."""

    def __init__(self, head: bytes, rest):
        self._head = head
        self._rest = rest

    def read(self, n: int) -> bytes:
        if self._head:
            out, self._head = self._head[:n], self._head[n:]
            return out
        return self._rest.read(n)


def _arrow_csv(data: bytes, header: Sequence[str], first: bool = True):
    """A block of a CSV file read by Arrow's parser where it reads it as the row reader does.

    That is a block with no quote, carriage return or NUL, and, the file's
    first block (``first``), no byte-order mark and a header line first:
    every record is one line, its cells split at commas. Anything else (and
    text that is not UTF-8) is for the row reader (``shoprec.io.tables``),
    which knows RFC 4180's quoted fields and how each bad record is reported.
    A later block starts after a line break (its blank lines are counted
    from there) and has no header.

    Returns:
        (table of text columns, BadRow per record of the wrong width, blank
        lines), or None: the rest of the file, from this block, is for the row reader.
    """
    if len(header) < 2 or any(c in data for c in (b'"', b"\r", b"\x00")) or \
            (first and data.startswith((b"\xef\xbb\xbf", b"\n"))):
        return None
    bad, blanks = [], [len(re.findall(b"(?<=\n)(?=\n)", data if first else b"\n" + data))]

    def invalid(row):
        if not row.text.strip():
            blanks[0] += 1  # Spaces only: the row reader's blank line.
        else:
            bad.append(tables.BadRow("wrong_column_count", f"{row.actual_columns} columns, "
                                     f"header has {len(header)}", row.text))
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(column_names=list(header), skip_rows=int(first)),
            parse_options=pacsv.ParseOptions(invalid_row_handler=invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=False, quoted_strings_can_be_null=False))
    except pa.ArrowInvalid:
        return None  # Not UTF-8: the row reader dead-letters the lines that are not.
    return table, bad, blanks[0]


class _JsonBatches(beam.DoFn):
    """Batches of JSON lines → EventBatches; blank lines counted, bad ones dead-lettered."""

    def process(self, lines: List[str]):
        records, rows = [], []
        for line in lines:
            if not line.strip():
                beam.metrics.Metrics.counter(dl.NAMESPACE, f"blank_lines/{EVENTS}").inc()
                continue
            try:
                record, row = tables.json_row(line)
            except tables.BadRow as bad:
                yield dl.tagged(EVENTS, bad.reason, bad.detail, bad.record)
                continue
            records.append(record)
            rows.append(row)
        beam.metrics.Metrics.counter(dl.NAMESPACE, f"rows_read/{EVENTS}").inc(
            len(lines) - sum(1 for line in lines if not line.strip()))
        if rows:
            names = list(dict.fromkeys(k for row in rows for k in row))
            yield EventBatch(records, _table({n: [r.get(n) for r in rows] for n in names}), rows)


def _parquet_batches(table: pa.Table) -> Iterator[EventBatch]:
    beam.metrics.Metrics.counter(dl.NAMESPACE, f"rows_read/{EVENTS}").inc(table.num_rows)
    for batch in batches(table):
        yield EventBatch(None, batch, None)


class ReadEventBatches(beam.PTransform):
    """An events input (CSV, JSON lines, Parquet) → EventBatches, plus read dead letters.

    The reasons and counters of :class:`pipelines.read.ReadTable`; CSV files
    are read whole, one worker each, and the batches reshuffled after.
    """

    def __init__(self, pattern: str, file_format: str, required: Sequence[str] = ()):
        super().__init__()
        try:
            self._columns = tables.columns(pattern, file_format, required)
        except UserError as err:
            raise type(err)(f"{EVENTS} input: {err}") from err
        self._pattern = pattern
        self._format = file_format

    def expand(self, pbegin) -> Outputs:
        if self._format == "parquet":
            batches = (pbegin
                       | "ReadParquet" >> beam.io.ReadFromParquetBatched(self._pattern,
                                                                          validate=False)
                       | "ToBatches" >> beam.FlatMap(_parquet_batches))
            # Parquet enforces its schema, so reading never rejects a row.
            return Outputs(batches, pbegin | "NoDeadLetters" >> beam.Create([]))
        if self._format == "csv":
            parsed = (pbegin
                      | "MatchFiles" >> fileio.MatchFiles(self._pattern)
                      | "ReadMatches" >> fileio.ReadMatches()
                      | "ParseCsv" >> beam.ParDo(_ReadCsvBatches(self._columns))
                      .with_outputs(dl.DEAD_LETTER_TAG, main="main"))
            # One worker reads a file; its batches fan out from here.
            return Outputs(parsed.main | "SpreadBatches" >> beam.Reshuffle(),
                           parsed[dl.DEAD_LETTER_TAG])
        parsed = (pbegin
                  | "ReadLines" >> beam.io.ReadFromText(self._pattern, validate=False)
                  | "Batch" >> beam.BatchElements(min_batch_size=BATCH_ROWS,
                                                  max_batch_size=BATCH_ROWS)
                  | "ParseJson" >> beam.ParDo(_JsonBatches()).with_outputs(
                      dl.DEAD_LETTER_TAG, main="main"))
        return Outputs(parsed.main, parsed[dl.DEAD_LETTER_TAG])


def _text(array: pa.Array) -> Tuple[Optional[pa.Array], Optional[pa.Array]]:
    """(a column as trimmed text, mask of printable ASCII values), or (None, None)
    where the masks do not decide its type.

    Printable ASCII only: there Python's ``str.strip``/``lower`` and Arrow's agree.
    """
    if pa.types.is_integer(array.type):
        array = pc.cast(array, pa.string())
    elif pa.types.is_null(array.type):
        array = pa.nulls(len(array), pa.string())
    elif pa.types.is_large_string(array.type):
        array = pc.cast(array, pa.string())
    elif not pa.types.is_string(array.type):
        return None, None
    printable = pc.fill_null(pc.match_substring_regex(array, _PRINTABLE), True)
    return pc.utf8_trim_whitespace(array), printable


def _column(spec: ds.ColumnSpec, text: pa.Array) -> Tuple[Optional[pa.Array], pa.Array]:
    """(typed values or None, mask of rows the masks pass) of one schema column."""
    missing = pc.fill_null(pc.equal(text, ""), True)
    present = pc.invert(missing)
    if spec.type == "timestamp":
        if spec.format not in ("auto", "unix_s"):
            return None, pc.and_(missing, pa.scalar(not spec.required))
        digits = pc.fill_null(pc.match_substring_regex(text, _DIGITS), False)
        unix = pc.cast(pc.if_else(digits, text, pa.scalar(None, pa.string())), pa.int64())
        if spec.format == "auto":
            iso = pc.fill_null(pc.match_substring_regex(text, _ISO_Z), False)
            parsed = pc.strptime(pc.if_else(iso, text, pa.scalar(None, pa.string())),
                                 format=_ISO_FORMAT, unit="s", error_is_null=True)
            # Arrow rolls 30 February over into March; Python refuses it: only a
            # time that prints back as its text is the one Python would read.
            same = pc.equal(pc.strftime(parsed, format=_ISO_FORMAT), text)
            parsed = pc.if_else(pc.fill_null(same, False), pc.cast(parsed, pa.int64()),
                                pa.scalar(None, pa.int64()))
            typed = pc.if_else(digits, unix, parsed)
        else:
            typed = unix
        ok = pc.is_valid(typed)
    elif spec.type == "string":
        typed, ok = text, present
    else:
        pattern = _DIGITS if spec.type == "int" else _FLOAT
        ok = pc.fill_null(pc.match_substring_regex(text, pattern), False)
        typed = pc.cast(pc.if_else(ok, text, pa.scalar(None, pa.string())),
                        pa.int64() if spec.type == "int" else pa.float64())
        if spec.type == "float":
            ok = pc.and_(ok, pc.fill_null(pc.is_finite(typed), False))
        for bound, compare in ((spec.min, pc.greater_equal), (spec.max, pc.less_equal)):
            if bound is not None:
                ok = pc.and_(ok, pc.fill_null(compare(typed, bound), False))
    if spec.values:
        if spec.type != "string":
            return None, pc.and_(missing, pa.scalar(not spec.required))
        ok = pc.and_(ok, pc.fill_null(pc.is_in(text, pa.array(list(spec.values))), False))
    # A missing optional value passes as None; a missing required one goes to the parser.
    ok = pc.if_else(missing, pa.scalar(not spec.required), ok)
    return pc.if_else(missing, pa.scalar(None, typed.type), typed), ok


class BatchValidator:
    """:class:`pipelines.parse.EventParser`'s checks over an :class:`EventBatch`.

    Picklable, so Beam ships it to workers.
    """

    def __init__(self, dataset: ds.DatasetConfig):
        self._parser = EventParser(dataset)
        self._spec = dataset.events
        self._funnel = dict(dataset.funnel_of)
        self._kept = dataset.event_columns_kept()
        start, end = dataset.events.time_range or (None, None)
        self._range = (None if start is None else timestamps.parse_timestamp(start),
                       None if end is None else timestamps.parse_timestamp(end))
        self.schema = pa.schema([(F.TIMESTAMP_KEY, pa.int64()), (F.USER_KEY, pa.string()),
                                 (F.ITEM_KEY, pa.string()), (EVENT_TYPE_KEY, pa.string())]
                                + [(c, pa.string()) for c in self._kept])

    def _masked(self, batch: EventBatch) -> Tuple[Optional[pa.Table], pa.Array]:
        """(the events the masks pass, typed; the mask), or (None, all false)."""
        n, spec, table = len(batch), self._spec, batch.table
        nothing = pa.array([False] * n)
        if table is None:
            return None, nothing
        typed, ok = {}, pa.array([True] * n)
        for column in spec.columns:
            if column.name in table.schema.names:
                text, printable = _text(table.column(column.name))
            else:
                text, printable = _text(pa.nulls(n, pa.string()))
            if text is None:
                return None, nothing
            values, passed = _column(column, text)
            if values is None:
                return None, nothing
            typed[column.name] = values
            ok = pc.and_(ok, pc.and_(passed, printable))
        ts = typed[spec.timestamp]
        start, end = self._range
        for bound, compare in ((start, pc.greater_equal), (end, pc.less)):
            if bound is not None:
                ok = pc.and_(ok, pc.fill_null(compare(ts, bound), False))
        if spec.event_type:
            raw = typed[spec.event_type]
            index = pc.index_in(pc.utf8_lower(raw), pa.array(list(self._funnel)))
            ok = pc.and_(ok, pc.is_valid(index))
            stage = pc.take(pa.array(list(self._funnel.values()), pa.string()), index)
        else:
            stage = pa.array([spec.event_value] * n, pa.string())
        columns = [ts, typed[spec.user_id], typed[spec.item_id], stage]
        for name in self._kept:
            values = typed[name]
            if pa.types.is_floating(values.type):
                return None, nothing  # str(float) is Python's: the parser's job
            columns.append(pc.fill_null(pc.cast(values, pa.string()), ""))
        out = pa.Table.from_arrays([pc.cast(c, f.type) for c, f in zip(columns, self.schema)],
                                   schema=self.schema)
        return out, ok

    def __call__(self, batch: EventBatch) -> Tuple[pa.Table, List[Tuple[str, RowError]]]:
        """(the valid events, typed as ``EventParser`` types them; (record, error) per bad row)."""
        table, ok = self._masked(batch)
        kept = table.filter(ok) if table is not None else None
        rows, bad = [], []
        for i in pc.indices_nonzero(pc.invert(ok)).to_pylist():
            try:
                event = self._parser(batch.row(i))
                ts = event[F.TIMESTAMP_KEY]
                if not -(1 << 63) <= ts < 1 << 63:
                    # The row path failed later, writing it (tf.Example and Parquet: int64).
                    raise RowError("bad_timestamp", f"{self._spec.timestamp}={ts!r} is "
                                                    f"outside 64-bit unix seconds")
                rows.append(event)
            except RowError as err:
                bad.append((batch.record(i), err))
        if rows:
            parsed = pa.Table.from_pylist(rows, schema=self.schema)
            kept = parsed if kept is None else pa.concat_tables([kept, parsed])
        return (kept if kept is not None else self.schema.empty_table()), bad


class ValidEvents(beam.PTransform):
    """EventBatches → clean event tables; bad rows and unknown items as dead letters.

    Args:
        dataset: The data set (schema, funnel, time range).
        items: (item_id, item row) of the catalogue; every worker holds its
            ids (the catalogue side input, ``pipelines.side_inputs``).
    """

    def __init__(self, dataset: ds.DatasetConfig, items: beam.PCollection):
        super().__init__()
        self._validator = BatchValidator(dataset)
        self._items = items

    def expand(self, batches) -> Outputs:
        # Every worker holds the catalogue's ids only, not its rows.
        ids = self._items | "ItemColumns" >> beam.MapTuple(lambda item_id, _: (item_id, None))
        out = batches | "Check" >> beam.ParDo(_Check(self._validator), known=beam.pvalue.AsDict(
            ids)).with_outputs(dl.DEAD_LETTER_TAG, main="main")
        return Outputs(out.main, out[dl.DEAD_LETTER_TAG])


class _Check(beam.DoFn):
    """An EventBatch → its valid events of known items; the rest dead letters."""

    def __init__(self, validator: BatchValidator):
        self._validator = validator
        self._known = (None, None)  # (the side input's dict, its ids as an Arrow array)

    def process(self, batch: EventBatch, known):
        if self._known[0] is not known:
            self._known = (known, pa.array(list(known), pa.string()))
        events, bad = self._validator(batch)
        for record, err in bad:
            yield dl.tagged(EVENTS, err.reason, err.detail, record)
        beam.metrics.Metrics.counter(dl.NAMESPACE, f"rows_valid/{EVENTS}").inc(events.num_rows)
        found = pc.is_in(events[F.ITEM_KEY], self._known[1])
        for event in events.filter(pc.invert(found)).to_pylist():
            yield dl.tagged(EVENTS, "unknown_item",
                            f"item_id {event[F.ITEM_KEY]!r} is not a valid item",
                            event_record(event))
        if events.num_rows:
            yield events.filter(found)
