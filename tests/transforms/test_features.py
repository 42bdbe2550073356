"""The feature registry as data: checks, helpers and the plain-data round trip."""

import pytest
import tensorflow as tf

from transforms import features as F

S, K = F.Source, F.Kind
IDS = (F.Feature("user_id", S.EVENT, K.ID), F.Feature("item_id", S.EVENT, K.ID))


def test_default_registry_helpers():
    R = F.DEFAULT
    assert [f.name for f in R.labels()] == ["click", "conversion"]
    assert R.embedding_feature().name == "item_image_embedding"
    assert R.raw_feature_spec()["item_image_embedding"].shape == [F.IMAGE_EMBEDDING_WIDTH]
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
    assert F.Registry.from_dict(F.DEFAULT.to_dict()) == F.DEFAULT


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
])
def test_registry_rejects_inconsistent_features(extra, message):
    with pytest.raises(ValueError, match=message):
        F.Registry(IDS + extra)


def test_keys_must_be_id_features():
    with pytest.raises(ValueError, match="key 'item_id'"):
        F.Registry((IDS[0],))
    with pytest.raises(ValueError, match="unknown|Source|valid"):
        F.feature_from_dict({"name": "x", "source": "basket", "kind": "id"})
