"""The shop ``shoprec generate`` writes: its feature registry and data set description.

A config without a ``dataset:`` section describes this shop; any part a
config's ``dataset:`` does give replaces that part of :func:`dataset` whole
(``shoprec.core.loading``). Nothing else falls back to it: every stage is
handed the registry of its run.
"""

from __future__ import annotations

from typing import Tuple

from shoprec.core import registry as F
from shoprec.core.dataset import ColumnSpec, DatasetConfig, EventsSpec, TableSpec

# Width of the item photo embedding: the packaged image encoder's output.
IMAGE_EMBEDDING_WIDTH = 32

REGISTRY = F.Registry(features=(
    F.Feature("user_id", F.Source.EVENT, F.Kind.ID, oov_buckets=16, embedding_dim=16),
    F.Feature("item_id", F.Source.EVENT, F.Kind.ID, oov_buckets=16, embedding_dim=16),
    F.Feature("user_age", F.Source.USER, F.Kind.NUMERIC, column="age", min_value=0,
              max_value=120, required=False, default=35.0),
    F.Feature("user_region", F.Source.USER, F.Kind.CATEGORICAL, column="region", required=False,
              default="unknown"),
    F.Feature("user_membership", F.Source.USER, F.Kind.CATEGORICAL, column="membership",
              required=False, default="none"),
    F.Feature("item_category", F.Source.ITEM, F.Kind.CATEGORICAL, column="category"),
    F.Feature("item_brand", F.Source.ITEM, F.Kind.CATEGORICAL, column="brand", oov_buckets=4),
    F.Feature("item_colour", F.Source.ITEM, F.Kind.CATEGORICAL, column="colour"),
    F.Feature("item_price", F.Source.ITEM, F.Kind.NUMERIC, column="price", min_value=0.0,
              max_value=1e6, log=True),
    F.Feature("item_image_embedding", F.Source.ITEM, F.Kind.EMBEDDING,
              width=IMAGE_EMBEDDING_WIDTH),
    F.Feature("item_has_image", F.Source.ITEM, F.Kind.FLAG),
    # The generator's tastes depend on age group (edges 30, 45, 60) and on
    # region x category: these hand the model both directly.
    F.Feature("user_age_bucket", F.Source.DERIVED, F.Kind.BUCKETIZED,
              derived_from=("user_age",), boundaries=(30.0, 45.0, 60.0), embedding_dim=4),
    F.Feature("user_region_x_item_category", F.Source.DERIVED, F.Kind.CROSS,
              derived_from=("user_region", "item_category"), hash_buckets=512, embedding_dim=4),
    F.Feature("click", F.Source.EVENT, F.Kind.LABEL, event_type="click"),
    F.Feature("conversion", F.Source.EVENT, F.Kind.LABEL, event_type="purchase"),
))


def _columns_from_features(features, source: F.Source) -> Tuple[ColumnSpec, ...]:
    types = {"string": "string", "float32": "float", "int64": "int"}
    out = []
    for f in features:
        if f.source == source and f.kind not in (F.Kind.EMBEDDING, F.Kind.FLAG):
            out.append(ColumnSpec(f.source_column, types[f.dtype], f.required))
    return tuple(out)


def dataset(registry: F.Registry) -> DatasetConfig:
    """The data set ``shoprec generate`` writes, described over ``registry``
    (:data:`REGISTRY`, or a variant of it a test or benchmark builds).

    Value ranges stay on the registry features, so a bad price is
    ``out_of_range`` whichever way it is checked.
    """
    funnel = ("impression", "click", "purchase")
    events = EventsSpec(
        columns=(ColumnSpec(F.TIMESTAMP_KEY, "timestamp"), ColumnSpec(F.USER_KEY),
                 ColumnSpec(F.ITEM_KEY), ColumnSpec("event_type")),
        event_types=tuple((s, s) for s in funnel))
    items = TableSpec(
        columns=(ColumnSpec(registry.item_key),)
        + _columns_from_features(registry.features, F.Source.ITEM)
        + (ColumnSpec("image_path", required=False),),
        key=registry.item_key, image_path="image_path")
    users = TableSpec(columns=(ColumnSpec(registry.user_key),)
                      + _columns_from_features(registry.features, F.Source.USER),
                      key=registry.user_key)
    return DatasetConfig(events=events, items=items, users=users, features=registry.features)


