"""The ingest job's cleaning and labelling done by hand in one process: its yardstick.

For the generated shop (CSV events, items and users, a photo embedding per
item, impression labels, no history), it computes what ``pipelines.ingest``
writes as raw examples: events validated (required fields, timestamps, the
funnel mapping; rows of the wrong width skipped), unknown items dropped,
identical events deduplicated, robot users' events from their first burst
on dropped, impressions labelled by the clicks and purchases that follow
(``pipelines.events.match_labels``), item and user attributes and the photo
embedding joined, split by time, encoded as tf.Examples and written as gzip
TFRecords. It refuses what it does not implement (:func:`check_supported`).

Columns are pyarrow arrays throughout; the only per-row Python is the label
matching of the (user, item) pairs that have a click or purchase, which is
inherently sequential, and the side tables (items, users, embeddings), parsed
row by row with ingest's own parsers because they are small. It holds the
whole log in memory: a limit for what one core can do, not a scalable job.
"""

from __future__ import annotations

import os
import time
from typing import Dict, List

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pacsv

from pipelines import examples as ex
from pipelines.events import match_labels
from pipelines.parse import HAS_IMAGE_KEY, IMAGE_PATH_KEY, TableParser, default_user
from shoprec.core import registry as F

SUFFIX = ".tfrecord.gz"
_ISO = "%Y-%m-%dT%H:%M:%SZ"
_ARROW = {"string": pa.binary(), "int64": pa.int64(), "float32": pa.float32()}


def check_supported(config) -> None:
    """Raises NotImplementedError for a data set this baseline cannot ingest."""
    data, registry = config.data, config.registry
    problems = []
    if config.inputs.format != "csv" or data.items.from_events:
        problems.append("CSV events, items and users files")
    if data.labels != "impressions" or registry.of_source(F.Source.HISTORY):
        problems.append("impression labels without history")
    if data.events.time_range or data.event_columns_kept() or data.dedup != "dead_letter":
        problems.append("no time range, no kept event columns, dedup by dead letter")
    if registry.embedding_feature() is None:
        problems.append("a photo embedding")
    if problems:
        raise NotImplementedError(f"the ingest baseline handles {'; '.join(problems)} only")


def _side_table(path: str, parser, key: str, counts: Dict[str, int], name: str) -> dict:
    """{key: parsed row} of a small table, with ingest's own row parser."""
    from pipelines.parse import RowError

    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        strings_can_be_null=False, column_types={}, auto_dict_encode=False))
    table = table.cast(pa.schema([(n, pa.string()) for n in table.column_names]))
    out: dict = {}
    for row in table.to_pylist():
        try:
            parsed = parser(row)
        except RowError as err:
            counts[f"dead_letter/{name}/{err.reason}"] = counts.get(
                f"dead_letter/{name}/{err.reason}", 0) + 1
            continue
        # The generator writes each key once; ingest keeps the smallest by JSON.
        out.setdefault(parsed[key], parsed)
    return out


def _embeddings(pattern: str, feature: F.Feature) -> dict:
    import tensorflow as tf

    out = {}
    files = sorted(tf.io.gfile.glob(pattern))
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
        row = ex.decode_embedding(record)
        out[row[ex.EMBED_ITEM_ID]] = {feature.name: row[ex.EMBED_VECTOR],
                                      HAS_IMAGE_KEY: row[ex.EMBED_HAS_IMAGE]}
    return out


def _timestamps(text: pa.Array) -> pa.Array:
    """Unix seconds of ISO-8601 (``...Z``) or all-digit unix-second strings; null if neither."""
    digits = pc.match_substring_regex(text, r"^\d+$")
    iso = pc.cast(pc.strptime(text, format=_ISO, unit="s", error_is_null=True), pa.int64())
    unix = pc.cast(pc.if_else(digits, text, pa.scalar(None, pa.string())), pa.int64())
    return pc.if_else(digits, unix, iso)


def clean_events(config, known_items, counts: Dict[str, int]) -> pa.Table:
    """The events file → validated, known-item, deduplicated, robot-free events."""
    data = config.data
    spec = data.events
    wrong = [0]

    def skip(_row):
        wrong[0] += 1
        return "skip"

    path = config.input_path(config.inputs.events)
    table = pacsv.read_csv(
        path, parse_options=pacsv.ParseOptions(invalid_row_handler=skip),
        convert_options=pacsv.ConvertOptions(
            column_types={c.name: pa.string() for c in spec.columns},
            strings_can_be_null=False))
    counts["dead_letter/events/wrong_column_count"] = wrong[0]
    counts["rows_read/events"] = table.num_rows + wrong[0]

    def drop(mask, reason):
        nonlocal table
        bad = int(pc.sum(mask).as_py() or 0)
        if bad:
            counts[f"dead_letter/events/{reason}"] = counts.get(
                f"dead_letter/events/{reason}", 0) + bad
        table = table.filter(pc.invert(mask))

    stripped = {c.name: pc.utf8_trim_whitespace(table[c.name]) for c in spec.columns}
    table = pa.table(stripped)
    missing = None
    for c in spec.columns:
        if c.required:
            empty = pc.equal(pc.utf8_length(table[c.name]), 0)
            missing = empty if missing is None else pc.or_(missing, empty)
    drop(missing, "missing_field")
    ts = _timestamps(table[spec.timestamp])
    table = table.append_column(F.TIMESTAMP_KEY + "_s", ts)
    drop(pc.is_null(table[F.TIMESTAMP_KEY + "_s"]), "bad_timestamp")
    funnel = dict(data.funnel_of)
    raw_types = pc.utf8_lower(table[spec.event_type])
    stage_index = pc.index_in(raw_types, pa.array(list(funnel)))
    table = table.append_column("_stage", pc.take(pa.array(list(funnel.values())),
                                                  pc.fill_null(stage_index, 0)))
    drop(pc.is_null(stage_index), "bad_event_type")
    counts["rows_valid/events"] = table.num_rows
    events = pa.table({F.TIMESTAMP_KEY: table[F.TIMESTAMP_KEY + "_s"],
                       F.USER_KEY: table[spec.user_id], F.ITEM_KEY: table[spec.item_id],
                       "event_type": table["_stage"]})
    table = events
    drop(pc.invert(pc.is_in(table[F.ITEM_KEY], pa.array(sorted(known_items)))), "unknown_item")

    keys = [F.TIMESTAMP_KEY, F.USER_KEY, F.ITEM_KEY, "event_type"]
    grouped = table.group_by(keys).aggregate([(F.TIMESTAMP_KEY, "count")])
    duplicates = table.num_rows - grouped.num_rows
    if duplicates:
        counts["dead_letter/events/duplicate_event"] = duplicates
    table = grouped.select(keys)

    window_s, max_events = data.anomaly.window_s, data.anomaly.max_events
    if max_events:
        buckets = pc.divide(table[F.TIMESTAMP_KEY], window_s)
        per_bucket = (pa.table({"u": table[F.USER_KEY], "b": buckets})
                      .group_by(["u", "b"]).aggregate([("b", "count")]))
        robotic = per_bucket.filter(pc.greater(per_bucket["b_count"], max_events))
        start = robotic.group_by("u").aggregate([("b", "min")])
        index = pc.index_in(table[F.USER_KEY], start["u"])
        from_ts = pc.multiply(pc.take(start["b_min"], index), window_s)
        drop(pc.fill_null(pc.greater_equal(table[F.TIMESTAMP_KEY], from_ts), False),
             "robot_user")
    return table


def label(config, events: pa.Table, counts: Dict[str, int]) -> pa.Table:
    """Clean events → one (user, item, timestamp, click, conversion) row per impression."""
    funnel = events.filter(pc.is_in(events["event_type"],
                                    pa.array(["impression", "click", "purchase"])))
    pair = pc.binary_join_element_wise(funnel[F.USER_KEY], funnel[F.ITEM_KEY], "\x00")
    funnel = funnel.append_column("_pair", pair)
    acted = pc.not_equal(funnel["event_type"], "impression")
    acted_pairs = pc.unique(pc.filter(pair, acted))
    in_acted = pc.is_in(pair, acted_pairs)
    # Pairs with impressions only: every impression is an unclicked example.
    quiet = funnel.filter(pc.invert(in_acted))
    n = quiet.num_rows
    parts = [pa.table({F.USER_KEY: quiet[F.USER_KEY], F.ITEM_KEY: quiet[F.ITEM_KEY],
                       F.TIMESTAMP_KEY: quiet[F.TIMESTAMP_KEY],
                       "click": pa.array(np.zeros(n, np.int64)),
                       "conversion": pa.array(np.zeros(n, np.int64))})]
    busy = funnel.filter(in_acted).sort_by([("_pair", "ascending")])
    users, items = busy[F.USER_KEY].to_pylist(), busy[F.ITEM_KEY].to_pylist()
    times, kinds = busy[F.TIMESTAMP_KEY].to_pylist(), busy["event_type"].to_pylist()
    pairs = busy["_pair"].to_pylist()
    rows: Dict[str, List] = {k: [] for k in (F.USER_KEY, F.ITEM_KEY, F.TIMESTAMP_KEY,
                                             "click", "conversion")}
    start = 0
    window_c, window_p = config.ingest.click_window_s, config.ingest.conversion_window_s
    for end in range(1, len(pairs) + 1):
        if end < len(pairs) and pairs[end] == pairs[start]:
            continue
        labelled, orphans = match_labels(list(zip(times[start:end], kinds[start:end])),
                                         window_c, window_p)
        for example in labelled:
            rows[F.USER_KEY].append(users[start])
            rows[F.ITEM_KEY].append(items[start])
            rows[F.TIMESTAMP_KEY].append(example[F.TIMESTAMP_KEY])
            rows["click"].append(example["click"])
            rows["conversion"].append(example["conversion"])
        for _, kind in orphans:
            key = f"dead_letter/events/orphan_{kind}"
            counts[key] = counts.get(key, 0) + 1
        start = end
    parts.append(pa.table({k: pa.array(v, parts[0][k].type) for k, v in rows.items()}))
    return pa.concat_tables(parts)


def join(config, labelled: pa.Table, items: dict, users: dict) -> Dict[str, pa.Array]:
    """Labelled rows → {raw example column: values}, item and user attributes joined."""
    registry = config.registry
    columns: Dict[str, pa.Array] = {}
    for source, table, key, take_from in (
            (F.Source.ITEM, items, F.ITEM_KEY, labelled[F.ITEM_KEY]),
            (F.Source.USER, users, F.USER_KEY, labelled[F.USER_KEY])):
        keys = sorted(table)
        index = pc.index_in(take_from, pa.array(keys))
        names = [f.name for f in registry.of_source(source)]
        if source == F.Source.USER:
            # A user the table lacks gets the registry defaults: one extra row.
            keys.append(None)
            index = pc.fill_null(index, len(keys) - 1)
        for name in names:
            feature = registry.by_name[name]
            values = [(table[k] if k is not None else default_user("", registry))[name]
                      for k in keys]
            if feature.kind == F.Kind.EMBEDDING:
                array = pa.array(values, pa.list_(pa.float32()))
            else:
                array = pa.array([v.encode() if isinstance(v, str) else v for v in values],
                                 _ARROW[feature.dtype])
            columns[name] = pc.take(array, index)
    columns[registry.user_key] = pc.cast(labelled[F.USER_KEY], pa.binary())
    columns[registry.item_key] = pc.cast(labelled[F.ITEM_KEY], pa.binary())
    by_event = {f.event_type: f.name for f in registry.labels()}
    columns[by_event["click"]] = labelled["click"]
    columns[by_event["purchase"]] = labelled["conversion"]
    columns[F.TIMESTAMP_KEY] = labelled[F.TIMESTAMP_KEY]
    columns[registry.sampled_key] = pa.array(np.zeros(labelled.num_rows, np.int64))
    return columns


def _as_lists(array: pa.Array) -> pa.Array:
    """Scalars → length-1 lists (tf.Example features); lists stay lists."""
    array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    if pa.types.is_list(array.type):
        return array
    offsets = pa.array(np.arange(len(array) + 1, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, array)


def write(columns: Dict[str, pa.Array], split_of: np.ndarray, splits, out_dir: str,
          spec) -> Dict[str, int]:
    """Encodes rows as tf.Examples (tfx_bsl's C++ encoder) into one gzip file per split."""
    import tensorflow as tf
    from tensorflow_transform.tf_metadata import schema_utils
    from tfx_bsl.coders import example_coder

    encoder = example_coder.RecordBatchToExamplesEncoder(
        schema_utils.schema_from_feature_spec(spec))
    names = sorted(spec)
    os.makedirs(out_dir, exist_ok=True)
    rows = {}
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    for i, split in enumerate(splits):
        keep = np.flatnonzero(split_of == i)
        rows[split] = len(keep)
        with tf.io.TFRecordWriter(os.path.join(out_dir, split + SUFFIX), options) as writer:
            for lo in range(0, len(keep), 8192):
                index = pa.array(keep[lo:lo + 8192])
                batch = pa.RecordBatch.from_arrays(
                    [_as_lists(pc.take(columns[n], index)) for n in names], names)
                for record in encoder.encode(batch):
                    writer.write(record)
    return rows


def ingest(config, out_dir: str) -> dict:
    """Runs the baseline: raw examples per split in ``out_dir``, counts and phase times."""
    check_supported(config)
    registry, data = config.registry, config.data
    phases, counts = {}, {}
    start = time.perf_counter()
    embedding = registry.embedding_feature()
    vectors = _embeddings(config.layout.item_embeddings_pattern, embedding)
    zero = {embedding.name: [0.0] * embedding.width, HAS_IMAGE_KEY: 0}
    items = {}
    for key, row in _side_table(config.input_path(config.inputs.items),
                                TableParser(data, F.Source.ITEM), registry.item_key,
                                counts, "items").items():
        merged = {k: v for k, v in row.items() if k != IMAGE_PATH_KEY}
        merged.update(vectors.get(key, zero))
        items[key] = merged
    users = _side_table(config.input_path(config.inputs.users),
                        TableParser(data, F.Source.USER), registry.user_key, counts, "users")
    phases["side_tables"] = time.perf_counter() - start
    t = time.perf_counter()
    events = clean_events(config, items, counts)
    phases["clean"] = time.perf_counter() - t
    t = time.perf_counter()
    labelled = label(config, events, counts)
    phases["label"] = time.perf_counter() - t
    t = time.perf_counter()
    columns = join(config, labelled, items, users)
    eval_ts, test_ts = config.split_starts
    ts = labelled[F.TIMESTAMP_KEY].to_numpy()
    split_of = np.where(ts < eval_ts, 0, np.where(test_ts is None or ts < (test_ts or 0), 1, 2))
    phases["join"] = time.perf_counter() - t
    t = time.perf_counter()
    rows = write(columns, split_of, list(config.splits), out_dir, raw_spec(registry))
    phases["write"] = time.perf_counter() - t
    return {"seconds": time.perf_counter() - start, "rows": rows, "counts": counts,
            "events": counts["rows_read/events"], "phases": phases}


def raw_spec(registry) -> dict:
    """What a raw example carries: the registry's raw features, its timestamp and flag."""
    import tensorflow as tf

    spec = dict(registry.raw_feature_spec())
    spec[F.TIMESTAMP_KEY] = tf.io.FixedLenFeature([], tf.int64)
    spec[registry.sampled_key] = tf.io.FixedLenFeature([], tf.int64)
    return spec
