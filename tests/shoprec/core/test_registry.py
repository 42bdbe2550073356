"""The feature registry as data: checks, helpers and the plain-data round trip."""

import pytest
import tensorflow as tf

from shoprec.core import generated_shop as shop
from shoprec.core import registry as F

S, K = F.Source, F.Kind
IDS = (F.Feature("user_id", S.EVENT, K.ID), F.Feature("item_id", S.EVENT, K.ID))


def test_default_registry_helpers():
    R = shop.REGISTRY
    assert [f.name for f in R.labels()] == ["click", "conversion"]
    assert R.embedding_feature().name == "item_image_embedding"
    assert R.raw_feature_spec()["item_image_embedding"].shape == [shop.IMAGE_EMBEDDING_WIDTH]
    assert R.source_names(S.ITEM)[0] == "item_id"
    assert "click" not in R.example_names(include_labels=False)
    assert R["item_price"].log and R.by_name["user_age"].default == 35.0
    assert not R.history_lists()


def test_history_lists_parse_as_varlen_and_share_vocabularies():
    registry = F.Registry(IDS + (
        F.Feature("hist_items", S.HISTORY, K.HISTORY, history_of="item_id", max_length=4,
                  vocabulary="item_id"),))
    spec = registry.raw_feature_spec()
    assert isinstance(spec["hist_items"], tf.io.VarLenFeature)
    assert registry["hist_items"].vocab_filename == "vocab_item_id"
    assert registry.embedding_feature() is None


def test_round_trip_through_plain_data():
    assert F.Registry.from_dict(shop.REGISTRY.to_dict()) == shop.REGISTRY
    bucketized = shop.REGISTRY["user_age_bucket"]
    assert bucketized.boundaries == (30.0, 45.0, 60.0) and bucketized.index_size == 4
    assert shop.REGISTRY["user_region_x_item_category"].derived_from == ("user_region",
                                                                     "item_category")


def test_plain_data_lists_become_tuples_of_their_types():
    cross = F.feature_from_dict({"name": "c", "source": "derived", "kind": "cross",
                                 "derived_from": ["a", "b"], "hash_buckets": 8})
    age = F.feature_from_dict({"name": "g", "source": "derived", "kind": "bucketized",
                               "derived_from": ["age"], "boundaries": [18, 65]})
    assert cross.derived_from == ("a", "b") and cross.index_size == 8
    assert age.boundaries == (18.0, 65.0) and age.index_size == 3


def test_default_derived_features_are_not_raw():
    R = shop.REGISTRY
    derived = {"user_age_bucket", "user_region_x_item_category"}
    assert {f.name for f in R.of_source(S.DERIVED)} == derived
    assert not derived & set(R.raw_feature_spec())
    assert not derived & set(R.example_names())
    assert not derived & set(R.source_names(S.USER) + R.source_names(S.ITEM))


TEXT = F.Feature("desc", S.ITEM, K.TEXT, max_length=4, top_k=10)
AGE = F.Feature("age", S.USER, K.NUMERIC)
REGION = F.Feature("region", S.USER, K.CATEGORICAL)


@pytest.mark.parametrize("extra, message", [
    ((F.Feature("user_id", S.USER, K.CATEGORICAL),), "declared twice"),
    ((F.Feature("h", S.HISTORY, K.HISTORY, history_of="item_id"),), "max_length"),
    ((F.Feature("h", S.HISTORY, K.HISTORY, history_of="user_id", max_length=3),), "history_of"),
    ((F.Feature("h", S.EVENT, K.HISTORY, max_length=3),), "not from history"),
    ((F.Feature("n", S.HISTORY, K.NUMERIC),), "exactly one of"),
    ((F.Feature("n", S.HISTORY, K.NUMERIC, history_of="item_id"),), "there is none"),
    ((F.Feature("c", S.ITEM, K.CATEGORICAL, vocabulary="nope"),), "shares the vocabulary"),
    ((F.Feature("a", S.ITEM, K.EMBEDDING, width=2),
      F.Feature("b", S.ITEM, K.EMBEDDING, width=2)), "at most one EMBEDDING"),
    ((F.Feature("a", S.USER, K.EMBEDDING, width=2),), "must come from the item table"),
    ((F.Feature("a", S.ITEM, K.EMBEDDING),), "width >= 1"),
    # Hashed and text features.
    ((F.Feature("p", S.USER, K.HASHED),), "hash_buckets >= 1"),
    ((F.Feature("p", S.USER, K.HASHED, hash_buckets=8, required=False),), "string default"),
    ((F.Feature("p", S.USER, K.HASHED, hash_buckets=8, vocabulary="item_id"),),
     "cannot share a vocabulary"),
    ((F.Feature("t", S.ITEM, K.TEXT, top_k=10),), "max_length >= 1"),
    ((F.Feature("t", S.ITEM, K.TEXT, max_length=4),), "top_k"),
    ((F.Feature("t", S.DERIVED, K.TEXT, max_length=4, top_k=10),), "only they"),
    # Crosses.
    ((REGION, F.Feature("x", S.DERIVED, K.CROSS, derived_from=("region", "nope"),
                        hash_buckets=8)), "two or more distinct"),
    ((REGION, F.Feature("x", S.DERIVED, K.CROSS, derived_from=("region",), hash_buckets=8)),
     "two or more distinct"),
    ((REGION, F.Feature("x", S.DERIVED, K.CROSS, derived_from=("region", "region"),
                        hash_buckets=8)), "two or more distinct"),
    ((REGION, AGE, F.Feature("x", S.DERIVED, K.CROSS, derived_from=("region", "age"),
                             hash_buckets=8)), "ID / CATEGORICAL / HASHED"),
    ((TEXT, REGION, F.Feature("x", S.DERIVED, K.CROSS, derived_from=("region", "desc"),
                              hash_buckets=8)), "ID / CATEGORICAL / HASHED"),
    ((REGION, F.Feature("x", S.DERIVED, K.CROSS, derived_from=("region", "user_id"))),
     "hash_buckets >= 1"),
    ((REGION, F.Feature("x", S.USER, K.CROSS, derived_from=("region", "user_id"),
                        hash_buckets=8)), "only they"),
    # Bucketized numerics.
    ((REGION, F.Feature("b", S.DERIVED, K.BUCKETIZED, derived_from=("region",),
                        boundaries=(1.0,))), "one NUMERIC"),
    ((AGE, F.Feature("b", S.DERIVED, K.BUCKETIZED, derived_from=("age", "age"),
                     num_buckets=4)), "one NUMERIC"),
    ((F.Feature("b", S.DERIVED, K.BUCKETIZED, derived_from=("nope",), num_buckets=4),),
     "one NUMERIC"),
    ((AGE, F.Feature("b", S.DERIVED, K.BUCKETIZED, derived_from=("age",))), "exactly one of"),
    ((AGE, F.Feature("b", S.DERIVED, K.BUCKETIZED, derived_from=("age",), num_buckets=4,
                     boundaries=(1.0,))), "exactly one of"),
    ((AGE, F.Feature("b", S.DERIVED, K.BUCKETIZED, derived_from=("age",), num_buckets=1)),
     "num_buckets >= 2"),
    ((AGE, F.Feature("b", S.DERIVED, K.BUCKETIZED, derived_from=("age",),
                     boundaries=(30.0, 30.0))), "strictly ascending"),
    ((AGE, F.Feature("b", S.USER, K.BUCKETIZED, derived_from=("age",), num_buckets=4)),
     "only they"),
    # Next-event targets: a categorical in its item attribute's vocabulary, or a label.
    ((F.Feature("n", S.NEXT, K.NUMERIC, event_type="click"),), "categorical or a label"),
    ((F.Feature("n", S.NEXT, K.LABEL),), "with an event_type"),
    ((F.Feature("colour", S.ITEM, K.CATEGORICAL),
      F.Feature("n", S.NEXT, K.CATEGORICAL, event_type="click", history_of="colour",
                default="")), "vocabulary naming one categorical item feature"),
    ((REGION, F.Feature("n", S.NEXT, K.CATEGORICAL, event_type="click", history_of="region",
                        vocabulary="region", default="")), "one categorical item feature"),
    # Only crosses and bucketized numerics are derived, and they read nothing raw.
    ((F.Feature("c", S.DERIVED, K.CATEGORICAL),), "only they"),
    ((AGE, F.Feature("c", S.USER, K.CATEGORICAL, derived_from=("age",))), "not derived"),
    # Point-in-time aggregates.
    ((F.Feature("a", S.AGGREGATE, K.NUMERIC, event_type="click"),), "set aggregate_key"),
    ((F.Feature("a", S.USER, K.NUMERIC, aggregate_key=("user_id",)),), "set aggregate_key"),
    ((F.Feature("a", S.AGGREGATE, K.NUMERIC, aggregate_key=("user_id",)),), "one event_type"),
    ((F.Feature("a", S.AGGREGATE, K.FLAG, aggregate_key=("user_id",), event_type="click"),),
     "is numeric"),
    ((REGION, F.Feature("a", S.AGGREGATE, K.NUMERIC, aggregate_key=("region",),
                        event_type="click")), "item feature"),
    ((F.Feature("a", S.AGGREGATE, K.NUMERIC, aggregate_key=("user_id", "item_id", "item_id"),
                event_type="click"),), "item feature"),
    ((F.Feature("a", S.AGGREGATE, K.NUMERIC, aggregate_key=("item_id",), event_type="click",
                window_days=-1),), "window_days >= 0"),
    ((F.Feature("a", S.AGGREGATE, K.NUMERIC, aggregate_key=("item_id",), event_type="click",
                ratio_to="impression"),), "smoothing > 0"),
    ((F.Feature("a", S.USER, K.NUMERIC, window_days=7),), "for aggregates"),
    # Target encodings.
    ((REGION, F.Feature("t", S.DERIVED, K.NUMERIC, derived_from=("region",), target="nope",
                        smoothing=1.0, folds=2)), "names a label"),
    ((AGE, F.Feature("y", S.EVENT, K.LABEL), F.Feature(
        "t", S.DERIVED, K.NUMERIC, derived_from=("age",), target="y", smoothing=1.0,
        folds=2)), "names a label"),
    ((F.Feature("y", S.EVENT, K.LABEL), F.Feature(
        "t", S.DERIVED, K.NUMERIC, derived_from=("item_id",), target="y", folds=2)),
     "smoothing > 0"),
    ((F.Feature("y", S.EVENT, K.LABEL), F.Feature(
        "t", S.DERIVED, K.NUMERIC, derived_from=("item_id",), target="y", smoothing=1.0,
        folds=1)), "folds >= 2"),
    # Candidate signals.
    ((F.Feature("c", S.CANDIDATE, K.NUMERIC),), "only they, set signal"),
    ((F.Feature("c", S.ITEM, K.NUMERIC, signal="pop.rank"),), "only they, set signal"),
    ((F.Feature("c", S.CANDIDATE, K.FLAG, signal="pop.rank"),), "is numeric with signal"),
    ((F.Feature("c", S.CANDIDATE, K.NUMERIC, signal="pop.depth"),), "is numeric with signal"),
    ((F.Feature("c", S.CANDIDATE, K.NUMERIC, signal="pair.rank"),), "is numeric with signal"),
    ((F.Feature("c", S.CANDIDATE, K.NUMERIC, signal="pair.count"),), "reads one event_type"),
    ((F.Feature("c", S.CANDIDATE, K.NUMERIC, signal="item.trend", event_type="click"),),
     "window_days >= 1"),
    ((F.Feature("c", S.CANDIDATE, K.NUMERIC, signal="pair.days_since", event_type="click"),),
     "needs a default >= 0"),
])
def test_registry_rejects_inconsistent_features(extra, message):
    with pytest.raises(ValueError, match=message):
        F.Registry(IDS + extra)


def test_keys_must_be_id_features():
    with pytest.raises(ValueError, match="key 'item_id'"):
        F.Registry((IDS[0],))
    with pytest.raises(ValueError, match="unknown|Source|valid"):
        F.feature_from_dict({"name": "x", "source": "basket", "kind": "id"})


def test_aggregates_and_target_encodings_by_where_they_are_served():
    registry = F.Registry(IDS + (
        F.Feature("item_category", S.ITEM, K.CATEGORICAL),
        F.Feature("buy", S.EVENT, K.LABEL, event_type="purchase"),
        F.Feature("u_buys", S.AGGREGATE, K.NUMERIC, aggregate_key=("user_id",),
                  event_type="purchase", window_days=7),
        F.Feature("c_rate", S.AGGREGATE, K.NUMERIC, aggregate_key=("item_category",),
                  event_type="purchase", ratio_to="click", smoothing=5.0),
        F.Feature("uc_clicks", S.AGGREGATE, K.NUMERIC,
                  aggregate_key=("user_id", "item_category"), event_type="click"),
        F.Feature("te_item", S.DERIVED, K.NUMERIC, derived_from=("item_id",), target="buy",
                  smoothing=10.0, folds=5),
    ))
    assert F.names(registry.aggregates()) == ("u_buys", "c_rate", "uc_clicks")
    assert F.names(registry.user_aggregates()) == ("u_buys",)
    assert F.names(registry.item_aggregates()) == ("c_rate",)
    assert F.names(registry.target_encodings()) == ("te_item",)
    assert F.names(registry.pair_aggregates()) == ("uc_clicks",)
    # The pair aggregate rides in the user's history row as its state (no model input).
    assert registry.history_table_names() == ["user_id", "u_buys", "uc_clicks__by_value"]
    assert registry.at_eval_history_names() == ["user_id", "u_buys"]
    assert registry.item_table_names() == ["item_id", "item_category", "c_rate"]
    assert "u_buys" in registry.raw_feature_spec() and "te_item" not in registry.raw_feature_spec()
    assert "uc_clicks__by_value" not in registry.raw_feature_spec()
    assert registry.column("uc_clicks__by_value").dtype == "string"
    assert registry.column("u_buys") is registry["u_buys"]
    assert set(registry.table_spec(["u_buys", "uc_clicks__by_value"])) == {
        "u_buys", "uc_clicks__by_value"}
    with pytest.raises(KeyError):
        registry.column("nope")
    with pytest.raises(ValueError, match="state column"):
        F.Registry(registry.features + (F.Feature("uc_clicks__by_value", S.USER, K.NUMERIC),))
    assert F.Registry.from_dict(registry.to_dict()) == registry
    assert F.feature_from_dict(F.feature_to_dict(registry["uc_clicks"])).aggregate_key == (
        "user_id", "item_category")
