"""The recommend job's refusals: leaking aggregates, no source to recommend with."""

import dataclasses

import pytest

from pipelines import recommend
from shoprec.core import config as config_lib
from shoprec.core import generated_shop as shop
from shoprec.core import registry as F
from shoprec.core.errors import ConfigError
from tests.pipelines.fixtures import history_registry


def test_item_aggregates_judged_as_of_the_eval_start_are_refused(tmp_path):
    # Item aggregates are stored as of the log's end: lists judged at the eval
    # start would see the eval window through them.
    registry = history_registry(
        F.Feature("agg_item_buys", F.Source.AGGREGATE, F.Kind.NUMERIC,
                  aggregate_key=("item_id",), event_type="purchase"),
        F.Feature("agg_category_buy_rate", F.Source.AGGREGATE, F.Kind.NUMERIC,
                  aggregate_key=("item_category",), event_type="purchase", ratio_to="click",
                  smoothing=5.0))
    config = dataclasses.replace(config_lib.load(run_dir=str(tmp_path)),
                                 dataset=shop.dataset(registry))
    with pytest.raises(ConfigError, match=r"as_of: eval with aggregates .*agg_item_buys"):
        recommend.run(config, [])


def test_user_attribute_aggregates_judged_as_of_the_eval_start_are_refused(tmp_path):
    # Their state is computed after the log's last event only: the history at the
    # eval start has none. The demo's recommend settings judge as of the eval start.
    registry = history_registry(F.Feature(
        "agg_user_category_clicks", F.Source.AGGREGATE, F.Kind.NUMERIC,
        aggregate_key=("user_id", "item_category"), event_type="click"))
    config = dataclasses.replace(config_lib.load(run_dir=str(tmp_path)),
                                 dataset=shop.dataset(registry))
    assert recommend.recommend_settings(config).as_of == "eval"
    with pytest.raises(ConfigError, match=r"as_of: eval with aggregates "
                                          r"\['agg_user_category_clicks'\]"):
        recommend.run(config, [])


def test_a_config_with_no_source_has_nothing_to_recommend_with(tmp_path):
    config = config_lib.load(run_dir=str(tmp_path))
    config = dataclasses.replace(config, model=dataclasses.replace(
        config.model, retrieval=dataclasses.replace(config.model.retrieval, enabled=False)),
        recommend=dataclasses.replace(config.recommend, sources=(),
                                      blend=(("p_click", 1.0),)))
    assert recommend.recommend_settings(config).sources == ()
    with pytest.raises(ConfigError, match="no candidate sources"):
        recommend.run(config, [])
