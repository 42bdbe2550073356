"""preprocessing_fn on hashed, crossed, bucketized and text features, over real TFT + Beam.

Expected values are worked out by hand; hash buckets come from calling
``tf.strings.to_hash_bucket_fast`` on the literal strings that should be
hashed (a cross joins its raw values with ``F.CROSS_SEPARATOR``, "\\x1f"), so
the tests check the wiring, the caps and the empty values, not the hash.
"""

import tensorflow as tf

from shoprec.core import registry as F
from tests.transforms.tft_harness import check_transformed

S, K = F.Source, F.Kind
POSTAL_BUCKETS = 1 << 20  # wide, so a wrong string would not land on the expected bucket
CROSS_BUCKETS = 1 << 20
REGISTRY = F.Registry((
    F.Feature("user_id", S.EVENT, K.ID),
    F.Feature("item_id", S.EVENT, K.ID),
    F.Feature("seq", S.EVENT, K.NUMERIC),  # row order: z-scores keep it
    F.Feature("postal", S.USER, K.HASHED, hash_buckets=POSTAL_BUCKETS, required=False,
              default=""),
    F.Feature("region", S.USER, K.CATEGORICAL),
    F.Feature("age", S.USER, K.NUMERIC),
    F.Feature("category", S.ITEM, K.CATEGORICAL),
    F.Feature("desc", S.ITEM, K.TEXT, max_length=4, top_k=3, oov_buckets=2, required=False,
              default=""),
    F.Feature("age_group", S.DERIVED, K.BUCKETIZED, derived_from=("age",),
              boundaries=(30.0, 45.0, 60.0)),
    F.Feature("age_half", S.DERIVED, K.BUCKETIZED, derived_from=("age",), num_buckets=2),
    F.Feature("region_x_category", S.DERIVED, K.CROSS, derived_from=("region", "category"),
              hash_buckets=CROSS_BUCKETS),
    F.Feature("buy", S.EVENT, K.LABEL, event_type="purchase"),
))


def _row(seq, age, desc, postal="75001", region="north", category="shoes"):
    return {"user_id": "u1", "item_id": "i1", "seq": float(seq), "postal": postal,
            "region": region, "age": float(age), "category": category, "desc": desc, "buy": 0}


# Tokens: cotton x3, soft x2, top x2, dress x1. top_k=3 keeps cotton (0), then
# the tie soft / top broken by the token, descending: top (1), soft (2); dress
# is out of the vocabulary. Ages: 20, 25, 30 below the median gap, 61, 64, 70
# above it, so any boundary TFT picks in (30, 61] splits them alike.
TRAIN = [
    _row(0, 20.0, "Soft cotton top"),
    _row(1, 25.0, "Cotton, cotton DRESS!", postal=""),
    _row(2, 30.0, "", region="south"),
    _row(3, 61.0, "soft   top", postal="SW1A 1AA", category="hats"),
    _row(4, 64.0, ""),
    _row(5, 70.0, ""),
]
UNSEEN = [
    _row(6, 44.99, "Wool scarf", postal="never-seen", region="west", category="socks"),
    _row(7, 45.0, "top top top top top"),  # five tokens: the first four are kept
    _row(8, 0.0, "!!! ... ---"),  # punctuation only: no token
]


def _hash(strings, buckets):
    return list(tf.strings.to_hash_bucket_fast(strings, buckets).numpy())


def _oov(token):
    return 3 + _hash([token], 2)[0]  # 3 vocabulary tokens, then 2 OOV buckets


def _transformed(train, test, check):
    check_transformed(REGISTRY, train, test, check, sort_key=lambda r: r["seq"])


def test_indexed_features_transform_to_hand_derived_values():
    expected_postal = _hash(["75001", "", "75001", "SW1A 1AA", "75001", "75001", "never-seen",
                             "75001", "75001"], POSTAL_BUCKETS)
    pairs = ["north\x1fshoes", "north\x1fshoes", "south\x1fshoes", "north\x1fhats",
             "north\x1fshoes", "north\x1fshoes", "west\x1fsocks", "north\x1fshoes",
             "north\x1fshoes"]
    expected_cross = _hash(pairs, CROSS_BUCKETS)

    def check(rows):
        assert len(rows) == 9
        assert [r["postal"] for r in rows] == expected_postal
        assert [r["region_x_category"] for r in rows] == expected_cross
        # Boundaries 30, 45, 60: the index is how many are <= the age.
        assert [r["age_group"] for r in rows] == [0, 0, 1, 3, 3, 3, 1, 2, 0]
        # Two quantile buckets of train: its three lower ages, then its three upper ones.
        assert [r["age_half"] for r in rows][:6] == [0, 0, 0, 1, 1, 1]
        assert [list(r["desc"]) for r in rows] == [
            [2, 0, 1, -1],
            [0, 0, _oov("dress"), -1],
            [-1, -1, -1, -1],
            [2, 1, -1, -1],
            [-1, -1, -1, -1],
            [-1, -1, -1, -1],
            [_oov("wool"), _oov("scarf"), -1, -1],
            [1, 1, 1, 1],
            [-1, -1, -1, -1],
        ]

    _transformed(TRAIN, TRAIN + UNSEEN, check)


def test_derived_features_are_outputs_but_not_raw_inputs():
    derived = {"age_group", "age_half", "region_x_category"}
    assert not derived & set(REGISTRY.raw_feature_spec())
    assert not derived & set(REGISTRY.example_names())
    assert derived <= {f.name for f in REGISTRY.inputs()}
    # The text's vocabulary file is its own, for the trainer to size the table.
    assert REGISTRY["desc"].vocab_filename == "vocab_desc"
    assert [REGISTRY[n].index_size for n in sorted(derived)] == [4, 2, CROSS_BUCKETS]
