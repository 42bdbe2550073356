"""Every Beam job's graph, translated for Dataflow offline and written as a job template.

Each job's own ``build`` (the one its ``run()`` uses) adds it to a pipeline
whose options are a Dataflow dry run (``dataflow_template.offline_args``: no
network, no credentials); ``write_template`` then writes the job template and
its pipeline, and the test reads the stage labels back from the written files.
A tiny generated shop, ingested (``fixtures.ingested_shop``), provides the
inputs the jobs look at while their graphs are built (ingest and featurize
open their input files; no job loads a model).
"""

import dataclasses
import json
import os

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import dataflow_template, embed_images, featurize, ingest, recommend, score
from shoprec.core.recommend_config import SOURCE_KINDS, SourceConfig
from tests.pipelines.fixtures import ingested_shop


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return ingested_shop(tmp_path_factory.mktemp("dataflow"))


def _template(name, add, tmp_path):
    """Adds a job with ``add(pipeline)``, writes its template; returns (template, labels)."""
    pipeline = beam.Pipeline(options=PipelineOptions(
        dataflow_template.offline_args(f"shoprec-{name}")))
    add(pipeline)
    path = str(tmp_path / name / "template.json")
    template = dataflow_template.write_template(pipeline, path)
    with open(path) as f:
        assert json.load(f) == template
    return template, dataflow_template.transform_labels(template)


def _check(template, labels, name, stages):
    assert template["name"] == f"shoprec-{name}"
    assert template["type"] == "JOB_TYPE_BATCH"
    assert "use_runner_v2" in template["environment"]["experiments"]
    missing = [s for s in stages if s not in labels]
    assert not missing, f"{name}: no {missing} among {labels[:50]}"


def test_embed_job_template(config, tmp_path):
    template, labels = _template("embed", lambda p: embed_images.build(
        p, config.input_path(config.inputs.items), config.input_path(config.inputs.images_root),
        str(tmp_path / "encoder"), str(tmp_path / "embed"), (32, 32, 3), 32), tmp_path)
    _check(template, labels, "embed",
           ["ReadItems", "EmbedImages", "EmbedImages/RunInference", "EncodeExamples",
            "WriteTFRecords", "WriteParquet", "WriteDeadLetters"])


def test_ingest_job_template(config, tmp_path):
    template, labels = _template("ingest", lambda p: ingest.build(p, config, config.layout),
                                 tmp_path)
    _check(template, labels, "ingest",
           ["ReadEvents", "ReadItems", "ReadUsers", "ReadEmbeddings", "Ingest",
            "Ingest/ValidEvents", "Ingest/ImpressionExamples",
            "Ingest/ImpressionExamples/GroupByPair", "Ingest/ImpressionExamples/Dedup",
            "Ingest/ImpressionExamples/GroupPairsByUser", "Ingest/ImpressionExamples/Label",
            "WriteTrainExamples", "WriteEvalExamples", "WriteEvalPairs", "WriteDeadLetters"])


def test_featurize_job_template(config, tmp_path):
    template, labels = _template("featurize", lambda p: featurize.build(
        p, config, str(tmp_path / "tft")), tmp_path)
    _check(template, labels, "featurize",
           ["Featurize", "WriteTransformFn", "WriteTrain", "WriteEval"])


def test_score_job_template(config, tmp_path):
    template, labels = _template("score", lambda p: score.build(
        p, config, config.layout.eval_pairs + "*", config.layout.model_dir, {}), tmp_path)
    _check(template, labels, "score",
           ["ReadPairs", "ReadUsers", "ReadItems", "Score", "Score/RunInference",
            "Score/ToRows", "WriteScores", "WriteDeadLetters"])


def test_recommend_job_template(config, tmp_path):
    # Every source kind, the towers' included.
    with_sources = dataclasses.replace(
        config, model=dataclasses.replace(config.model, retrieval=dataclasses.replace(
            config.model.retrieval, enabled=True)),
        recommend=dataclasses.replace(config.recommend, sources=tuple(
            SourceConfig(kind, 10, kind, attribute="item_category" if kind == "attribute"
                         else None) for kind in SOURCE_KINDS)))
    template, labels = _template("recommend", lambda p: recommend.build(
        p, with_sources, recommend.recommend_settings(with_sources),
        config.layout.model_dir), tmp_path)
    _check(template, labels, "recommend",
           ["ReadItems", "EmbedItems", "ReadEvents", "Sources", "Sources/PairStates",
            "ReadUsers", "JoinUsers", "Contexts", "SegmentPopular", "Recommend",
            "Recommend/Retrieve", "Recommend/TopK", "RelatedItems", "WriteRecommendations",
            "WriteCandidates", "WriteRelated", "WriteNeighbours"])


def test_write_template_refuses_a_pipeline_that_would_run(tmp_path):
    pipeline = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    _ = pipeline | beam.Create([1])
    with pytest.raises(ValueError, match="not a Dataflow dry run"):
        dataflow_template.write_template(pipeline, str(tmp_path / "t.json"))
    assert not os.path.exists(tmp_path / "t.json")
