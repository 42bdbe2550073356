"""The BigQuery sink, offline: its schema and arguments, and the pipeline graph built with it.

Nothing here runs a load job: graphs are built (``expand`` runs, which is
where Beam checks the arguments) and inspected, never run.
"""

import datetime

import apache_beam as beam
import pytest
from apache_beam.io.gcp.bigquery_file_loads import BigQueryBatchFileLoads
from apache_beam.pipeline import PipelineVisitor

from pipelines import bigquery, recommend
from shoprec.core import config as config_lib
from shoprec.core import recommend_config
from shoprec.core.errors import ConfigError

DAY = datetime.date(2026, 11, 12)
OUTPUTS = ["p_click", "p_conversion"]


def _nodes(pipeline):
    """{full label: transform} of every transform in the graph."""
    found = {}

    class Visitor(PipelineVisitor):
        def enter_composite_transform(self, node):
            found[node.full_label] = node

        def visit_transform(self, node):
            found[node.full_label] = node

    pipeline.visit(Visitor())
    return found


def test_the_schema_is_the_parquet_columns_then_the_date():
    nullable = {"name": None, "mode": "NULLABLE"}
    expected = [dict(nullable, name=n, type=t) for n, t in [
        ("user_id", "STRING"), ("rank", "INTEGER"), ("item_id", "STRING"), ("score", "FLOAT"),
        ("retrieval_score", "FLOAT"), ("sources", "STRING"), ("p_click", "FLOAT"),
        ("p_conversion", "FLOAT")]]
    expected.append({"name": "dt", "type": "DATE", "mode": "REQUIRED"})
    assert bigquery.table_schema(recommend.schema(OUTPUTS)) == {"fields": expected}


def test_a_dated_row_has_exactly_the_schema_columns():
    row = {"user_id": "u1", "rank": 1, "item_id": "i7", "score": 0.5, "retrieval_score": 2.0,
           "sources": "two_tower,popular", "p_click": 0.25, "p_conversion": 0.125}
    out = bigquery.dated(row, DAY.isoformat())
    assert out == dict(row, dt="2026-11-12")
    fields = bigquery.table_schema(recommend.schema(OUTPUTS))["fields"]
    assert list(out) == [f["name"] for f in fields]


def test_the_destination_is_the_run_date_partition():
    assert bigquery.partition("my-proj:shop.recs", DAY) == "my-proj:shop.recs$20261112"
    for bad in ("shop.recs", "my-proj:shop", "my-proj:shop.recs$20261112", "p:s.r t"):
        with pytest.raises(ConfigError, match="--bq_table must be project:dataset.table"):
            bigquery.partition(bad, DAY)


def test_sink_args_truncate_one_day_partition_by_file_loads():
    args = bigquery.sink_args("my-proj:shop.recs", DAY, recommend.schema(OUTPUTS))
    assert args["table"] == "my-proj:shop.recs$20261112"
    assert args["method"] == "FILE_LOADS"
    assert args["create_disposition"] == "CREATE_IF_NEEDED"
    assert args["write_disposition"] == "WRITE_TRUNCATE"
    assert args["additional_bq_parameters"] == {
        "timePartitioning": {"type": "DAY", "field": "dt"}}
    assert args["schema"] == bigquery.table_schema(recommend.schema(OUTPUTS))


def test_the_composite_applies_beams_file_loads_with_those_parameters():
    pipeline = beam.Pipeline()
    rows = pipeline | beam.Create([{"user_id": "u1"}])
    _ = rows | "BQ" >> bigquery.WriteToBigQuery("my-proj:shop.recs", DAY,
                                                recommend.schema(OUTPUTS))
    nodes = _nodes(pipeline)
    write = nodes["BQ/Load"].transform
    assert isinstance(write, beam.io.WriteToBigQuery)
    ref = write.table_reference
    assert (ref.projectId, ref.datasetId, ref.tableId) == ("my-proj", "shop", "recs$20261112")
    assert write.method == "FILE_LOADS"
    assert (write.create_disposition, write.write_disposition) == (
        "CREATE_IF_NEEDED", "WRITE_TRUNCATE")
    loads = nodes["BQ/Load/BigQueryBatchFileLoads"].transform
    assert isinstance(loads, BigQueryBatchFileLoads)
    assert loads.destination.tableId == "recs$20261112"
    assert loads.write_disposition == "WRITE_TRUNCATE"
    assert loads.additional_bq_parameters == {"timePartitioning": {"type": "DAY", "field": "dt"}}
    assert loads.schema["fields"][-1] == {"name": "dt", "type": "DATE", "mode": "REQUIRED"}
    # The rows get their date before the load.
    assert nodes["BQ/Load"].inputs[0].producer is nodes["BQ/AddDate"]


def test_the_recommend_job_writes_the_same_rows_to_parquet_and_bigquery(tmp_path):
    config = config_lib.load(run_dir=str(tmp_path / "run"))
    pipeline = beam.Pipeline()
    rec = recommend_config.recommend_settings(config)
    recommend.build(pipeline, config, rec, config.layout.model_dir, "my-proj:shop.recs")
    nodes = _nodes(pipeline)
    # The demo judges as of the eval start: its date names the partition.
    assert config.ingest.eval_start.startswith("2026-11-12")
    assert recommend.run_date(config) == DAY
    assert nodes["WriteBigQuery/Load"].transform.table_reference.tableId == "recs$20261112"
    parquet_input = nodes["WriteRecommendations"].inputs[0]
    assert nodes["WriteBigQuery"].inputs[0] is parquet_input
    assert parquet_input.producer is nodes["Recommend/TopK/ParDo(_TopK)"]

    without = beam.Pipeline()
    recommend.build(without, config, rec, config.layout.model_dir)
    assert not [label for label in _nodes(without) if "BigQuery" in label]


def test_a_malformed_table_fails_before_the_job(tmp_path):
    config = config_lib.load(run_dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="--bq_table"):
        recommend.run(config, bq_table="shop.recs")
    assert not (tmp_path / "run").exists()
