"""Every job's side inputs: none over the users table or the event log but the allow-list's.

Each job is built (not run) from the packaged configs on header-only input
files, and each side input is traced back to the files it is derived from.
"""

import dataclasses
import os

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline

from pipelines import embed_images, featurize, ingest, join, recommend, score, side_inputs
from pipelines.options import pipeline_options
from pipelines.parse import required_columns
from shoprec.core import config as config_lib
from shoprec.core.errors import ConfigError
from shoprec.core.recommend_config import recommend_settings
from tests.pipelines.fixtures import write_embeddings

CONFIGS = ("demo", "shop_tasks", "hm", "taobao")


def _config(name, root):
    path = None if name == "demo" else os.path.join("shoprec", "configs", f"{name}.yaml")
    config = config_lib.load(path, run_dir=os.path.join(str(root), name))
    inputs = dataclasses.replace(config.inputs, data_dir=os.path.join(str(root), name, "data"))
    config = dataclasses.replace(config, inputs=inputs)
    data = config.data
    tables = [(inputs.events, data.events), (inputs.users, data.users)]
    if not data.items.from_events:
        tables.append((inputs.items, data.items))
    for relative, spec in tables:
        if relative:  # one row: the graph is built, never run
            columns = required_columns(spec) + (["image_path"] if spec is data.items else [])
            os.makedirs(os.path.dirname(config.input_path(relative)), exist_ok=True)
            with open(config.input_path(relative), "w") as f:
                f.write(",".join(columns) + "\n" + ",".join("1" for _ in columns) + "\n")
    if config.registry.embedding_feature() is not None:
        write_embeddings(config.layout.item_embeddings, [])
    return config


def _kinds(config):
    """{path prefix: users | events | items} of every file a job may read."""
    layout, inputs = config.layout, config.inputs
    examples = os.path.dirname(layout.examples("train"))
    out = {layout.users_table: "users", layout.history_table: "users",
           layout.history_at_eval_table: "users", layout.eval_pairs: "users",
           os.path.dirname(layout.events_log_pattern): "events", examples: "events",
           layout.items_table: "items", layout.embed_dir: "items"}
    for key, kind in (("users", "users"), ("events", "events"), ("items", "items")):
        if getattr(inputs, key):
            out[config.input_path(getattr(inputs, key))] = kind
    return out


def _jobs(config, root, every):
    """{job: its graph}: ingest of the config; recommend (with a BigQuery sink) of a config
    with its own sources; with ``every`` the other jobs too (their graphs do not change
    with the config)."""
    layout, rec = config.layout, recommend_settings(config)
    builders = {"ingest": lambda p: ingest.build(p, config, layout)}
    if rec.sources and (every or config.data.labels == "candidates"):
        builders["recommend"] = lambda p: recommend.build(p, config, rec, "/model",
                                                          bq_table="my-project:shop.recs")
    if every:
        end = dataclasses.replace(rec, as_of="end")
        builders.update({
            "recommend_as_of_end": lambda p: recommend.build(p, config, end, "/model"),
            "score": lambda p: score.build(p, config, layout.eval_pairs + "*", "/model", {}),
            "featurize": lambda p: featurize.build(p, config, str(root)),
            "embed": lambda p: embed_images.build(
                p, config.input_path(config.inputs.items), str(root), "/model", str(root),
                (16, 16, 3), 32)})
    graphs = {}
    for job, build in builders.items():
        graphs[job] = beam.Pipeline(options=pipeline_options([]))
        build(graphs[job])
    return graphs


def _violations(config, graphs):
    """(job, side input, why) of every side input the rules forbid."""
    kinds = _kinds(config)
    out = []
    for job, graph in graphs.items():
        for found in side_inputs.listing(graph):
            derived = {kind for pattern in found.reads for prefix, kind in kinds.items()
                       if pattern.startswith(prefix)}
            entry = side_inputs.allowed(found.step, found.table)
            if derived and entry is None:
                out.append((job, found, f"derived from {sorted(derived)}, not on "
                                        "side_inputs.ALLOWED"))
            elif "users" in derived and not found.limited and entry.limit != side_inputs.SCALAR:
                out.append((job, found, "derived from the users table, not counted by a "
                                        "Limited before it is held"))
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("graphs")
    out = []
    for name in CONFIGS:
        config = _config(name, root)
        out.append((config, _jobs(config, root, every=name == "demo")))
    return out


def test_no_side_input_holds_users_or_events_unless_allowed_with_its_limit(built):
    bad = [v for config, graphs in built for v in _violations(config, graphs)]
    assert not bad, "\n".join(f"{job}: {s.step} reads {s.table} ({why})" for job, s, why in bad)
    seen = {(s.step, s.table) for _, graphs in built for graph in graphs.values()
            for s in side_inputs.listing(graph)}
    config = built[0][0]
    for entry in side_inputs.ALLOWED:
        assert any(entry.matches(step, table) for step, table in seen), f"unused: {entry}"
        if entry.limit != side_inputs.SCALAR:
            section, key = entry.limit.split(".")
            holder = (recommend_settings(config) if section == "recommend"
                      else getattr(config, section))
            assert getattr(holder, key) > 0, entry


class _UsersAsSideInput(join.JoinFeatures):
    """JoinFeatures as it was: the users table a side input of every worker."""

    def expand(self, examples):
        def join_user(pair, users):
            return pair, users.get(pair[0]["user_id"])

        joined = examples | "Join" >> beam.Map(join_user,
                                               users=beam.pvalue.AsDict(self._users))
        return join.Outputs(joined, examples.pipeline | "NoDeadLetters" >> beam.Create([]))


def test_the_users_table_put_back_as_a_side_input_fails_it(built, monkeypatch):
    config, _ = built[0]
    monkeypatch.setattr(ingest, "JoinFeatures", _UsersAsSideInput)
    graph = beam.Pipeline(options=pipeline_options([]))
    ingest.build(graph, config, config.layout, batched=False)  # the path with JoinFeatures
    bad = _violations(config, {"ingest": graph})
    assert [(s.step, why) for _, s, why in bad] == [
        ("Ingest/JoinFeatures/Join", "derived from ['users'], not on "
                                     "side_inputs.ALLOWED")]


def test_a_table_over_its_limit_fails_the_job_with_one_line():
    pipeline = test_pipeline.TestPipeline(options=pipeline_options([]))
    table = pipeline | beam.Create(range(5)) | side_inputs.Limited(
        3, "ingest.max_catalogue_items", "items in the catalogue")
    _ = pipeline | "Read" >> beam.Create([0]) | beam.Map(lambda x, n: n, beam.pvalue.AsList(table))
    with pytest.raises(ConfigError) as raised:
        side_inputs.run_checked(pipeline)
    assert str(raised.value) == ("5 items in the catalogue, and every worker holds them all; "
                                 "ingest.max_catalogue_items is 3")


class _Failed:
    """A pipeline whose run fails as the multi-process runner's does: the error as text."""

    def __init__(self, text):
        self._text = text

    def run(self):
        raise RuntimeError(self._text)


def test_a_limit_error_from_another_runner_comes_out_as_its_one_line():
    text = ("Traceback (most recent call last):\n  File \"x.py\", line 1\n"
            "shoprec.core.errors.ConfigError: 9 items in the catalogue, and every worker "
            "holds them all; ingest.max_catalogue_items is 3 [while running 'Limit/Check']\n")
    with pytest.raises(ConfigError, match=r"^9 items in the catalogue, .* is 3$"):
        side_inputs.run_checked(_Failed(text))
    with pytest.raises(RuntimeError, match="disk full"):
        side_inputs.run_checked(_Failed("OSError: disk full"))
