"""The stage table: the order the demo runs, and each subcommand's own flags."""

import dataclasses

import pytest

from shoprec.app import cli, stages
from shoprec.core import config as config_lib


def test_the_demo_runs_every_stage_but_validate_in_pipeline_order():
    assert [s.name for s in stages.demo_stages()] == [
        "generate", "embed", "ingest", "featurize", "train", "push", "score", "recommend",
        "report"]
    assert [s.name for s in stages.STAGES] == [
        "generate", "embed", "validate", "ingest", "featurize", "train", "push", "score",
        "recommend", "report"]


def test_each_stage_owns_one_run_folder():
    writes = [s.writes for s in stages.STAGES]
    assert writes == ["raw/", "embed/", "validate/", "ingest/", "featurize/", "train/", "push/",
                      "score/", "recommend/", "report/"]


@pytest.mark.parametrize("stage, own, absent", [
    ("generate", ["--num_users", "--seed"], ["--strategy", "--pairs"]),
    ("train", ["--strategy"], ["--num_users", "--pairs"]),
    ("score", ["--pairs"], ["--strategy", "--num_users", "--force_bless", "--bq_table"]),
    ("push", ["--force_bless"], ["--strategy", "--pairs", "--bq_table"]),
    ("recommend", ["--bq_table"], ["--strategy", "--pairs", "--num_users", "--force_bless"]),
    ("demo", ["--strategy", "--num_users"], ["--pairs", "--bq_table"]),
    ("ingest", [], ["--strategy", "--pairs", "--num_users", "--bq_table"]),
])
def test_subcommand_flags(stage, own, absent, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([stage, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ["--config", "--run_dir", "--data"] + own:
        assert flag in out
    for flag in absent:
        assert flag not in out


def test_options_keep_only_the_stage_own_flags():
    train = stages.BY_NAME["train"]
    assert stages.options_of(train, {"strategy": "mirrored", "pairs": "p.csv"}) == {
        "strategy": "mirrored"}
    assert stages.options_of(train, {"strategy": None}) == {}


def test_a_production_day_runs_the_demo_stages_but_generate():
    config = config_lib.load()
    assert [s.name for s in stages.day_stages(config)] == [
        "embed", "ingest", "featurize", "train", "push", "score", "recommend", "report"]
    assert [s.name for s in stages.STAGES if not s.publishes] == ["generate"]
    # No towers and no other source: nothing to recommend with.
    no_towers = dataclasses.replace(config, model=dataclasses.replace(
        config.model, retrieval=dataclasses.replace(config.model.retrieval, enabled=False)),
        recommend=dataclasses.replace(config.recommend, sources=()))
    assert "recommend" not in [s.name for s in stages.day_stages(no_towers)]
    # A ranker of candidate signals ranks recommend's lists, not arbitrary pairs.
    hm = config_lib.load("shoprec/configs/hm.yaml")
    assert [s.name for s in stages.day_stages(hm)] == [
        "embed", "ingest", "featurize", "train", "push", "recommend", "report"]


def test_run_takes_a_date_and_force_and_lists_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for flag in ("--date", "--force", "--strategy", "--pairs", "--force_bless", "--bq_table",
                 "default: today, UTC"):
        assert flag in out
    for code in ("7 the model gate did not bless", "8 another run holds", "70 crashed"):
        assert code in out
