"""Side tables and the join that turns labelled examples into full raw-example rows."""

from __future__ import annotations

import json
from typing import Any, Dict

import apache_beam as beam

from pipelines import dead_letter as dl
from pipelines import examples as ex
from pipelines.keyed import AttachOne
from pipelines.outputs import Outputs
from pipelines.parse import EVENTS, HAS_IMAGE_KEY, IMAGE_PATH_KEY, RowError, convert
from pipelines.rows import raw_row
from shoprec.core import registry as F


EMBEDDINGS = "embeddings"


class _ParseEmbedding(beam.DoFn):
    """A serialized embed-job row → (item_id, {embedding feature: floats, has_image: 0/1})."""

    def __init__(self, feature: F.Feature):
        self._feature = feature

    def process(self, record: bytes):
        try:
            row = ex.decode_embedding(record)
        except (KeyError, ValueError) as err:
            yield dl.tagged(EMBEDDINGS, "bad_embedding", f"not an embedding row: {err}",
                            repr(record[:200]))
            return
        vector = row[ex.EMBED_VECTOR]
        if len(vector) != self._feature.width:
            yield dl.tagged(EMBEDDINGS, "bad_embedding",
                            f"{len(vector)} floats, {self._feature.name} has "
                            f"width {self._feature.width}", row[ex.EMBED_ITEM_ID])
            return
        yield row[ex.EMBED_ITEM_ID], {self._feature.name: vector,
                                            HAS_IMAGE_KEY: row[ex.EMBED_HAS_IMAGE]}


class AttachEmbeddings(beam.PTransform):
    """(item_id, parsed item row) → (item_id, item-table row with its photo embedding).

    The embed stage wrote one row per catalogue item (a zero vector and
    ``has_image = 0`` where the photo was bad); a CoGroupByKey on the item id
    joins them. Every item is looked up once (``rows_read/embeddings``). An
    item with no embedding row is a ``missing_embedding`` dead letter and
    keeps its examples with a zero vector and ``item_has_image = 0``; an
    embedding row of the wrong width is ``bad_embedding``, a second one for
    an item ``duplicate_item``; rows of items not in the (valid) item table
    are counted as ``embeddings/unmatched``. The item-table row carries exactly
    ``registry.source_names(Source.ITEM)``.
    """

    def __init__(self, embeddings: beam.PCollection, feature: F.Feature):
        """Args:
            embeddings: The embed stage's serialized rows (``pipelines.examples``).
            feature: The registry's EMBEDDING feature.
        """
        super().__init__()
        self._embeddings = embeddings
        self._feature = feature

    def expand(self, items) -> Outputs:
        feature = self._feature
        parsed = self._embeddings | "ParseEmbeddings" >> beam.ParDo(
            _ParseEmbedding(feature)).with_outputs(dl.DEAD_LETTER_TAG, main="main")
        zero = {feature.name: [0.0] * feature.width, HAS_IMAGE_KEY: 0}

        def merge(kv):
            item_id, grouped = kv
            rows, found = grouped["row"], grouped["embedding"]
            if not rows:
                # An item that failed validation (already its own dead letter) or
                # a table embedding more than this catalogue: counted, not joined.
                beam.metrics.Metrics.counter(dl.NAMESPACE, "embeddings/unmatched").inc()
                return
            for extra in found[1:]:
                yield dl.tagged(EMBEDDINGS, "duplicate_item", "item embedded twice", item_id)
            beam.metrics.Metrics.counter(dl.NAMESPACE, f"rows_read/{EMBEDDINGS}").inc()
            if found:
                beam.metrics.Metrics.counter(dl.NAMESPACE, f"rows_valid/{EMBEDDINGS}").inc()
                beam.metrics.Metrics.counter(
                    dl.NAMESPACE, f"embeddings/{'with' if found[0][HAS_IMAGE_KEY] else 'no'}"
                    "_image").inc()
            else:
                yield dl.tagged(EMBEDDINGS, "missing_embedding",
                                "item has no row in the embed stage's table; re-run "
                                "`shoprec embed`", item_id)
            merged = {k: v for k, v in rows[0].items() if k != IMAGE_PATH_KEY}
            merged.update(found[0] if found else zero)
            yield item_id, merged

        joined = ({"row": items, "embedding": parsed.main}
                  | "Join" >> beam.CoGroupByKey()
                  | "Merge" >> beam.FlatMap(merge).with_outputs(dl.DEAD_LETTER_TAG, main="main"))
        dead = ((parsed[dl.DEAD_LETTER_TAG], joined[dl.DEAD_LETTER_TAG])
                | "EmbeddingDeadLetters" >> beam.Flatten())
        return Outputs(joined.main, dead)


def item_from_events(item_id: str, values: Dict[str, Dict[str, int]],
                     registry: F.Registry) -> Dict[str, Any]:
    """An item row from the values its events carried: the most frequent per feature.

    Ties go to the smallest value, so the row does not depend on event order.

    Raises:
        RowError: a required feature never had a valid value.
    """
    row: Dict[str, Any] = {registry.item_key: item_id}
    for f in registry.of_source(F.Source.ITEM):
        counts = values.get(f.source_column, {})
        best = min(counts, key=lambda v: (-counts[v], v)) if counts else None
        row[f.name] = convert(f, best)
    return row


class ItemsFromEvents(beam.PTransform):
    """Events → (item_id, item row) for a log with no items file (e.g. Taobao).

    Item features are read from the event columns they name; an item whose
    required value is never valid is an ``items`` dead letter.
    """

    def __init__(self, registry: F.Registry):
        super().__init__()
        self._registry = registry

    def expand(self, events) -> Outputs:
        registry = self._registry
        columns = [f.source_column for f in registry.of_source(F.Source.ITEM)]

        def values(event):
            return [((event[F.ITEM_KEY], c, event.get(c, "")), 1) for c in columns
                    if event.get(c, "") != ""]

        def build(item_and_counts):
            item_id, pairs = item_and_counts
            counts: Dict[str, Dict[str, int]] = {}
            for (column, value), n in pairs:
                counts.setdefault(column, {})[value] = n
            beam.metrics.Metrics.counter(dl.NAMESPACE, "rows_read/items").inc()
            try:
                row = item_from_events(item_id, counts, registry)
            except RowError as err:
                yield dl.tagged("items", err.reason, err.detail, item_id)
                return
            beam.metrics.Metrics.counter(dl.NAMESPACE, "rows_valid/items").inc()
            yield item_id, row

        counted = (events
                   | "ItemValues" >> beam.FlatMap(values)
                   | "CountValues" >> beam.CombinePerKey(sum)
                   | "ByItem" >> beam.Map(lambda kv: (kv[0][0], ((kv[0][1], kv[0][2]), kv[1]))))
        ids = (events
               | "ItemIds" >> beam.Map(lambda e: e[F.ITEM_KEY])
               | "DistinctItems" >> beam.Distinct()
               | "KeyItems" >> beam.Map(lambda item_id: (item_id, None)))
        out = ({"values": counted, "ids": ids}
               | "GroupByItem" >> beam.CoGroupByKey()
               | "Build" >> beam.FlatMap(lambda kv: build((kv[0], kv[1]["values"])))
               .with_outputs(dl.DEAD_LETTER_TAG, main="main"))
        return Outputs(out.main, out[dl.DEAD_LETTER_TAG])


class JoinFeatures(beam.PTransform):
    """(labelled example, history or None) → full raw-example rows (``pipelines.rows``).

    The users table is joined by key (:class:`pipelines.keyed.AttachOne`: no
    worker holds the table, nor all of a hot user's examples at once); users
    missing from it get registry defaults. The items are a side input
    (``AsDict``): every worker holds the catalogue, within
    ``ingest.max_catalogue_items`` (``pipelines.side_inputs``), so an item
    everyone buys is never one worker's group. A missing item (cannot happen
    after ``DropUnknownItems``) is an ``unknown_item`` dead letter. History
    match counts are set here, where the example's item attributes are
    known. The history is the user's strictly before the example
    (``AddHistory``), None where the registry has no history features.
    """

    def __init__(self, items: beam.PCollection, users: beam.PCollection,
                 registry: F.Registry):
        """Args:
            items: (item_id, item-table row) from :class:`AttachEmbeddings`.
            users: (user_id, user row) from ``ParseTable``.
            registry: The run's registry.
        """
        super().__init__()
        self._items = items
        self._users = users
        self._registry = registry

    def expand(self, examples) -> Outputs:
        registry = self._registry

        def join(example_history_and_user, items):
            (example, history), user = example_history_and_user
            item = items.get(example[F.ITEM_KEY])
            if item is None:
                yield dl.tagged(EVENTS, "unknown_item", "item not in the item table",
                                json.dumps(example, sort_keys=True, default=str))
                return
            event = dict(example)
            event.setdefault(registry.sampled_key, 0)
            yield raw_row(event, user, item, history, registry)

        out = (examples
               | "KeyByUser" >> beam.Map(lambda pair: (pair[0][F.USER_KEY], pair))
               | "JoinUsers" >> AttachOne(self._users)
               | "Join" >> beam.FlatMap(join, items=beam.pvalue.AsDict(self._items))
               .with_outputs(dl.DEAD_LETTER_TAG, main="main"))
        return Outputs(out.main, out[dl.DEAD_LETTER_TAG])
