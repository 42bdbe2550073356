"""Which columns of an event log play which role, from what the columns hold.

``shoprec init`` reads a sample of each table and asks here which column is
the timestamp (and in which format), the user id and the item id (by the
overlap of their values with the users' and items' keys where those tables
are given, else by name), the event type and how its values map to our
funnel, and from that the label mode. Each answer carries its evidence (one
line a config comment can hold). Where the data cannot decide, the answer
is :class:`Undecided`: one line naming what could not be decided and the
``shoprec init`` flag that settles it.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from shoprec.core.errors import ConfigError
from shoprec.core.profile import ColumnProfile, name_tokens

# Name words that say a column is a user id / an item id, when no table's keys decide.
USER_WORDS = frozenset({"user", "users", "customer", "customers", "client", "visitor",
                        "member", "buyer", "shopper", "account", "uid", "cid", "person"})
ITEM_WORDS = frozenset({"item", "items", "article", "product", "sku", "goods", "asin",
                        "offer", "pid", "iid", "listing", "variant", "prod"})
TIME_WORDS = frozenset({"time", "timestamp", "ts", "date", "dat", "day", "datetime", "when",
                        "created", "at", "epoch"})
EVENT_WORDS = frozenset({"event", "type", "action", "behavior", "behaviour", "activity",
                         "interaction", "kind", "verb"})
# Raw event values (lower case, '-' and ' ' as '_') → funnel stage. A detail-page
# view is the click of our funnel (Taobao's pv); 'other' counts in the history only.
EVENT_VOCABULARY: Dict[str, str] = {
    **dict.fromkeys(("impression", "impressions", "imp", "imps", "show", "shown", "expose",
                     "exposure", "exposed", "display", "displayed", "served"), "impression"),
    **dict.fromkeys(("click", "clicks", "clk", "clicked", "pv", "view", "views", "viewed",
                     "detail", "detail_view", "detailview", "page_view", "pageview",
                     "product_view", "view_item", "visit", "open", "tap"), "click"),
    **dict.fromkeys(("cart", "carts", "carted", "add_to_cart", "addtocart", "add_cart",
                     "addcart", "basket", "add_to_basket", "addtobasket", "atc"),
                    "add_to_cart"),
    **dict.fromkeys(("buy", "buys", "bought", "purchase", "purchases", "purchased", "order",
                     "orders", "ordered", "transaction", "checkout", "pay", "paid", "sale",
                     "conversion"), "purchase"),
    **dict.fromkeys(("fav", "favs", "favorite", "favourite", "favorited", "wishlist",
                     "add_to_wishlist", "like", "liked", "save", "saved", "share", "rate",
                     "rating", "review", "remove_from_cart", "removefromcart", "search",
                     "follow", "collect"), "other"),
}
# `--event_map` stage names (and their aliases) → funnel stage.
STAGE_NAMES = {"impression": "impression", "view": "click", "click": "click",
               "cart": "add_to_cart", "add_to_cart": "add_to_cart", "purchase": "purchase",
               "buy": "purchase", "other": "other"}
# The label a funnel stage's events make, and its task's name.
LABEL_OF = {"click": "click", "add_to_cart": "cart", "purchase": "purchase"}
# An event-type column has at most this many distinct values.
MAX_EVENT_VALUES = 50
# A label needs this many positives in the sample to become a task.
MIN_POSITIVES = 20


class Undecided(ConfigError):
    """The data cannot decide something ``shoprec init`` must: the message names it and
    the flag that settles it (exit 2, like any bad command line)."""


@dataclasses.dataclass(frozen=True)
class Hints:
    """What the user settled with flags; None: infer it."""

    user_col: Optional[str] = None
    item_col: Optional[str] = None
    timestamp_col: Optional[str] = None
    timestamp_format: Optional[str] = None
    event_col: Optional[str] = None
    event_map: Tuple[Tuple[str, str], ...] = ()  # (raw value, funnel stage)
    event_value: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Roles:
    """The event log's columns by role, and its funnel.

    Attributes:
        timestamp, timestamp_format, user_id, item_id: Columns (and format).
        event_type: The event-type column, or None for a one-event log.
        event_types: (raw value, funnel stage) of every value seen.
        event_value: The stage of every row of a one-event log.
        item_key, user_key: The items' / users' key columns (None: no table).
        evidence: {role: one line of evidence}.
    """

    timestamp: str
    timestamp_format: str
    user_id: str
    item_id: str
    event_type: Optional[str]
    event_types: Tuple[Tuple[str, str], ...]
    event_value: Optional[str]
    item_key: Optional[str]
    user_key: Optional[str]
    evidence: Mapping[str, str]


def parse_event_map(text: str) -> Tuple[Tuple[str, str], ...]:
    """``view=pv,cart=cart,purchase=buy`` → ((raw value, funnel stage), ...).

    Raises:
        Undecided: a malformed entry or an unknown stage.
    """
    out = []
    for entry in filter(None, (e.strip() for e in text.split(","))):
        stage, _, raw = entry.partition("=")
        stage = stage.strip().lower()
        if not raw.strip() or stage not in STAGE_NAMES:
            raise Undecided(f"--event_map {entry!r}: expected STAGE=VALUE with STAGE one of "
                            f"{sorted(STAGE_NAMES)}")
        out.append((raw.strip(), STAGE_NAMES[stage]))
    return tuple(out)


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def _named(profiles: Mapping[str, ColumnProfile], column: Optional[str], flag: str
           ) -> Optional[ColumnProfile]:
    if column is None:
        return None
    if column not in profiles:
        raise Undecided(f"{flag} {column}: the events have no such column; they have "
                        f"{sorted(profiles)}")
    return profiles[column]


def timestamp_role(events: Mapping[str, ColumnProfile], hints: Hints) -> Tuple[str, str, str]:
    """(column, format, evidence) of the event time.

    Raises:
        Undecided: no column parses as a time, two do and neither is named
            like one, or the named column does not parse.
    """
    named = _named(events, hints.timestamp_col, "--timestamp_col")
    if named is not None:
        fmt = hints.timestamp_format or named.timestamp_format
        if fmt is None:
            raise Undecided(f"--timestamp_col {named.name}: its values parse in no known "
                            f"format (e.g. {named.top[0][0] if named.top else ''!r}): pass "
                            "--timestamp_format (a strptime pattern, unix_s or unix_ms)")
        return named.name, fmt, f"--timestamp_col, format {fmt}"
    found = [p for p in events.values() if p.timestamp_format]
    if len(found) > 1:
        by_name = [p for p in found if TIME_WORDS & set(name_tokens(p.name))]
        found = by_name if len(by_name) == 1 else found
    if len(found) != 1:
        what = ("no column parses as a timestamp" if not found else
                f"{len(found)} columns parse as timestamps "
                f"({', '.join(p.name for p in found)})")
        raise Undecided(f"events: {what}; pass --timestamp_col COLUMN")
    p = found[0]
    return p.name, p.timestamp_format or "auto", (
        f"{_pct(p.timestamp_share)} of {p.filled:,} values parse as {p.timestamp_format}")


def _overlap(events: ColumnProfile, key: ColumnProfile) -> float:
    """Share of the event column's rows whose value is one of the key's values."""
    keys = set(key.texts)
    return sum(t in keys for t in events.texts) / max(1, len(events.texts))


def _id_like(p: ColumnProfile) -> bool:
    return p.kind in ("int", "code", "string") and p.distinct > 1 and not p.timestamp_format


def _table_key(table: Mapping[str, ColumnProfile]) -> List[ColumnProfile]:
    """Columns of a side table that can be its key: no blanks, (nearly) unique."""
    return [p for p in table.values() if _id_like(p) and not p.blanks
            and p.distinct >= 0.99 * p.filled]


def id_role(role: str, events: Mapping[str, ColumnProfile],
            table: Optional[Mapping[str, ColumnProfile]], table_name: str, taken: Sequence[str],
            hint: Optional[str]) -> Tuple[str, Optional[str], float, str]:
    """(events column, the table's key or None, share of rows found in it, evidence).

    With a side table, the event column whose values are most often the
    table's key values; without one, the one id-like column named like a
    ``role`` id.

    Raises:
        Undecided: none, or two columns equally plausible.
    """
    flag = f"--{role}_col"
    words = USER_WORDS if role == "user" else ITEM_WORDS
    candidates = [p for p in events.values() if _id_like(p) and p.name not in taken]
    named = _named(events, hint, flag)
    if named is not None:
        candidates = [named]
    if table is not None:
        keys = _table_key(table)
        scored = sorted(((_overlap(e, k), e.name, k.name) for e in candidates for k in keys),
                        reverse=True)
        scored = [s for s in scored if s[0] > 0]
        if scored:
            share, column, key = scored[0]
            rivals = [s for s in scored[1:] if s[1] != column and s[0] >= 0.5 * share]
            if rivals and named is None:
                raise Undecided(f"events: two plausible {role} ids, {column} and {rivals[0][1]} "
                                f"(both match {table_name}'s keys); pass {flag} COLUMN")
            return column, key, share, (f"{_pct(share)} of its values are {table_name}'s "
                                        f"{key} values")
        if named is None:
            raise Undecided(f"events: no column's values are {table_name}'s keys (no "
                            f"unique column of {table_name} shares values with the events); "
                            f"pass {flag} COLUMN")
        raise Undecided(f"{flag} {named.name}: none of its values is a key of {table_name}")
    if named is not None:
        return named.name, None, 1.0, f"{flag}"
    by_name = [p for p in candidates if words & set(name_tokens(p.name))]
    if len(by_name) == 1:
        return by_name[0].name, None, 1.0, (f"named like {_an(role)} id, "
                                            f"{by_name[0].distinct:,} values")
    what = (f"two plausible {role} ids, {by_name[0].name} and {by_name[1].name}" if by_name
            else f"no column is named like {_an(role)} id")
    raise Undecided(f"events: {what}; pass {flag} COLUMN")


def _an(role: str) -> str:
    return {"item": "an item"}.get(role, f"a {role}")


def _normal(value: str) -> str:
    return value.strip().lower().replace("-", "_").replace(" ", "_")


def event_role(events: Mapping[str, ColumnProfile], taken: Sequence[str], hints: Hints
               ) -> Tuple[Optional[str], Tuple[Tuple[str, str], ...], Optional[str], str]:
    """(event-type column or None, (raw value, stage) pairs, one-event stage, evidence).

    The column is the low-cardinality one whose values are known event
    names; a log without one is a one-event log (``--event_value``, default
    purchase: every row a positive, negatives sampled).

    Raises:
        Undecided: values no vocabulary maps (pass ``--event_map``), or two
            candidate columns.
    """
    given = dict(hints.event_map)
    if hints.event_value is not None:
        stage = STAGE_NAMES.get(hints.event_value.lower())
        if stage is None:
            raise Undecided(f"--event_value {hints.event_value}: one of {sorted(STAGE_NAMES)}")
        return None, (), stage, f"--event_value: every row is a {stage}"
    small = [p for p in events.values()
             if p.name not in taken and p.kind in ("string", "int", "code")
             and 1 <= p.distinct <= MAX_EVENT_VALUES]
    named = _named(events, hints.event_col, "--event_col")

    def known(p: ColumnProfile) -> float:
        hits = sum(n for v, n in p.top if v in given or _normal(v) in EVENT_VOCABULARY)
        return hits / max(1, p.filled)

    candidates = [named] if named is not None else [p for p in small if known(p) > 0 or (
        EVENT_WORDS & set(name_tokens(p.name)) and p.kind == "string" and p.distinct > 1)]
    if not candidates:
        return None, (), "purchase", ("no column holds event names: every row is taken as a "
                                      "purchase (a purchase log: negatives are sampled)")
    candidates.sort(key=known, reverse=True)
    if len(candidates) > 1 and known(candidates[1]) >= 0.5:
        raise Undecided(f"events: two plausible event-type columns, {candidates[0].name} and "
                        f"{candidates[1].name}; pass --event_col COLUMN")
    column = candidates[0]
    mapping, unknown = [], []
    for value, count in column.top:
        stage = given.get(value) or EVENT_VOCABULARY.get(_normal(value))
        (mapping if stage else unknown).append((value, stage or count))
    if unknown:
        suggest = ",".join(
            [f"{_stage_name(s)}={v}" for v, s in mapping] + [f"other={v}" for v, _ in unknown])
        listed = ", ".join(f"{v!r} ({_pct(n / column.filled)})" for v, n in unknown[:5])
        raise Undecided(f"events.{column.name}: values {listed} are no known event type; "
                        f"pass --event_map {suggest}")
    stages = {s for _, s in mapping}
    if stages <= {"other"}:
        raise Undecided(f"events.{column.name}: no value is a view, click, cart or purchase; "
                        f"pass --event_map (e.g. click={mapping[0][0]})")
    listed = ", ".join(f"{v}→{s}" for v, s in mapping)
    return column.name, tuple(mapping), None, f"{len(mapping)} values: {listed}"


def _stage_name(stage: str) -> str:
    return {"add_to_cart": "cart"}.get(stage, stage)


def label_mode(stages: Mapping[str, int]) -> Tuple[str, Tuple[str, ...], str]:
    """(label mode, funnel stages that become labels, evidence) from events per stage.

    Impressions and clicks: one example per impression (``impressions``);
    views and later steps: one example per viewed pair, labelled by what
    follows (``funnel``); one kind of event: its events are positives and
    negatives are sampled (``sampled``). A later step with fewer than
    :data:`MIN_POSITIVES` events in the sample makes no label.

    Raises:
        Undecided: no stage has enough events to learn from.
    """
    def enough(stage):
        return stages.get(stage, 0) >= MIN_POSITIVES

    if stages.get("impression") and enough("click"):
        labels = tuple(s for s in ("click", "purchase") if enough(s))
        return "impressions", labels, "impressions with clicks: one example per impression"
    steps = tuple(s for s in ("add_to_cart", "purchase") if enough(s))
    if (stages.get("click") or stages.get("impression")) and steps:
        return "funnel", steps, ("views followed by " + " and ".join(LABEL_OF[s] for s in steps)
                                 + ": one example per viewed pair")
    present = [s for s in ("purchase", "add_to_cart", "click") if enough(s)]
    if not present:
        counts = ", ".join(f"{s} {n}" for s, n in sorted(stages.items()))
        raise Undecided(f"events: too few events of any funnel step to learn from ({counts}; "
                        f"{MIN_POSITIVES} needed): pass more rows or --event_map")
    return "sampled", (present[0],), (f"{present[0]} events only: each is a positive, "
                                      "negatives are sampled")
