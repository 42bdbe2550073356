"""The Recommend composite (``pipelines.ranking``) on rows made by hand: every source,
exclusions, rank, blend, cap.

The toy SavedModel's towers make retrieval rank items by price
(user ``[1, age/100]`` · item ``[price/100, 1]``), while its ranker prefers
cheap items (``p_click = 1 - price/100``, ``p_conversion = age/100``), so
every list below is worked out by hand: the towers' candidates are the
dearest items, and the ranker reverses them; the other sources' lists come
from hand-made tables.
"""

import dataclasses
import math

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import ranking, sources
from pipelines.candidate_sources import CandidateState
from pipelines.candidates import Catalogue
from pipelines.options import pipeline_options
from shoprec.core import config as config_lib
from shoprec.core import recommend_config
from shoprec.core import generated_shop as shop

R = shop.REGISTRY
WIDTH = R.embedding_feature().width
PRICES = {"i1": 10.0, "i2": 20.0, "i3": 30.0, "i4": 40.0, "i5": 50.0}
CATEGORY = {"i1": "b", "i2": "b", "i3": "a", "i4": "a", "i5": "b"}


class _Toy(tf.Module):
    def _parse(self, examples, names):
        return tf.io.parse_example(examples, {n: tf.io.FixedLenFeature([], tf.float32)
                                              for n in names})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def user(self, examples):
        age = self._parse(examples, ["user_age"])["user_age"]
        return {"embedding": tf.stack([tf.ones_like(age), age / 100.0], axis=1)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def item(self, examples):
        price = self._parse(examples, ["item_price"])["item_price"]
        return {"embedding": tf.stack([price / 100.0, tf.ones_like(price)], axis=1)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, examples):
        parsed = self._parse(examples, ["item_price", "user_age"])
        return {"p_click": 1.0 - parsed["item_price"] / 100.0,
                "p_conversion": parsed["user_age"] / 100.0}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("toy") / "model")
    toy = _Toy()
    tf.saved_model.save(toy, path, signatures={
        "serving_default": toy.serve, "user_embedding": toy.user, "item_embedding": toy.item})
    return path


def _items():
    return [(i, {"item_id": i, "item_category": CATEGORY[i], "item_brand": "x",
                 "item_colour": "red", "item_price": p, "item_image_embedding": [0.0] * WIDTH,
                 "item_has_image": 0}) for i, p in PRICES.items()]


def _catalogue():
    ids = tuple(sorted(PRICES))
    return Catalogue(ids, np.array([[PRICES[i] / 100.0, 1.0] for i in ids], np.float32))


TOWERS = recommend_config.SourceConfig("two_tower", 3, "two_tower", (("click", 1.0),))
CUT = 100 * 86400
# A purchase a day before the cut-off: excluded for 30 days.
BOUGHT = {("last", "conversion"): CUT - 86400, ("n", "conversion"): 1}


def _settings(**changes):
    base = recommend_config.recommend_settings(config_lib.load())
    # The ranker alone unless a test blends otherwise (the demo config blends the towers).
    changes.setdefault("blend", (("p_click", 1.0),))
    changes.setdefault("sources", (TOWERS,))
    changes.setdefault("k", 2)
    return dataclasses.replace(base, user_batch=2, **changes)


def _plan(settings, exclude=("conversion", 30 * 86400)):
    return sources.Plan(settings.sources, (), exclude, 200, ("click", 7))


def _recommend(p, contexts, settings, **tables):
    """Recommend over ``contexts`` with the toy model, the towers and hand-made tables."""
    state = CandidateState(**{
        name: p | f"Table{name}" >> beam.Create(list(tables.get(name, {}).items()))
        for name in CandidateState._fields})
    return (p
            | "Users" >> beam.Create(contexts)
            | ranking.Recommend(tables["model_dir"], R, settings, _plan(settings),
                                  ["p_click", "p_conversion"], temperature=0.1,
                                  catalogue=p | "Catalogue" >> beam.Create([_catalogue()]),
                                  items=p | "Items" >> beam.Create(_items()), state=state,
                                  cut=p | "Cut" >> beam.Create([CUT])))


U1 = {"user_id": "u1", "user_age": 40.0, "user_region": "north", "user_membership": "gold"}


def test_retrieve_the_dearest_then_rank_the_cheapest_first(model_dir):
    contexts = [ranking.UserContext("u1", U1, None, ()),
                # Not in the users table: the registry's default age, 35.
                ranking.UserContext("u2", None, None, (("i5", BOUGHT),))]
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        out = _recommend(p, contexts, _settings(), model_dir=model_dir).rows
        # u1: candidates i5, i4, i3 (retrieval = price/100 + 0.4); ranked by
        # p_click = 1 - price/100: i3 (0.7), i4 (0.6). u2 may not get i5:
        # candidates i4, i3, i2; ranked i2 (0.8), i3 (0.7).
        assert_that(out | beam.Map(lambda r: (r["user_id"], r["rank"], r["item_id"],
                                              round(r["score"], 5),
                                              round(r["retrieval_score"], 5),
                                              round(r["p_conversion"], 5))),
                    equal_to([("u1", 1, "i3", 0.7, 0.7, 0.4), ("u1", 2, "i4", 0.6, 0.8, 0.4),
                              ("u2", 1, "i2", 0.8, 0.55, 0.35),
                              ("u2", 2, "i3", 0.7, 0.65, 0.35)]))


def _assert_top(model_dir, settings, expected, score=lambda s: round(s, 5)):
    """Runs Recommend for u1 and asserts its (rank, item, score(score)) rows."""
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        out = _recommend(p, [ranking.UserContext("u1", U1, None, ())], settings,
                         model_dir=model_dir).rows
        assert_that(out | beam.Map(lambda r: (r["rank"], r["item_id"], score(r["score"]))),
                    equal_to(expected))


@pytest.mark.parametrize("k, cap, expected", [
    # Ranked i3 (a), i4 (a), i5 (b). No cap: the first two.
    (2, 0, [(1, "i3", 0.112), (2, "i4", 0.096)]),
    # At most one of category a: i4 gives way to i5.
    (2, 1, [(1, "i3", 0.112), (2, "i5", 0.08)]),
    # K = 3 from three candidates: the cap must be relaxed, back in ranked order.
    (3, 1, [(1, "i3", 0.112), (2, "i4", 0.096), (3, "i5", 0.08)]),
])
def test_blend_and_category_cap(model_dir, k, cap, expected):
    # score = p_click * p_conversion ** 2 (age 40: 0.16): i3 0.7 * 0.16 = 0.112.
    settings = dataclasses.replace(
        _settings(blend=(("p_click", 1.0), ("p_conversion", 2.0)), max_per_category=cap,
                  category_feature="item_category"), k=k)
    _assert_top(model_dir, settings, expected)


def test_the_retrieval_term_ranks_by_the_towers(model_dir):
    # exp(s / 0.1): u1's candidates by retrieval score, i5 (0.9) then i4 (0.8);
    # compared as log(score) = s / 0.1, to float32 rounding of s.
    settings = _settings(blend=(("retrieval", 1.0),))
    _assert_top(model_dir, settings, [(1, "i5", 9.0), (2, "i4", 8.0)],
                score=lambda s: round(math.log(s), 4))


def test_every_source_proposes_and_the_ranker_orders_their_union(model_dir):
    # u1 bought i1 a day ago (excluded, yet still a recent item to expand) and
    # clicked i2. rep: i2 (i1 excluded); co: i4 (5.0 x 0.9 from i1), i3 (1.0 x
    # 0.5 from i2), never i1; pop (north): i4 (i1 excluded); towers: i5, the dearest.
    # The union ranks by p_click = 1 - price/100: i2, i3, i4, i5.
    settings = _settings(k=4, sources=(
        dataclasses.replace(TOWERS, quota=1),
        recommend_config.SourceConfig("rep", 2, "repurchase", (("click", 1.0),)),
        recommend_config.SourceConfig("co", 2, "co_occurrence", (("click", 1.0),)),
        recommend_config.SourceConfig("pop", 2, "popular", (("click", 1.0),),
                                segment="user_region")))
    pairs = (("i1", {**BOUGHT, ("s", "rep"): 5.0, ("s", "co"): 5.0}),
             ("i2", {("last", "click"): CUT - 3600, ("s", "rep"): 1.0, ("s", "co"): 1.0}))
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        out = _recommend(p, [ranking.UserContext("u1", U1, None, pairs)], settings,
                         model_dir=model_dir,
                         neighbours={("co", CUT, "i2"): [("i3", 0.5), ("i1", 0.4)],
                                     ("co", CUT, "i1"): [("i4", 0.9)]},
                         popular={("pop", CUT, "north"): [("i4", 3.0), ("i1", 2.0)]})
        assert_that(out.rows | beam.Map(lambda r: (r["rank"], r["item_id"], r["sources"])),
                    equal_to([(1, "i2", "rep"), (2, "i3", "co"), (3, "i4", "co,pop"),
                              (4, "i5", "two_tower")]), label="Rows")
        assert_that(out.candidates | beam.Map(lambda r: (r["rank"], r["item_id"])),
                    equal_to([(1, "i2"), (2, "i3"), (3, "i4"), (4, "i5")]), label="Candidates")


def test_user_contexts_keep_known_users_only():
    pairs = [("i2", {("n", "click"): 1})]
    groups = {"user": [U1], "history": [], "pairs": [pairs]}
    assert list(ranking.user_contexts(("u1", groups))) == [
        ranking.UserContext("u1", U1, None, tuple(pairs))]
    # Events but no row: the registry's defaults; neither: nobody to recommend to.
    assert list(ranking.user_contexts(("u9", {"user": [], "history": [],
                                                "pairs": [pairs]}))) == [
        ranking.UserContext("u9", None, None, tuple(pairs))]
    assert list(ranking.user_contexts(("u8", {"user": [], "history": [],
                                                "pairs": []}))) == []
