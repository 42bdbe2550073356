"""A whole run config proposed from samples of a shop's tables: what ``shoprec init`` writes.

The roles of the event log's columns come from ``shoprec.core.infer``, the
item and user features from ``shoprec.core.infer_features``, the split,
robot filter and limits from ``shoprec.core.infer_log``. This module puts
them together: the raw schemas, the registry (ids, attributes, photo
embedding, history, point-in-time aggregates, labels), the model's tasks and
two towers, the recommend settings, and a note of evidence on each guess.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from shoprec.core import infer, infer_features, infer_log
from shoprec.core.infer import LABEL_OF, Hints, Undecided
from shoprec.core.infer_features import CATEGORY_WORDS
from shoprec.core.profile import ColumnProfile, name_tokens, parse_time, profiles, text_of

# Name words that make a categorical item feature a good target for the photo encoder.
PHOTO_WORDS = (frozenset({"colour", "color"}), CATEGORY_WORDS)
# The encoder learns attributes with this many classes.
PHOTO_CLASSES = (2, 150)
# Features of history lists over item attributes: at most this many attributes.
HISTORY_ATTRIBUTES = 2
# User categories of at most this many values are crossed with the item's category,
# at most this many of them.
CROSS_VALUES, CROSSES = 20, 2


@dataclasses.dataclass(frozen=True)
class Table:
    """A sampled table as ``shoprec.io.sample.TableSample`` holds it."""

    path: str  # as the config names it (relative to the data folder)
    columns: Tuple[str, ...]
    rows: Tuple[Dict[str, Any], ...]
    complete: bool


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the command line fixes, beside the data.

    Attributes:
        name: The data set's name.
        run_dir: The run root the config names.
        data_dir: The folder the input paths are relative to.
        format: The inputs' format.
        images: The photos' folder (relative to ``data_dir``, or absolute)
            and the image files under it, relative to it; None: no photos.
        epochs: Training epochs.
        encoder_steps: The photo encoder's training steps at least (None:
            its defaults).
        min_auc: The model gate's lowest eval AUC.
    """

    name: str
    run_dir: str
    data_dir: str
    format: str
    images: Optional[Tuple[str, Tuple[str, ...]]] = None
    epochs: int = 10
    encoder_steps: Optional[int] = None
    min_auc: float = 0.5


@dataclasses.dataclass
class Proposal:
    """A config (plain data), a note per guess (dotted key → evidence) and what to check."""

    config: Dict[str, Any]
    notes: Dict[str, str]
    checks: List[str]


def _schema(table: Mapping[str, ColumnProfile], complete: bool, roles: Mapping[str, Dict]
            ) -> Dict[str, Dict[str, Any]]:
    """{column: spec}: roles as given, the other columns typed as the sample shows."""
    out = {}
    for name, p in table.items():
        if name in roles:
            out[name] = roles[name]
            continue
        kind = {"int": "int" if complete else "float", "float": "float"}.get(p.kind, "string")
        spec: Dict[str, Any] = {"type": kind}
        if p.blanks or not complete:
            spec["required"] = False
        out[name] = spec
    return out


def _note_of_column(p: ColumnProfile) -> str:
    kind = {"code": "codes with leading zeros (kept as text)"}.get(p.kind, p.kind)
    blanks = f", {100 * p.share_blank():.1f}% blank" if p.blanks else ", never blank"
    return f"{kind}, {p.distinct:,} values{blanks}"


def _photo_targets(features: Sequence[Dict[str, Any]], table: Mapping[str, ColumnProfile]
                   ) -> List[str]:
    """Item columns the photo encoder learns to predict: the colour and the kind of thing
    with the most classes (else any categorical one)."""
    fits = sorted((f for f in features if f["kind"] == "categorical"
                   and PHOTO_CLASSES[0] <= table[f["column"]].distinct <= PHOTO_CLASSES[1]),
                  key=lambda f: -table[f["column"]].distinct)
    out = []
    for words in PHOTO_WORDS:
        named = [f["column"] for f in fits if words & set(name_tokens(f["column"]))
                 and f["column"] not in out]
        out += named[:1]
    return out or [f["column"] for f in fits[:2]]


def _categories(item_features: Sequence[Dict[str, Any]], table: Mapping[str, ColumnProfile]
                ) -> List[Dict[str, Any]]:
    """Categorical item features of 3 values or more: those named like a category first,
    then the most values first."""
    return sorted((f for f in item_features if f["kind"] == "categorical"
                   and table[f["column"]].distinct >= 3),
                  key=lambda f: (not CATEGORY_WORDS & set(name_tokens(f["column"])),
                                 -table[f["column"]].distinct))


def _derived(b: "_Builder", user_features: Sequence[Dict[str, Any]],
             users_p: Optional[Mapping[str, ColumnProfile]], category: Optional[Dict[str, Any]]
             ) -> List[Dict[str, Any]]:
    """Each numeric user feature in quantile buckets, and the user categories of a few
    values (the most values first) crossed with the item's category: tastes that differ
    by age group or region."""
    out = []
    for f in user_features:
        if f["kind"] == "numeric":
            out.append({"name": f"{f['name']}_bucket", "source": "derived",
                        "kind": "bucketized", "derived_from": [f["name"]], "num_buckets": 10,
                        "embedding_dim": 4})
            b.note(f"dataset.features.{f['name']}_bucket", "10 quantile buckets of train")
    small = sorted((f for f in user_features if f["kind"] == "categorical" and users_p
                    and 2 <= users_p[f["column"]].distinct <= CROSS_VALUES),
                   key=lambda f: -users_p[f["column"]].distinct)[:CROSSES]
    for f in small if category else ():
        name = f"{f['name']}_x_{category['name']}"
        out.append({"name": name, "source": "derived", "kind": "cross",
                    "derived_from": [f["name"], category["name"]], "hash_buckets": 1024,
                    "embedding_dim": 4})
        b.note(f"dataset.features.{name}", f"a taste per {f['column']} and "
               f"{category['column']}, hashed")
    return out


def _history(stages: Sequence[str], categories: Sequence[Dict[str, Any]], length: int
             ) -> List[Dict[str, Any]]:
    """History lists (items, then their most detailed categories), match counts and
    counts per funnel step."""
    lists = [{"name": "hist_item_ids", "source": "history", "kind": "history",
              "history_of": "item_id", "max_length": length, "vocabulary": "item_id"}]
    for f in categories[:HISTORY_ATTRIBUTES]:
        lists.append({"name": "hist_" + f["name"].replace("item_", "", 1), "source": "history",
                      "kind": "history", "history_of": f["name"], "max_length": length,
                      "vocabulary": f["name"]})
    matches = [{"name": f["name"].replace("_ids", "") + "_matches", "source": "history",
                "kind": "numeric", "history_of": f["history_of"], "log": True} for f in lists]
    counts = [{"name": f"hist_{_plural(stage)}", "source": "history", "kind": "numeric",
               "event_type": stage, "log": True} for stage in stages]
    return lists + matches + counts


def _plural(stage: str) -> str:
    return {"add_to_cart": "carts", "purchase": "purchases", "click": "clicks",
            "other": "others"}[stage]


def _aggregates(label_stages: Sequence[str], category: Optional[str], start: str
                ) -> List[Dict[str, Any]]:
    """The user's and the item's (and its category's) rates of each labelled step per
    example-starting event (``start``: an impression or a view), the item's counts, and the
    user's views of the day: all from events strictly before the example."""
    out = []
    for stage in label_stages:
        label = LABEL_OF[stage]
        out.append({"name": f"agg_user_{label}_rate", "source": "aggregate", "kind": "numeric",
                    "aggregate_key": ["user_id"], "event_type": stage, "ratio_to": start,
                    "smoothing": 20})
        out.append({"name": f"agg_item_{_plural(stage)}", "source": "aggregate",
                    "kind": "numeric", "aggregate_key": ["item_id"], "event_type": stage,
                    "log": True})
        if category:
            out.append({"name": f"agg_category_{label}_rate", "source": "aggregate",
                        "kind": "numeric", "aggregate_key": [category], "event_type": stage,
                        "ratio_to": start, "smoothing": 50})
    out.append({"name": "agg_user_clicks_1d", "source": "aggregate", "kind": "numeric",
                "aggregate_key": ["user_id"], "event_type": "click", "window_days": 1,
                "log": True})
    return out


class _Builder:
    """Collects the config, the notes and the checks while each part is inferred."""

    def __init__(self):
        self.notes: Dict[str, str] = {}
        self.checks: List[str] = []
        self.images_root = "."  # where image paths resolve, relative to data_dir

    def note(self, key: str, text: str, check: bool = False) -> None:
        self.notes[key] = text
        if check:
            self.checks.append(f"{key}: {text}")


def _rows_of(events: Table, roles: infer.Roles) -> Tuple[List[int], List[str], List[str],
                                                         List[str]]:
    """(times, users, items, funnel stages) of the rows whose timestamp parses."""
    stages = dict(roles.event_types)
    times, users, items, steps = [], [], [], []
    for row in events.rows:
        ts = parse_time(roles.timestamp_format, text_of(row.get(roles.timestamp)))
        if ts is None:
            continue
        times.append(ts)
        users.append(text_of(row.get(roles.user_id)))
        items.append(text_of(row.get(roles.item_id)))
        steps.append(roles.event_value or stages.get(text_of(row.get(roles.event_type)), "other"))
    return times, users, items, steps


def roles_of(events: Mapping[str, ColumnProfile], items: Optional[Table],
             items_p: Optional[Mapping[str, ColumnProfile]], users: Optional[Table],
             users_p: Optional[Mapping[str, ColumnProfile]], hints: Hints
             ) -> Tuple[infer.Roles, float]:
    """The log's roles, and the share of its rows whose item is in the items table.

    Raises:
        Undecided: a role the data cannot decide.
    """
    ts, fmt, ts_why = infer.timestamp_role(events, hints)
    item, item_key, known, item_why = infer.id_role(
        "item", events, items_p, items.path if items else "", [ts], hints.item_col)
    user, user_key, _, user_why = infer.id_role(
        "user", events, users_p, users.path if users else "", [ts, item], hints.user_col)
    column, mapping, value, event_why = infer.event_role(events, [ts, item, user], hints)
    return infer.Roles(ts, fmt, user, item, column, mapping, value, item_key, user_key,
                       {"timestamp": ts_why, "item_id": item_why, "user_id": user_why,
                        "event_type": event_why}), known


def propose(events: Table, items: Optional[Table], users: Optional[Table], hints: Hints,
            settings: Settings) -> Proposal:
    """The config ``shoprec init`` writes for these samples.

    Raises:
        Undecided: something the data cannot decide (the message names the
            flag that settles it).
    """
    infer_log.enough_events(len(events.rows), events.complete)
    ev = profiles(events.columns, events.rows)
    items_p = profiles(items.columns, items.rows) if items else None
    users_p = profiles(users.columns, users.rows) if users else None
    roles, known = roles_of(ev, items, items_p, users, users_p, hints)
    b = _Builder()
    times, user_ids, item_ids, steps = _rows_of(events, roles)
    infer_log.enough_events(len(times), events.complete)
    counts = infer_log.stage_counts(steps)
    mode, label_stages, mode_why = infer.label_mode(counts)
    dataset: Dict[str, Any] = {"name": settings.name, "labels": mode}
    b.note("dataset.labels", mode_why)

    # The event log: roles, schema, funnel, range.
    ts_spec = {"type": "timestamp", "format": roles.timestamp_format}
    role_specs = {roles.timestamp: ts_spec, roles.user_id: {"type": "string"},
                  roles.item_id: {"type": "string"}}
    if roles.event_type:
        role_specs[roles.event_type] = {"type": "string"}
    ev_spec: Dict[str, Any] = {"columns": _schema(ev, events.complete, role_specs),
                               "user_id": roles.user_id, "item_id": roles.item_id,
                               "timestamp": roles.timestamp, "event_type": roles.event_type}
    for name, p in ev.items():
        b.note(f"dataset.events.columns.{name}", _note_of_column(p))
    b.note("dataset.events.timestamp", roles.evidence["timestamp"], check=True)
    b.note("dataset.events.user_id", roles.evidence["user_id"], check=True)
    b.note("dataset.events.item_id", roles.evidence["item_id"], check=True)
    if roles.event_type:
        ev_spec["event_types"] = dict(roles.event_types)
        b.note("dataset.events.event_types", roles.evidence["event_type"], check=True)
    else:
        ev_spec["event_value"] = roles.event_value
        b.note("dataset.events.event_value", roles.evidence["event_type"], check=True)
    window, outside, range_why = infer_log.time_range(times)
    if window:
        ev_spec["time_range"] = [infer_log.iso(t, infer_log.DAY) for t in window]
        b.note("dataset.events.time_range", range_why, check=True)
    dataset["events"] = ev_spec

    # Items, users and their features.
    item_features, user_features, photo = _tables(b, dataset, ev, events, items, items_p,
                                                  users, users_p, roles, settings)
    dims = {}
    top = max(label_stages, key=lambda s: counts.get(s, 0))
    for key, values in (("user_id", user_ids), ("item_id", item_ids)):
        dims[key], why = infer_log.id_embedding_dim(counts.get(top, 0), len(set(values)),
                                                    LABEL_OF[top])
        b.note(f"dataset.features.{key}", why)
    features: List[Dict[str, Any]] = [
        {"name": "user_id", "source": "event", "kind": "id", "oov_buckets": 16,
         "embedding_dim": dims["user_id"]},
        {"name": "item_id", "source": "event", "kind": "id", "oov_buckets": 16,
         "embedding_dim": dims["item_id"]}]
    features += user_features + item_features + photo
    categories = _categories(item_features, items_p if items_p is not None else ev)
    features += _derived(b, user_features, users_p, categories[0] if categories else None)

    # History, aggregates, labels.
    history_stages = [s for s in ("click", "add_to_cart", "purchase", "other") if counts.get(s)]
    length, length_why = infer_log.history_length(user_ids)
    dataset["history"] = {"event_types": history_stages, "bucket_s": infer_log.DAY}
    features += _history(history_stages, categories, length)
    b.note("dataset.features.hist_item_ids", length_why)
    category = categories[0]["name"] if categories else None
    if mode != "sampled":
        start = "impression" if counts.get("impression") else "click"
        features += _aggregates(label_stages, category, start)
        b.note("dataset.features.agg_user_clicks_1d",
               "aggregates count events strictly before each example")
    else:
        b.note("dataset.features.hist_item_ids", length_why + "; no aggregates: with sampled "
               "negatives they learn the sampler, not the shop (docs/real_data.md)")
    labels = [{"name": LABEL_OF[s], "source": "event", "kind": "label", "event_type": s}
              for s in label_stages]
    for stage in label_stages:
        b.note(f"dataset.features.{LABEL_OF[stage]}",
               f"{counts.get(stage, 0):,} {stage} events in the sample")
    dataset["features"] = features + labels

    # Log policies.
    dup = infer_log.duplicate_share(events.rows)
    dataset["dedup"] = "quantity" if mode == "sampled" and dup else "dead_letter"
    b.note("dataset.dedup", f"{100 * dup:.2f}% of rows repeat an earlier row exactly" + (
        ": units of one purchase, counted" if dataset["dedup"] == "quantity" else
        ": duplicates, dead letters"))
    window_s, ceiling, robot_why = infer_log.robot_ceiling(user_ids, times)
    dataset["anomaly"] = {"window_s": window_s, "max_events": ceiling}
    b.note("dataset.anomaly", robot_why)
    dataset["quality"] = _quality(b, known, items is not None, outside / max(1, len(times)),
                                  dup if dataset["dedup"] == "dead_letter" else 0.0)
    inside = [t for t in times if window is None or window[0] <= t < window[1]]
    eval_start, test_start, split_why = infer_log.split(inside)
    if mode == "sampled":
        days = (max(times) - min(times)) // infer_log.DAY
        dataset["negatives"] = {"per_positive": 4,
                                "window_days": int(max(1, min(28, days // 4))), "seed": 13}
        b.note("dataset.negatives", "4 negatives per positive, drawn by popularity from the "
               "items bought in the window before its day")
    config = _run_sections(b, settings, events, items, users, dataset, label_stages, mode,
                           eval_start, test_start, photo, counts)
    b.note("ingest.eval_start", split_why, check=True)
    return Proposal(config, b.notes, b.checks)


def _quality(b: _Builder, known: float, has_items: bool, outside: float, dup: float
             ) -> Dict[str, Any]:
    """The dead-letter limits: 1% in all, and its own limit for each known property."""
    by_reason = {}
    if has_items and 1 - known > infer_log.NOTICEABLE:
        by_reason["unknown_item"] = infer_log.limit_for(1 - known)
        b.note("dataset.quality.max_bad_fraction_by_reason",
               f"{100 * (1 - known):.1f}% of the events' items are not in the items table: "
               "dead letters unknown_item", check=True)
    if outside > infer_log.NOTICEABLE:
        by_reason["timestamp_out_of_range"] = infer_log.limit_for(outside)
    if dup > infer_log.NOTICEABLE:
        by_reason["duplicate_event"] = infer_log.limit_for(dup)
    quality: Dict[str, Any] = {"max_bad_fraction": 0.01}
    if by_reason:
        quality["max_bad_fraction_by_reason"] = by_reason
    return quality


def _tables(b: _Builder, dataset: Dict[str, Any], ev, events: Table, items, items_p, users,
            users_p, roles: infer.Roles, settings: Settings):
    """Items and users sections of ``dataset``; (item features, user features, photo
    features)."""
    taken = [roles.timestamp, roles.user_id, roles.item_id, roles.event_type]
    if items is None:
        columns = infer_features.item_columns_of_events(ev, events.rows, roles.item_id, taken)
        attrs = infer_features.attributes({c: ev[c] for c in columns}, "item", (),
                                          events.complete)
        dataset["items"] = {"from_events": True}
        b.note("dataset.items", "no items table: each item's attributes are its most frequent "
               f"values in the log ({', '.join(columns) or 'none'})")
        item_table = ev
    else:
        image_skip, photo_key = _photo_column(b, items_p, roles.item_key, settings)
        attrs = infer_features.attributes(items_p, "item", [roles.item_key] + image_skip,
                                          items.complete)
        dataset["items"] = {"key": roles.item_key,
                            "columns": _schema(items_p, items.complete,
                                               {roles.item_key: {"type": "string"}})}
        for name, p in items_p.items():
            b.note(f"dataset.items.columns.{name}", _note_of_column(p))
        item_table = items_p
        if photo_key:
            dataset["items"]["image_path"] = photo_key
    item_features = _kept(b, attrs, "items")
    photo: List[Dict[str, Any]] = []
    if items is not None and dataset["items"].get("image_path"):
        targets = _photo_targets(item_features, item_table)
        if targets:
            photo = [{"name": "item_image_embedding", "source": "item", "kind": "embedding",
                      "width": 32},
                     {"name": "item_has_image", "source": "item", "kind": "flag"}]
            dataset["embed_attributes"] = targets
        else:
            del dataset["items"]["image_path"]
            b.checks.append("photos: no item attribute with 2 to 150 classes for the photo "
                            "encoder to learn: photos not used")
    user_features: List[Dict[str, Any]] = []
    if users is not None:
        attrs = infer_features.attributes(users_p, "user", [roles.user_key], users.complete)
        dataset["users"] = {"key": roles.user_key,
                            "columns": _schema(users_p, users.complete,
                                               {roles.user_key: {"type": "string"}})}
        for name, p in users_p.items():
            b.note(f"dataset.users.columns.{name}", _note_of_column(p))
        user_features = _kept(b, attrs, "users")
    return item_features, user_features, photo


def _kept(b: _Builder, attrs, table: str) -> List[Dict[str, Any]]:
    out = []
    for attribute in attrs:
        if attribute.feature is None:
            b.notes[f"dataset.{table}.columns.{attribute.column}"] = (
                b.notes.get(f"dataset.{table}.columns.{attribute.column}", "")
                + "; " + attribute.evidence).lstrip("; ")
            continue
        out.append(attribute.feature)
        b.note(f"dataset.features.{attribute.feature['name']}", attribute.evidence)
    return out


def _photo_column(b: _Builder, items_p, key: str, settings: Settings):
    """(item columns that are photo paths, to leave out; the image_path pattern or column)."""
    if settings.images is None:
        return [], None
    folder, files = settings.images
    paths = {name: list(p.texts) for name, p in items_p.items()
             if p.kind == "string" and any("." in t for t in p.texts[:50])}
    found, up, why = infer_features.photo_path(list(items_p[key].texts), files, key,
                                               folder.rstrip("/").split("/")[-1], paths)
    if found is None:
        raise Undecided(f"--images {folder}: {why}; name photos after the items' {key} "
                        "(e.g. <key>.jpg) or add a column with each photo's path")
    b.note("dataset.items.image_path", why, check=True)
    parent = folder.rstrip("/").rsplit("/", 1)[0] if "/" in folder.rstrip("/") else "."
    b.images_root = parent if up else folder
    return ([found] if found in items_p else []), found


def _run_sections(b: _Builder, settings: Settings, events: Table, items, users,
                  dataset: Dict[str, Any], label_stages, mode: str, eval_start: str,
                  test_start: Optional[str], photo, counts) -> Dict[str, Any]:
    """The whole config around ``dataset``: inputs, embed, ingest, model, training, ..."""
    embed_attributes = dataset.pop("embed_attributes", None)
    labels = [LABEL_OF[s] for s in label_stages]
    # The towers learn from the most frequent label; recommend is judged by it.
    positive = max(labels, key=lambda name: counts.get(
        next(s for s in label_stages if LABEL_OF[s] == name), 0))
    inputs = {"format": settings.format, "data_dir": settings.data_dir, "events": events.path,
              "items": items.path if items else None, "users": users.path if users else None,
              "images_root": b.images_root, "truth": None}
    config: Dict[str, Any] = {"run_dir": settings.run_dir, "inputs": inputs, "dataset": dataset}
    b.note("inputs", "the files init read; paths are relative to data_dir")
    if photo:
        embed: Dict[str, Any] = {"attributes": embed_attributes, "image_shape": [32, 32, 3],
                                 "min_class_count": 20 if len(items.rows) >= 2000 else 1}
        if settings.encoder_steps is not None:
            embed.update(epochs=1, min_steps=settings.encoder_steps)
        config["embed"] = embed
        b.note("embed.attributes", "item columns the photo encoder learns to tell from the "
               "photos (a colour and a kind of thing, 2 to 150 classes)")
    ingest: Dict[str, Any] = {"eval_start": eval_start, "test_start": test_start,
                              "num_shards": 2}
    config["ingest"] = ingest
    config["model"] = {
        "bottom_units": [64, 32], "tower_units": [16], "embedding_l2": 0.01, "dropout": 0.2,
        "tasks": [{"name": name, "label": name, "weight": 1.0} for name in labels],
        "retrieval": {"enabled": True, "positive_label": positive, "embedding_dim": 32,
                      "recall_at": [10, 50]}}
    b.note("model.retrieval", f"two towers learn from the {positive} examples; `shoprec "
           "recommend` retrieves with them")
    config["training"] = {"strategy": "auto", "per_replica_batch_size": 256,
                          "epochs": settings.epochs, "learning_rate": 0.003, "seed": 42,
                          "early_stopping": {"task": positive, "metric": "auc", "patience": 2}}
    b.note("training.early_stopping", f"id embeddings memorise a shop's few positives: stop "
           f"when eval {positive} AUC has not risen for 2 epochs, keep the best epoch")
    b.note("model.embedding_l2", "regularised for few positives per user and item")
    config["gate"] = {"min_auc": settings.min_auc, "max_auc_drop": 0.01}
    config["scoring"] = {"rank_by": f"p_{labels[-1]}", "batch_size": 4096}
    aggregates = mode != "sampled"
    blend = {"retrieval": 1.0} if mode == "impressions" else {"retrieval": 1.0,
                                                             f"p_{labels[-1]}": 1.0}
    # Every source reads the relevance label's events (no ``events`` key): the
    # one event type init knows a shop's funnel has.
    sources = [{"name": "two_tower", "quota": 50}, {"name": "repurchase", "quota": 20},
               {"name": "co_occurrence", "quota": 20}, {"name": "popular", "quota": 30,
                                                       "days": 7}]
    config["recommend"] = {"k": 10, "sources": sources, "blend": blend,
                           "relevance_label": positive, "popularity_days": 7,
                           "as_of": "end" if aggregates else "eval"}
    b.note("recommend.sources", f"candidates: the towers' nearest items, the user's own "
           f"{positive} items, items in the same day's baskets as theirs and the last 7 days' "
           "best-sellers; their union is ranked (docs/recommend.md)")
    if aggregates:
        b.note("recommend.as_of", "end: lists after each user's last event (production). The "
               "item aggregates are served as of the log's end, so lists judged at the eval "
               "start would see the eval window: to judge them, drop the agg_item_* and "
               "agg_category_* features and set as_of: eval")
    else:
        b.note("recommend.as_of", f"eval: lists as of {eval_start}, judged against the "
               f"{positive} events after it")
    return config
