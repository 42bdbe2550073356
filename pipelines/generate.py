"""Deterministic synthetic shop: users, items, item photos, event logs and ground truth.

Users see sessions of popularity-drawn impressions; clicks and purchases follow
from a hidden preference model whose parts are learnable from the user and item
columns, plus one item trait (its fill ``pattern``) that only the photo shows,
so a model that reads images can beat one that does not. ``truth.csv`` keeps
the true probabilities so evaluation can be compared with an oracle.

Users are generated in chunks and their events written as they are made, so a
large run never holds the whole event log in memory. Configurable fractions of
rows and images are broken on purpose so ingest's dead letters have work to do.

With ``bot_fraction`` > 0 some users are bots (their own random stream, so the
people's events stay those of a shop without bots): their sessions fall in
the night (01:00-05:00 UTC), they click any item with probability
:data:`BOT_CLICK_P` and never buy, some clicks come with no impression before
them, and half of them ("fast" bots) crowd each three days' sessions into
one minute and click within seconds. The users table then carries the
ground truth, ``is_bot``.

With ``new_item_fraction`` / ``new_user_fraction`` > 0 the shop has cold
start (their own random stream too): some items are launched during the days
and never shown before, some users arrive during them, their first session at
arrival. Their true preferences come from the same hidden model, so the
oracle covers them; the summary counts the items and users whose first event
falls in the eval window (no train example can know them).
"""

from __future__ import annotations

import csv
import os
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from shoprec.core import config as config_lib
from shoprec.core.timestamps import parse_timestamp

REGIONS = ("north", "south", "east", "west", "central")
MEMBERSHIPS = ("none", "silver", "gold")
CATEGORIES = ("shoes", "bags", "tops", "dresses", "hats", "watches", "jewellery", "outdoor")
SHAPES = ("circle", "square", "triangle", "stripes", "ring", "cross", "diamond", "dome")
COLOURS = {"red": (220, 40, 40), "orange": (245, 140, 20), "yellow": (240, 220, 40),
           "green": (40, 170, 60), "blue": (40, 80, 220), "purple": (140, 50, 180),
           "black": (25, 25, 25), "white": (250, 250, 250)}
PATTERNS = ("solid", "checkered", "hollow")
AGE_EDGES = (30, 45, 60)  # age groups: 18-29, 30-44, 45-59, 60+
EVENT_COLUMNS = ("timestamp", "user_id", "item_id", "event_type")
TRUTH_COLUMNS = ("timestamp", "user_id", "item_id", "p_click", "p_conversion", "click",
                 "conversion")
CORRUPT_KINDS = ("bad_timestamp", "unknown_item", "wrong_columns")
IMAGE_FAULTS = ("missing", "random_bytes", "truncated", "empty")
_DROP = object()  # a field left out of a row: omitted in CSV, null in Parquet
_MAX_GUMBEL_ITEMS = 2048  # above this, sample impressions by rejection instead
BOT_CLICK_P = 0.3  # a bot clicks whatever it is shown, with this probability
BOT_VIEWLESS_CLICK_P = 0.5  # per bot session: one click on an item never shown
_NEVER = np.iinfo(np.int64).max  # first event of a user or item that has none


class _TableWriter:
    """Streams rows of strings to CSV (with header) or Parquet (one row group per write)."""

    def __init__(self, path: str, columns: Sequence[str], fmt: str):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.columns, self.fmt = tuple(columns), fmt
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq
            self._schema = pa.schema([(c, pa.string()) for c in self.columns])
            self._writer = pq.ParquetWriter(path, self._schema)
        else:
            self._file = open(path, "w", newline="", buffering=1 << 20)
            self._file.write(",".join(self.columns) + "\n")

    def write(self, rows: List[tuple]) -> None:
        if self.fmt == "parquet":
            import pyarrow as pa
            cols = {c: [None if r[i] is _DROP or r[i] == "" else r[i] for r in rows]
                    for i, c in enumerate(self.columns)}
            self._writer.write_table(pa.Table.from_pydict(cols, schema=self._schema))
        else:
            self._file.write("".join(",".join(v for v in r if v is not _DROP) + "\n" for r in rows))

    def close(self) -> None:
        (self._writer if self.fmt == "parquet" else self._file).close()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _iso(ts: np.ndarray) -> np.ndarray:
    return np.char.add(np.datetime_as_string(ts.astype("datetime64[s]"), unit="s"), "Z")


def _pool(gen: config_lib.GenerateConfig) -> Tuple[int, int]:
    """(users, items) the world is drawn for: at least the generated ones.

    Raises:
        ValueError: a pool smaller than the users or items generated from it.
    """
    users, items = gen.pool_users or gen.num_users, gen.pool_items or gen.num_items
    if users < gen.num_users or items < gen.num_items:
        raise ValueError(f"generate: pool_users {users} / pool_items {items} must be at least "
                         f"num_users {gen.num_users} / num_items {gen.num_items}")
    return users, items


def _world(rng: np.random.Generator, gen: config_lib.GenerateConfig) -> dict:
    """Draws users, items and the hidden preference model they share, for the whole pool."""
    (nu, ni), nc = _pool(gen), len(CATEGORIES)
    w = {"age": rng.integers(18, 76, nu),
         "region": rng.choice(len(REGIONS), nu, p=[0.3, 0.25, 0.2, 0.15, 0.1]),
         "member": rng.choice(3, nu, p=[0.6, 0.3, 0.1]),
         "category": rng.integers(0, nc, ni), "brand": rng.integers(0, 30, ni),
         "colour": rng.integers(0, len(COLOURS), ni), "pattern": rng.integers(0, len(PATTERNS), ni),
         "age_missing": rng.random(nu) < 0.02}
    w["age_group"] = np.searchsorted(AGE_EDGES, w["age"], side="right")
    # Prices: category sets the level, brand a premium, the item its own spread.
    cat_level = np.linspace(2.6, 4.6, nc)[rng.permutation(nc)]
    brand_premium = rng.normal(0.0, 0.3, 30)
    w["price"] = np.round(np.exp(cat_level[w["category"]] + brand_premium[w["brand"]]
                                 + rng.normal(0.0, 0.35, ni)), 2).clip(0.5)
    log_price = np.log(w["price"]) - np.log(w["price"]).mean()
    # Item quality drives both exposure (popularity) and click appeal; brands
    # carry part of it, so the brand column is informative.
    quality = rng.normal(0.0, 0.3, 30)[w["brand"]] + rng.normal(0.0, 0.45, ni)
    w["log_pop"] = 1.2 * quality + rng.normal(0.0, 0.4, ni)
    # Category taste is shared by users alike in region, membership and age
    # group (learnable from user x item columns) plus a smaller personal part.
    taste = (rng.normal(0, 0.55, (len(REGIONS), nc))[w["region"]]
             + rng.normal(0, 0.45, (3, nc))[w["member"]]
             + rng.normal(0, 0.55, (len(AGE_EDGES) + 1, nc))[w["age_group"]]
             + rng.normal(0, 0.4, (nu, nc)))
    colour_aff = rng.normal(0, 0.55, (len(AGE_EDGES) + 1, len(COLOURS)))
    pattern_aff = rng.normal(0, 0.8, (len(REGIONS), len(PATTERNS)))
    price_sens = np.array([0.9, 0.55, 0.2])
    w["click_logit"] = lambda u, i: (
        -3.2 + quality[i] + taste[u, w["category"][i]]
        + colour_aff[w["age_group"][u], w["colour"][i]]
        + pattern_aff[w["region"][u], w["pattern"][i]] - price_sens[w["member"][u]] * log_price[i])
    w["buy_logit"] = lambda u, i: (
        -1.5 + np.array([-0.3, 0.1, 0.6])[w["member"][u]] - 0.7 * log_price[i] + 0.4 * quality[i])
    return w


def _draw_image(rng: np.random.Generator, size: int, shape: int, rgb, pattern: int) -> np.ndarray:
    """Draws one item photo: category shape in the item colour, filled by its pattern."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    cx, cy = size * (0.5 + rng.uniform(-0.08, 0.08, 2))
    radius = size * rng.uniform(0.3, 0.4)
    x, y = (xx - cx) / radius, (yy - cy) / radius
    r, box = np.hypot(x, y), np.maximum(abs(x), abs(y))
    mask = [r < 1, box < 0.85, (y < 0.8) & (y > -0.9 + 1.7 * abs(x)),
            (box < 0.9) & (np.floor((y + 0.9) * 2.5) % 2 == 0), (r < 1) & (r > 0.6),
            (box < 0.95) & ((abs(x) < 0.3) | (abs(y) < 0.3)), abs(x) + abs(y) < 1,
            (r < 1) & (y > -0.2)][shape]
    if PATTERNS[pattern] == "checkered":
        cell = max(2, size // 6)
        mask = mask & (((xx // cell) + (yy // cell)) % 2 == 0)
    elif PATTERNS[pattern] == "hollow":
        # Keep only an outline: remove pixels whose neighbours are all inside.
        inner, t = mask.copy(), max(1, size // 16)
        for axis in (0, 1):
            for shift in range(-t, t + 1):
                inner &= np.roll(mask, shift, axis=axis)
        mask = mask & ~inner
    img = np.broadcast_to(150.0 + rng.integers(-15, 16, 3), (size, size, 3)).copy()
    img[mask] = rgb
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def _write_images(rng, config, world, item_ids) -> Dict[str, List[str]]:
    """Writes one PNG per item; a fraction are left missing, corrupt or empty on purpose."""
    import tensorflow as tf

    gen, root = config.generate, config.input_path(config.inputs.images_root)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    # Drawn for the whole pool, then each photo in id order: the first items'
    # photos are the same whatever the number of items generated.
    pool = _pool(gen)[1]
    faulty = (rng.random(pool) < gen.missing_image_fraction)[:len(item_ids)]
    fault_kind = rng.integers(0, len(IMAGE_FAULTS), pool)[:len(item_ids)]
    colours = list(COLOURS.values())
    bad: Dict[str, List[str]] = {k: [] for k in IMAGE_FAULTS}
    for i, item_id in enumerate(item_ids):
        pixels = _draw_image(rng, gen.image_size, world["category"][i] % len(SHAPES),
                             colours[world["colour"][i]], world["pattern"][i])
        png = tf.io.encode_png(pixels).numpy()
        path = os.path.join(root, "images", f"{item_id}.png")
        if faulty[i]:
            kind = IMAGE_FAULTS[fault_kind[i]]
            bad[kind].append(str(item_id))
            png = {"missing": None, "random_bytes": rng.bytes(200),
                   "truncated": png[: len(png) // 3], "empty": b""}[kind]
            if png is None:
                continue
        with open(path, "wb") as f:
            f.write(png)
    return bad


def _sample_items(rng, log_pop: np.ndarray, sessions: int, k: int,
                  launch: np.ndarray = None, sess_t: np.ndarray = None) -> np.ndarray:
    """Draws k distinct items per session, weighted by popularity, among those launched.

    Args:
        launch: Each item's launch time (None: every item always on sale).
        sess_t: Each session's start; an item launched later is not drawn.
    """
    n = len(log_pop)
    launching = launch is not None and bool((launch > sess_t.min()).any())
    if n <= _MAX_GUMBEL_ITEMS:  # Gumbel top-k: exact sampling without replacement.
        keys = log_pop[None, :] + rng.gumbel(size=(sessions, n))
        if launching:
            keys[launch[None, :] > sess_t[:, None]] = -np.inf
        return np.argpartition(-keys, k - 1, axis=1)[:, :k]
    cdf = np.cumsum(np.exp(log_pop - log_pop.max()))
    out = np.empty((sessions, k), dtype=np.int64)
    todo = np.arange(sessions)
    while len(todo):  # redraw sessions that drew an item twice or one not launched yet
        draw = np.searchsorted(cdf, rng.random((len(todo), k)) * cdf[-1]).clip(max=n - 1)
        out[todo] = draw
        srt = np.sort(draw, axis=1)
        again = (srt[:, 1:] == srt[:, :-1]).any(axis=1)
        if launching:  # only the drawn items: no sessions x catalogue matrix
            again |= (launch[draw] > sess_t[todo][:, None]).any(axis=1)
        todo = todo[again]
    return out


def _cold_start(gen: config_lib.GenerateConfig, start: int, k: int
                ) -> Tuple[np.ndarray, np.ndarray]:
    """(launch time per pool item, arrival time per pool user): ``start`` for the old ones.

    Drawn from a sixth stream, so the shop without cold start is unchanged.

    The first ``k`` items are on sale from the first day, so a session can
    always show ``k`` distinct items.

    Raises:
        ValueError: a fraction outside [0, 1).
    """
    for name in ("new_item_fraction", "new_user_fraction"):
        if not 0.0 <= getattr(gen, name) < 1.0:
            raise ValueError(f"generate: {name} must be in [0, 1), not {getattr(gen, name)}")
    rng = np.random.default_rng(np.random.SeedSequence(gen.seed).spawn(6)[5])
    (nu, ni), span = _pool(gen), gen.days * 86400
    new_item = (rng.random(ni) < gen.new_item_fraction) & (np.arange(ni) >= k)
    new_user = rng.random(nu) < gen.new_user_fraction
    launch = start + np.where(new_item, rng.integers(1, span, ni), 0)
    arrival = start + np.where(new_user, rng.integers(1, span, nu), 0)
    return launch, arrival


def _sessions(rng, cold_rng, gen, users, arrival, start):
    """(user, start time) of every session of ``users``, in user order.

    A user there from the first day has Poisson(``sessions_per_user``)
    sessions at uniform times; one arriving later has a first session at
    arrival and Poisson of the rate over the days left after it.
    """
    span = gen.days * 86400
    count = rng.poisson(gen.sessions_per_user, len(users))
    late = arrival[users] > start
    if late.any():
        left = (start + span - arrival[users][late]) / span
        count[late] = 1 + cold_rng.poisson(gen.sessions_per_user * left)
    sess_user = np.repeat(users, count)
    sess_t = start + rng.integers(0, span, len(sess_user))
    if late.any():
        at = arrival[sess_user]
        # Uniform over [arrival, end): the same draw, rescaled (identity for old users).
        sess_t = at + (sess_t - start) * (start + span - at) // span
        first = (np.cumsum(count) - count)[late]
        sess_t[first] = arrival[users][late]
    return sess_user, sess_t


def _bots(rng: np.random.Generator, gen: config_lib.GenerateConfig
          ) -> Tuple[np.ndarray, np.ndarray]:
    """(is_bot, fast) per pool user; all False without bots (nothing drawn)."""
    pool = _pool(gen)[0]
    if gen.bot_fraction <= 0:
        return np.zeros(pool, bool), np.zeros(pool, bool)
    is_bot = rng.random(pool) < gen.bot_fraction
    return is_bot, is_bot & (rng.random(pool) < 0.5)


def _botify(rng, is_bot, fast_bot, sess_user, sess_t, k, start, num_items, click_max,
            imp_t, click_t, click, buy, p_click, p_buy):
    """Rewrites the bot sessions of one chunk: night, bursts, random and viewless clicks.

    Args:
        sess_user, sess_t: Each session's user and start (people's as drawn).
        k: Impressions per session; the impression arrays are sessions x k, flat.
        click_max: Longest impression-to-click delay (a slow bot's, as people's).
        imp_t, click_t, click, buy, p_click, p_buy: The chunk's impressions as
            drawn for people; bot sessions' entries are replaced.

    Returns:
        The same arrays (bots' entries rewritten) and the viewless clicks
        ``(users, items, times)``.
    """
    bot_sess = is_bot[sess_user]
    n = int(bot_sess.sum())
    day = (sess_t[bot_sess] - start) // 86400
    night = start + day * 86400 + rng.integers(3600, 5 * 3600, n)
    # A fast bot starts all its sessions of three days within 40 seconds of
    # each other, and clicks within seconds; a slow one clicks as people do.
    fast = fast_bot[sess_user[bot_sess]]
    period = day - day % 3
    burst = start + period * 86400 + 3600 + (sess_user[bot_sess] * 7919 + period * 104729) % (
        4 * 3600)
    sess_t = sess_t.copy()
    sess_t[bot_sess] = np.where(fast, burst + rng.integers(0, 40, n), night)
    gaps = np.where(fast[:, None], 1, rng.integers(1, 6, (n, k)))
    times = (sess_t[bot_sess][:, None] + np.cumsum(gaps, axis=1)).ravel()
    rows = np.repeat(bot_sess, k)
    imp_t, click_t, p_click, p_buy = imp_t.copy(), click_t.copy(), p_click.copy(), p_buy.copy()
    imp_t[rows] = times
    delay = rng.integers(5, click_max + 1, len(times))
    click_t[rows] = times + np.where(np.repeat(fast, k), rng.integers(1, 4, len(times)), delay)
    p_click[rows], p_buy[rows] = BOT_CLICK_P, 0.0
    click, buy = click.copy(), buy.copy()
    click[rows] = rng.random(len(times)) < BOT_CLICK_P
    buy[rows] = False
    with_viewless = rng.random(n) < BOT_VIEWLESS_CLICK_P
    users = sess_user[bot_sess][with_viewless]
    items = rng.integers(0, num_items, len(users))
    at = sess_t[bot_sess][with_viewless] + rng.integers(0, 30, len(users))
    return imp_t, click_t, click, buy, p_click, p_buy, (users, items, at)


def run(config: config_lib.Config) -> dict:
    """Generates a synthetic shop into ``config.run_dir``.

    Args:
        config: Run config; sizes and bad-data fractions come from ``config.generate``,
            output paths and format from ``config.inputs``, windows from ``config.ingest``.

    Returns:
        Summary: counts of users, items, impressions, clicks, purchases (as
        generated), truth and event rows written, corrupt rows (total and per
        kind), duplicate rows, bot impressions and viewless bot clicks,
        items launched and users arrived during the days (``new_items``,
        ``new_users``), items and users whose first clean event is in the
        eval window (``cold_items``, ``cold_users``), faulty images per kind,
        and output paths.
    """
    gen, inp, fmt = config.generate, config.inputs, config.inputs.format
    # Independent streams, so changing e.g. a bad-data fraction leaves the clean data alone.
    world_rng, image_rng, event_rng, bad_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(gen.seed).spawn(4))
    world = _world(world_rng, gen)
    user_ids = np.array([f"u{u:06d}" for u in range(gen.num_users)])
    item_ids = np.array([f"i{i:05d}" for i in range(gen.num_items)])
    colour_names = list(COLOURS)

    if fmt not in ("csv", "parquet"):
        raise ValueError(f"generate writes csv or parquet, not {fmt!r}")
    # Drawn for the whole pool from a fifth stream: the first four, and so the
    # shop without bots, are unchanged (SeedSequence children are per index).
    bot_rng = np.random.default_rng(np.random.SeedSequence(gen.seed).spawn(5)[4])
    is_bot, fast_bot = _bots(bot_rng, gen)
    start = parse_timestamp(gen.start_date)
    k = min(gen.impressions_per_session, gen.num_items)
    launch, arrival = _cold_start(gen, start, k)
    cold_rng = np.random.default_rng(np.random.SeedSequence(gen.seed).spawn(7)[6])
    user_columns = ("user_id", "age", "region", "membership") + (
        ("is_bot",) if gen.bot_fraction > 0 else ())
    users = _TableWriter(config.input_path(inp.users), user_columns, fmt)
    users.write([(user_ids[u], "" if world["age_missing"][u] else str(world["age"][u]),
                  REGIONS[world["region"][u]], MEMBERSHIPS[world["member"][u]])
                 + ((str(int(is_bot[u])),) if gen.bot_fraction > 0 else ())
                 for u in range(gen.num_users)])
    users.close()
    items = _TableWriter(config.input_path(inp.items), ("item_id", "category", "brand", "colour",
                                                   "price", "image_path"), fmt)
    items.write([(item_ids[i], CATEGORIES[world["category"][i]], f"brand{world['brand'][i]:02d}",
                  colour_names[world["colour"][i]], f"{world['price'][i]:.2f}",
                  f"images/{item_ids[i]}.png") for i in range(gen.num_items)])
    items.close()
    bad_images = _write_images(image_rng, config, world, item_ids)

    # Delays stay inside ingest's windows, so every click and purchase is attributable.
    click_max = min(600, config.ingest.click_window_s - 1)
    buy_max = min(6 * 3600, config.ingest.conversion_window_s - click_max - 1)
    # Users per chunk: bounds the sessions x items Gumbel matrix to ~2M cells.
    width = min(gen.num_items, _MAX_GUMBEL_ITEMS)
    chunk = max(1, int(2e6 // (max(gen.sessions_per_user, 1.0) * width)))
    events = _TableWriter(config.input_path(inp.events), EVENT_COLUMNS, fmt)
    truth_file = None
    if inp.truth:
        os.makedirs(os.path.dirname(config.input_path(inp.truth)) or ".", exist_ok=True)
        truth_file = open(config.input_path(inp.truth), "w", newline="", buffering=1 << 20)
        truth_file.write(",".join(TRUTH_COLUMNS) + "\n")
    counts = dict.fromkeys(("impressions", "clicks", "purchases", "truth_rows", "event_rows",
                            "duplicate_rows", "bot_impressions", "viewless_clicks"), 0)
    corrupt = dict.fromkeys(CORRUPT_KINDS, 0)
    # First clean event of each generated user and item.
    first_user, first_item = np.full(gen.num_users, _NEVER), np.full(gen.num_items, _NEVER)
    for lo in range(0, gen.num_users, chunk):
        chunk_users = np.arange(lo, min(lo + chunk, gen.num_users))
        sess_user, sess_t = _sessions(event_rng, cold_rng, gen, chunk_users, arrival, start)
        n_sess = len(sess_user)
        item = _sample_items(event_rng, world["log_pop"][:gen.num_items], n_sess, k,
                             launch[:gen.num_items], sess_t).ravel()
        imp_t = (sess_t[:, None] + np.cumsum(event_rng.integers(1, 6, (n_sess, k)), axis=1)).ravel()
        user = np.repeat(sess_user, k)
        p_click = _sigmoid(world["click_logit"](user, item))
        p_buy = _sigmoid(world["buy_logit"](user, item))
        click = event_rng.random(len(user)) < p_click
        buy = click & (event_rng.random(len(user)) < p_buy)
        click_t = imp_t + event_rng.integers(5, click_max + 1, len(user))
        buy_t = click_t + event_rng.integers(min(60, buy_max), buy_max + 1, len(user))
        viewless = (np.zeros(0, int),) * 3
        if is_bot[chunk_users].any():
            imp_t, click_t, click, buy, p_click, p_buy, viewless = _botify(
                bot_rng, is_bot, fast_bot, sess_user, sess_t, k, start, gen.num_items, click_max,
                imp_t, click_t, click, buy, p_click, p_buy)
            counts["bot_impressions"] += int(is_bot[user].sum())
            counts["viewless_clicks"] += len(viewless[0])
        # One row per event; an impression row remembers its impression for truth.
        n_extra = click.sum() + buy.sum() + len(viewless[0])
        src = np.concatenate([np.arange(len(user)), -np.ones(n_extra, int)])
        e_user = np.concatenate([user, user[click], user[buy], viewless[0]])
        e_item = np.concatenate([item, item[click], item[buy], viewless[1]])
        e_t = np.concatenate([imp_t, click_t[click], buy_t[buy], viewless[2]])
        e_type = np.repeat([0, 1, 2, 1], [len(user), click.sum(), buy.sum(), len(viewless[0])])
        order = np.lexsort((e_type, e_t, e_user))  # per user, in time order
        src, e_user, e_item, e_t, e_type = (a[order] for a in (src, e_user, e_item, e_t, e_type))
        np.minimum.at(first_user, e_user, e_t)
        np.minimum.at(first_item, e_item, e_t)
        counts["impressions"] += len(user)
        counts["clicks"] += int(click.sum()) + len(viewless[0])
        counts["purchases"] += int(buy.sum())

        draw = bad_rng.random(len(order))
        is_corrupt = draw < gen.corrupt_fraction
        is_dup = ~is_corrupt & (draw < gen.corrupt_fraction + gen.duplicate_fraction)
        bad_kind = bad_rng.integers(0, len(CORRUPT_KINDS), len(order))
        rows = list(zip(_iso(e_t).tolist(), user_ids[e_user].tolist(), item_ids[e_item].tolist(),
                        np.array(["impression", "click", "purchase"])[e_type].tolist()))
        for j in np.flatnonzero(is_corrupt):
            kind, row = CORRUPT_KINDS[bad_kind[j]], rows[j]
            corrupt[kind] += 1
            rows[j] = {"bad_timestamp": ("not-a-time",) + row[1:],
                       "unknown_item": row[:2] + ("i99999x", row[3]),
                       "wrong_columns": row[:2] + (_DROP, row[3])}[kind]
        rows = [rows[j] for j in np.repeat(np.arange(len(rows)), 1 + is_dup).tolist()]
        events.write(rows)
        counts["event_rows"] += len(rows)
        counts["duplicate_rows"] += int(is_dup.sum())

        clean = src[(src >= 0) & ~is_corrupt]
        counts["truth_rows"] += len(clean)
        if truth_file is not None:
            cols = (_iso(imp_t[clean]), user_ids[user[clean]], item_ids[item[clean]],
                    p_click[clean], (p_click * p_buy)[clean], click[clean], buy[clean])
            truth_file.write("".join(
                f"{t},{us},{it},{pc:.6f},{pv:.6f},{c:d},{v:d}\n"
                for t, us, it, pc, pv, c, v in zip(*(col.tolist() for col in cols))))
    events.close()
    if truth_file is not None:
        truth_file.close()
    eval_start = config.eval_start_ts
    return {
        "users": gen.num_users, "items": gen.num_items, **counts,
        "new_items": int((launch[:gen.num_items] > start).sum()),
        "new_users": int((arrival[:gen.num_users] > start).sum()),
        # Cold in the eval window: an event there and none before it.
        "cold_items": int(((first_item >= eval_start) & (first_item < _NEVER)).sum()),
        "cold_users": int(((first_user >= eval_start) & (first_user < _NEVER)).sum()),
        "corrupt_rows": sum(corrupt.values()), "corrupt_by_kind": corrupt,
        "missing_images": len(bad_images["missing"]),
        "corrupt_images": len(bad_images["random_bytes"]) + len(bad_images["truncated"]),
        "empty_images": len(bad_images["empty"]), "bad_images": bad_images,
        "paths": {"users": config.input_path(inp.users), "items": config.input_path(inp.items),
                  "events": config.input_path(inp.events), "truth": config.input_path(inp.truth),
                  "images_root": config.input_path(inp.images_root)},
    }


def expected_clicks(config: config_lib.Config) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The hidden preference model: how many clicks user ``u`` gives item ``i`` per session.

    Proportional to ``exp(log_pop[i]) * sigmoid(click_logit(u, i))``: items
    are shown in proportion to their popularity and then clicked with the
    true probability, so ranking the catalogue by it is the oracle's top K.
    Users and items are the row indices of ``u{u:06d}`` and ``i{i:05d}``.
    An item launched during the eval window is on sale for part of it only:
    its exposure is scaled by that part (0 for one launched after the days).
    """
    gen = config.generate
    # The world is drawn from the first of run()'s four streams: the same world.
    world = _world(np.random.default_rng(np.random.SeedSequence(gen.seed).spawn(4)[0]), gen)
    start = parse_timestamp(gen.start_date)
    launch = _cold_start(gen, start, min(gen.impressions_per_session, gen.num_items))[0]
    end, eval_start = start + gen.days * 86400, config.eval_start_ts
    on_sale = np.clip((end - np.maximum(launch, eval_start)) / max(end - eval_start, 1), 0, 1)
    exposure = np.exp(world["log_pop"]) * on_sale
    return lambda u, i: exposure[i] * _sigmoid(world["click_logit"](u, i))


def truth_columns(truth_csv_path: str) -> Dict[str, np.ndarray]:
    """A ``truth.csv`` written by :func:`run` as arrays: ``timestamp`` in unix
    seconds, ``user_id`` and ``item_id`` strings, ``click`` / ``conversion``
    ints and ``p_click`` / ``p_conversion`` floats, one entry per impression."""
    with open(truth_csv_path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        cols = list(zip(*reader)) or [()] * len(header)
    data = dict(zip(header, cols))
    ts = np.array([t.rstrip("Z") for t in data["timestamp"]], dtype="datetime64[s]")
    out = {"timestamp": ts.astype(np.int64),
           "user_id": np.array(data["user_id"], dtype=str),
           "item_id": np.array(data["item_id"], dtype=str)}
    for task, prob in (("click", "p_click"), ("conversion", "p_conversion")):
        out[task] = np.array(data[task], dtype=int)
        out[prob] = np.array(data[prob], dtype=float)
    return out


def read_truth(truth_csv_path: str, start_ts: int) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Realised labels and true probabilities per task, from ``start_ts`` on.

    Args:
        truth_csv_path: A ``truth.csv`` written by :func:`run`.
        start_ts: Unix seconds; earlier impressions are ignored (e.g. the eval start).

    Returns:
        {'click': (labels, p_click), 'conversion': (labels, p_conversion)}: the
        AUC of each pair is the best any model can expect (the oracle).
    """
    data = truth_columns(truth_csv_path)
    keep = data["timestamp"] >= start_ts
    return {task: (data[task][keep], data[prob][keep])
            for task, prob in (("click", "p_click"), ("conversion", "p_conversion"))}
