"""A finished Beam graph as a Dataflow job template, built offline.

``DataflowRunner`` with ``--template_location`` alone needs Google Cloud: it
insists on ``gs://`` temp and staging locations, asks Cloud Storage about
them while validating the options, and uploads the graph. With ``--dry_run``
it does everything up to submission offline and without credentials — the
Dataflow overrides, the runner v2 adjustments, the Docker environments, the
combiner packing and stage fusion order, the job's own checks — and stops.
:func:`write_template` takes the job a dry run built and writes what
``--template_location`` would have written: the job description (template
JSON) and, beside it, the portable pipeline it names as its ``pipelineUrl``.

Every shoprec job builds its graph with one function (``ingest.build``,
``featurize.build``, ...) that ``run()`` and this module's callers share, so
the graph checked here is the graph that runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import List

import apache_beam as beam
from apache_beam.options.pipeline_options import StandardOptions, TestOptions
from apache_beam.runners.dataflow.internal import apiclient

PIPELINE_FILE = "pipeline.pb"


def offline_args(job_name: str, project: str = "shoprec-offline",
                 region: str = "us-central1") -> List[str]:
    """Beam flags that build a Dataflow job without network or credentials.

    The ``gs://`` locations are only checked for their form; nothing is
    written there.
    """
    return ["--runner=DataflowRunner", "--dry_run=True", "--no_auth",
            f"--project={project}", f"--region={region}", f"--job_name={job_name}",
            f"--temp_location=gs://{project}/tmp", f"--staging_location=gs://{project}/staging",
            "--sdk_location=container", "--experiments=use_runner_v2"]


def write_template(pipeline: beam.Pipeline, path: str) -> dict:
    """Translates ``pipeline`` for Dataflow (a dry run) and writes its job template.

    Args:
        pipeline: A finished graph whose options are a Dataflow dry run
            (e.g. :func:`offline_args`).
        path: The template JSON to write (local); the pipeline proto goes
            beside it as ``pipeline.pb``.

    Returns:
        The template as written (the Dataflow ``Job`` resource as JSON).

    Raises:
        ValueError: the pipeline is not a Dataflow dry run (this never submits).
    """
    options = pipeline.options
    runner = options.view_as(StandardOptions).runner
    if runner != "DataflowRunner" or not options.view_as(TestOptions).dry_run:
        raise ValueError(f"not a Dataflow dry run (runner {runner!r}); build the pipeline "
                         f"with offline_args()")
    job = pipeline.run().job
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    serialized = job.proto_pipeline.SerializeToString()
    pipeline_url = os.path.join(folder, PIPELINE_FILE)
    with open(pipeline_url, "wb") as f:
        f.write(serialized)
    # What DataflowApplicationClient.create_job_description sets before it
    # uploads; the staged packages are left out (nothing is staged offline).
    job.proto.environment = apiclient.Environment(
        packages=[], options=options,
        environment_version=apiclient._FNAPI_ENVIRONMENT_MAJOR_VERSION,
        proto_pipeline_staged_url=pipeline_url, proto_pipeline=job.proto_pipeline,
        pipeline_proto_hash=hashlib.sha256(serialized).hexdigest()).proto
    text = job.json()
    with open(path, "w") as f:
        f.write(text)
    return json.loads(text)


def transform_labels(template: dict) -> List[str]:
    """Every transform's full label in the pipeline a template names, sorted."""
    from apache_beam.portability.api import beam_runner_api_pb2

    url = template["environment"]["sdkPipelineOptions"]["options"]["pipelineUrl"]
    proto = beam_runner_api_pb2.Pipeline()
    with open(url, "rb") as f:
        proto.ParseFromString(f.read())
    return sorted(t.unique_name for t in proto.components.transforms.values())

