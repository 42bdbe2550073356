"""The stage table: the order the demo runs, and each subcommand's own flags."""

import pytest

from shoprec.app import cli, stages


def test_the_demo_runs_every_stage_but_validate_in_pipeline_order():
    assert [s.name for s in stages.demo_stages()] == [
        "generate", "embed", "ingest", "featurize", "train", "score", "recommend", "report"]
    assert [s.name for s in stages.STAGES] == [
        "generate", "embed", "validate", "ingest", "featurize", "train", "score", "recommend",
        "report"]


def test_each_stage_owns_one_run_folder():
    writes = [s.writes for s in stages.STAGES]
    assert writes == ["raw/", "embed/", "validate/", "ingest/", "featurize/", "train/", "score/",
                      "recommend/", "report/"]


@pytest.mark.parametrize("stage, own, absent", [
    ("generate", ["--num_users", "--seed"], ["--strategy", "--pairs"]),
    ("train", ["--strategy"], ["--num_users", "--pairs"]),
    ("score", ["--pairs"], ["--strategy", "--num_users"]),
    ("demo", ["--strategy", "--num_users"], ["--pairs"]),
    ("ingest", [], ["--strategy", "--pairs", "--num_users"]),
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
