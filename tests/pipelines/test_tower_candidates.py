"""The two towers' candidates at past cut-offs, from a published model, worked out by hand.

The toy towers of ``test_ranking.py`` score user · item = price/100 + age/100:
the dearest items first, whoever the user.
"""

import apache_beam as beam
import numpy as np
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.candidates import Catalogue
from pipelines.options import pipeline_options
from pipelines.tower_candidates import TowerCandidates, Towers
from shoprec.core import generated_shop as shop
from tests.pipelines.test_ranking import PRICES, U1, _items, model_dir  # noqa: F401 (fixture)

CUT = 100 * 86400


def test_each_cut_offs_nearest_items_leave_the_excluded_out(model_dir):
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        # u1 (age 40) at two cut-offs, i5 excluded at the first; u2 (no row: age 35).
        asked = p | "Asked" >> beam.Create([("u1", U1, {CUT: {"i5"}, CUT + 86400: set()}),
                                            ("u2", None, {CUT: set()})])
        out = asked | TowerCandidates(model_dir, shop.REGISTRY, 2, None,
                                      p | "Events" >> beam.Create([]),
                                      p | "Items" >> beam.Create(_items()), 16, 100)
        assert_that(out.lists | beam.MapTuple(lambda key, t: (key, [
            (i, round(s, 5)) for i, s in t.ranked])), equal_to([
                (("u1", CUT), [("i4", 0.8), ("i3", 0.7)]),
                (("u1", CUT + 86400), [("i5", 0.9), ("i4", 0.8)]),
                (("u2", CUT), [("i5", 0.85), ("i4", 0.75)])]))


def test_the_towers_score_every_candidate_by_its_dot_product():
    ids = tuple(sorted(PRICES))
    catalogue = Catalogue(ids, np.array([[PRICES[i] / 100.0, 1.0] for i in ids], np.float32))
    towers = Towers([("i5", 0.9)], np.array([1.0, 0.4], np.float32))
    assert {k: round(v, 5) for k, v in towers.scores(catalogue, ["i1", "i3", "zz"]).items()} \
        == {"i1": 0.5, "i3": 0.7}


def test_candidate_examples_rank_the_published_towers_candidates_too(model_dir):
    from pipelines import sources
    from pipelines.candidate_examples import CandidateExamples
    from shoprec.core import registry as F
    from shoprec.core.recommend_config import SourceConfig

    signals = (F.Feature("tower_rank", F.Source.CANDIDATE, F.Kind.NUMERIC,
                         signal="two_tower.rank"),
               F.Feature("tower_score", F.Source.CANDIDATE, F.Kind.NUMERIC,
                         signal="two_tower.score"))
    registry = F.Registry(shop.REGISTRY.features + signals)
    plan = sources.Plan((SourceConfig("two_tower", 1, "two_tower", (("click", 1.0),)),
                         SourceConfig("popular", 1, "popular", (("click", 1.0),), days=30)),
                        signals, None, 200, ("click", 7))
    # i1 was clicked before the cut-off (the popular one); u1 clicks i2 after it.
    events = [{"user_id": "u9", "item_id": "i1", "timestamp": CUT - 60, "event_type": "click"},
              {"user_id": "u1", "item_id": "i2", "timestamp": CUT + 60, "event_type": "click"}]
    with test_pipeline.TestPipeline(options=pipeline_options([])) as p:
        examples = (p | "Events" >> beam.Create(events)
                    | CandidateExamples(plan, registry, "click", [(CUT, CUT + 86400)],
                                        (CUT + 86400, None),
                                        p | "Users" >> beam.Create([("u1", U1)]),
                                        p | "Items" >> beam.Create(_items()), 100,
                                        (model_dir, None, 16, 100)))
        # u1 (age 40): the towers' one nearest is i5 (0.5 + 0.4); popular: i1, whose
        # towers' score is 0.1 + 0.4. Neither is clicked in the window.
        assert_that(examples | beam.Map(lambda r: (
            r["user_id"], r["item_id"], r["timestamp"], r["tower_rank"],
            round(r["tower_score"], 5), r["click"])), equal_to([
                ("u1", "i5", CUT, 1.0, 0.9, 0), ("u1", "i1", CUT, 0.0, 0.5, 0)]))
