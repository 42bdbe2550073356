"""Which item and user columns become which features, from what they hold.

``shoprec init`` turns each attribute column of the items and users tables
(or, without an items table, each event column that is one value per item)
into one registry feature, by cardinality and content: few values are
``categorical``, very many ``hashed``, many-worded values ``text``, numbers
``numeric`` — but a number that names something (a code, an ``..._no``, a
handful of integers) is categorical, never a numeric feature. A code that
is one value per name (``colour_group_code`` and ``colour_group_name``) is
left out for its name. It also finds the photo path pattern from the files
under an images folder. Every decision carries its evidence.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import Counter
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from shoprec.core.profile import ColumnProfile, determines, name_tokens

# Name words that make a numeric column an identifier (categorical or hashed).
CODE_WORDS = frozenset({"id", "no", "nr", "code", "num", "number", "key", "zip", "postal",
                        "sku", "ean", "upc", "isbn", "gtin", "cd"})
# At most this many values (and at most MAX_CATEGORICAL_SHARE of the rows, above
# SMALL_VOCABULARY) make a vocabulary; more are hashed (or text, when wordy).
MAX_CATEGORICAL = 5000
SMALL_VOCABULARY = 50
MAX_CATEGORICAL_SHARE = 0.5
# Integers with at most this many values are categories, not amounts.
MAX_INT_CATEGORIES = 30
# Integers this large (the median) are identifiers, not amounts.
ID_MAGNITUDE = 100_000
# Name words of a kind of item (a category column; numbers in it are codes).
CATEGORY_WORDS = frozenset({"category", "categories", "cat", "type", "group", "class",
                            "department", "dept", "section", "genre", "family", "segment"})
# Mean words per value from which a many-valued column is free text.
TEXT_TOKENS = 2.0
# A code is left out for a name column with at least this share of its values.
CODE_NAME_SHARE = 0.8
MISSING_CATEGORY = "missing"
# A value that is a file's path or a URL (a photo's, a page's): no feature.
_LOCATION = re.compile(r"(^[a-z][a-z0-9+.-]*://)|(\.(jpe?g|png|gif|webp|bmp|html?|pdf)$)",
                       re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Attribute:
    """One column's fate: a registry feature (plain mapping) or left out, with evidence."""

    column: str
    feature: Optional[Dict[str, Any]]
    evidence: str


def feature_name(source: str, column: str) -> str:
    """``item`` + ``Product Type`` → ``item_product_type`` (prefix kept once)."""
    slug = "_".join(name_tokens(column)) or "column"
    return slug if slug.startswith(source + "_") else f"{source}_{slug}"


def _embedding_dim(distinct: int) -> int:
    return 4 if distinct <= 8 else 8 if distinct <= 64 else 16


def _pow2(n: int, low: int, high: int) -> int:
    size = low
    while size < n and size < high:
        size *= 2
    return size


def _is_code(p: ColumnProfile) -> bool:
    """A column of identifiers: leading zeros, a name like an id or a category, a few
    integers, or integers as large as ids."""
    words = set(name_tokens(p.name))
    return p.kind == "code" or (p.numeric and (
        bool((CODE_WORDS | CATEGORY_WORDS) & words)
        or (p.kind == "int" and (p.distinct <= MAX_INT_CATEGORIES
                                 or (p.numbers or (0, 0, 0))[1] >= ID_MAGNITUDE))))


def _categorical_or_hashed(p: ColumnProfile, base: Dict[str, Any], what: str
                           ) -> Tuple[Dict[str, Any], str]:
    small = p.distinct <= SMALL_VOCABULARY or p.distinct_share <= MAX_CATEGORICAL_SHARE
    if p.distinct <= MAX_CATEGORICAL and small:
        feature = dict(base, kind="categorical", embedding_dim=_embedding_dim(p.distinct))
        if p.distinct > 64:
            feature["oov_buckets"] = 4
        if p.blanks:
            feature["default"] = MISSING_CATEGORY
        return feature, f"categorical: {what}, {p.distinct:,} values"
    buckets = _pow2(2 * p.distinct, 1024, 65536)
    feature = dict(base, kind="hashed", hash_buckets=buckets, embedding_dim=16)
    if p.blanks:
        feature["default"] = ""
    return feature, f"hashed into {buckets}: {what}, {p.distinct:,} values of {p.filled:,}"


def classify(p: ColumnProfile, source: str, complete: bool) -> Attribute:
    """The feature one attribute column becomes (or why none)."""
    if not p.filled:
        return Attribute(p.name, None, "left out: always blank")
    if p.distinct == 1 and not p.blanks:
        return Attribute(p.name, None, f"left out: one value ({p.top[0][0]!r})")
    if p.timestamp_format and not p.numeric:
        return Attribute(p.name, None, f"left out: a date ({p.timestamp_format})")
    if sum(bool(_LOCATION.search(t)) for t in p.texts) >= 0.9 * p.filled:
        return Attribute(p.name, None, "left out: file paths or URLs")
    base: Dict[str, Any] = {"name": feature_name(source, p.name), "source": source,
                            "column": p.name}
    # A table read whole shows every blank; a partial sample may miss some.
    if p.blanks or not complete:
        base["required"] = False
    blanks = f", {100 * p.share_blank():.0f}% blank" if p.blanks else ""
    if _is_code(p) or (p.numeric and p.distinct <= 2):
        feature, why = _categorical_or_hashed(p, base, f"a code ({p.kind})")
    elif p.numeric:
        low, median, high = p.numbers or (0.0, 0.0, 0.0)
        feature = dict(base, kind="numeric")
        skewed = low >= 0 and high > 10 * max(median, 1e-9) and high > 1e-6
        if skewed:
            feature["log"] = True
        if p.blanks or not complete:
            feature["default"] = float(median)
        why = (f"numeric: {p.kind} from {low:g} to {high:g}, median {median:g}"
               + ("; heavy-tailed, log1p" if skewed else ""))
    elif (p.tokens >= TEXT_TOKENS and p.distinct > SMALL_VOCABULARY
          and p.distinct_share > MAX_CATEGORICAL_SHARE / 5):
        length = max(4, min(32, int(round(2 * p.tokens))))
        feature = dict(base, kind="text", max_length=length, top_k=5000 if p.tokens > 6 else 2000,
                       oov_buckets=8, embedding_dim=16 if p.tokens > 6 else 8)
        if p.blanks or not complete:
            feature["default"] = ""
        why = f"text: {p.tokens:.1f} words a value, {p.distinct:,} values"
    else:
        feature, why = _categorical_or_hashed(p, base, "text")
    if feature.get("required") is False and "default" not in feature:
        feature["default"] = MISSING_CATEGORY if feature["kind"] == "categorical" else ""
    return Attribute(p.name, feature, why + blanks)


def _redundant(a: ColumnProfile, b: ColumnProfile) -> bool:
    """Whether ``a`` is a code of ``b``'s names: each code has one name, nearly every name
    one code, and ``b`` reads better (text beside a number, else the longer words)."""
    if not determines(a, b) or b.distinct < CODE_NAME_SHARE * a.distinct:
        return False
    if a.numeric or a.kind == "code":
        return b.kind == "string"
    return (a.kind == b.kind == "string" and a.distinct == b.distinct
            and sum(map(len, a.texts)) < sum(map(len, b.texts)))


def attributes(profiles: Mapping[str, ColumnProfile], source: str, skip: Sequence[str],
               complete: bool) -> List[Attribute]:
    """Every column of a table but ``skip`` (key, photo path), classified.

    A code with one name per value (and nearly one value per name) is left
    out for the name.
    """
    out = [classify(p, source, complete) for name, p in profiles.items() if name not in skip]
    kept = []
    for attribute in out:
        twin = next((o for o in out if o is not attribute and o.feature and attribute.feature
                     and attribute.feature["kind"] == o.feature["kind"] == "categorical"
                     and _redundant(profiles[attribute.column], profiles[o.column])), None)
        if twin is not None:
            attribute = Attribute(attribute.column, None,
                                  f"left out: a code of {twin.column} (one name per value)")
        kept.append(attribute)
    return kept


def item_columns_of_events(events: Mapping[str, ColumnProfile], rows: Sequence[Mapping],
                           item_col: str, taken: Sequence[str]) -> List[str]:
    """Event columns that hold one value per item (at least 95% of items): item attributes."""
    out = []
    for name, p in events.items():
        if name in taken or name == item_col or p.distinct < 2:
            continue
        values: Dict[str, set] = {}
        for row in rows:
            values.setdefault(str(row.get(item_col)), set()).add(str(row.get(name)))
        single = sum(len(v) == 1 for v in values.values())
        if single >= 0.95 * len(values) and p.distinct < 0.5 * len(values):
            out.append(name)
    return out


def photo_path(key_values: Sequence[str], files: Sequence[str], key: str, folder_name: str,
               path_columns: Mapping[str, Sequence[str]]) -> Tuple[Optional[str], bool, str]:
    """(image_path: a column or a pattern, whether it is relative to the folder's parent,
    evidence) for the photos under a folder.

    Args:
        key_values: Item keys of the catalogue sample.
        files: Image files under the folder, relative to it.
        key: The items' key column.
        folder_name: The folder's own name (a path column may start with it).
        path_columns: {column: its values as text} of item columns that may
            hold paths.

    Returns:
        A column whose values are the files' paths (relative to the folder,
        or to its parent), else a pattern over the key (``{key}.jpg``,
        ``sub/{key}.png``, ``{key[:3]}/{key}.jpg``), else None and why not.
    """
    known = set(files)
    for column, texts in path_columns.items():
        for up in (False, True):
            prefix = folder_name.rstrip("/") + "/" if up else ""
            found = sum(t.startswith(prefix) and t[len(prefix):] in known for t in texts)
            if texts and found >= 0.5 * len(texts):
                where = "its parent" if up else "the folder"
                return column, up, (f"column {column}: {found:,} of {len(texts):,} values are "
                                    f"photo files, relative to {where}")
    by_stem: Dict[str, str] = {}
    for path in files:
        by_stem.setdefault(os.path.splitext(os.path.basename(path))[0], path)
    matched = [(k, by_stem[k]) for k in key_values if k in by_stem]
    if not matched:
        example = files[0] if files else "nothing"
        return None, False, (f"no photo file is named after an item's {key} (e.g. "
                             f"{list(key_values[:1])} vs {example})")
    templates: Counter = Counter()
    for value, path in matched:
        folder, name = os.path.split(path)
        ext = os.path.splitext(name)[1]
        templates[_folder_template(folder, value, key) + "{" + key + "}" + ext] += 1
    template, count = templates.most_common(1)[0]
    return template, False, (f"{len(matched):,} of {len(key_values):,} items have a photo "
                             f"named after their {key}, {count:,} of them at {template}")


def _folder_template(folder: str, value: str, key: str) -> str:
    """A file's folder as a pattern over the key: a prefix of the key, or as it is."""
    if not folder:
        return ""
    parts = folder.split(os.sep)
    last = parts[-1]
    if value.startswith(last) and last != value and re.fullmatch(r"[\w.-]+", last):
        return "/".join(parts[:-1] + ["{" + key + f"[:{len(last)}]" + "}"]) + "/"
    return "/".join(parts) + "/"
