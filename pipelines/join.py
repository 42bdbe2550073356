"""Side tables and the join that turns labelled examples into full raw-example rows."""

from __future__ import annotations

import json
from typing import Any, Dict

import apache_beam as beam

from pipelines import dead_letter as dl
from pipelines.history import add_matches, empty_history
from pipelines.images import LoadItemImages
from pipelines.outputs import Outputs
from pipelines.parse import EVENTS, IMAGE_PATH_KEY, convert, default_user, RowError
from transforms import features as F


class AttachImages(beam.PTransform):
    """(item_id, parsed item row) → (item_id, item-table row with image features).

    The item-table row carries exactly ``registry.source_names(Source.ITEM)``.
    """

    def __init__(self, images_root: str, image: F.Feature):
        super().__init__()
        self._root = images_root
        self._image = image

    def expand(self, items) -> Outputs:
        images = (items
                  | "ImagePaths" >> beam.Map(lambda kv: (kv[0], kv[1][IMAGE_PATH_KEY]))
                  | "LoadItemImages" >> LoadItemImages(self._root, self._image.image_shape,
                                                       self._image.name))

        def merge(kv):
            item_id, grouped = kv
            (row,), (image,) = grouped["row"], grouped["image"]
            merged = {k: v for k, v in row.items() if k != IMAGE_PATH_KEY}
            merged.update(image)
            return item_id, merged

        joined = ({"row": items, "image": images.main}
                  | "Join" >> beam.CoGroupByKey()
                  | "Merge" >> beam.Map(merge))
        return Outputs(joined, images.dead_letter)


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
    """Labelled examples → full raw-example rows, joining item and user attributes.

    Both tables are side inputs (``AsDict``): catalogue- and user-base-sized
    tables fit in worker memory at this project's scale. Users missing from
    the table get registry defaults; a missing item (cannot happen after
    ``DropUnknownItems``) is an ``unknown_item`` dead letter. History match
    counts are set here, where the example's item attributes are known.
    """

    def __init__(self, items: beam.PCollection, users: beam.PCollection,
                 registry: F.Registry):
        """Args:
            items: (item_id, item-table row) from :class:`AttachImages`.
            users: (user_id, user row) from ``ParseTable``.
            registry: The run's registry.
        """
        super().__init__()
        self._items = items
        self._users = users
        self._registry = registry

    def expand(self, examples) -> Outputs:
        registry = self._registry
        has_history = bool(registry.of_source(F.Source.HISTORY))

        def join(example, items, users):
            item = items.get(example[F.ITEM_KEY])
            if item is None:
                yield dl.tagged(EVENTS, "unknown_item", "item not in the item table",
                                json.dumps(example, sort_keys=True, default=str))
                return
            row = dict(empty_history(registry)) if has_history else {}
            row.update(example)
            row.setdefault(registry.sampled_key, 0)
            row.update(item)
            user_id = example[F.USER_KEY]
            row.update(users.get(user_id) or default_user(user_id, registry))
            for canonical, key in ((F.USER_KEY, registry.user_key),
                                   (F.ITEM_KEY, registry.item_key)):
                if canonical != key:
                    row[key] = row.pop(canonical)
            yield add_matches(row, registry) if has_history else row

        out = examples | "Join" >> beam.FlatMap(
            join, items=beam.pvalue.AsDict(self._items),
            users=beam.pvalue.AsDict(self._users)).with_outputs(dl.DEAD_LETTER_TAG, main="main")
        return Outputs(out.main, out[dl.DEAD_LETTER_TAG])
