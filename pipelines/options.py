"""Beam pipeline options shared by every shoprec job, and how a job is started.

Every job makes its pipeline with :func:`new_pipeline` and runs it with
:func:`run_job`, so a Dataflow dry run (``--runner=DataflowRunner
--dry_run=True``) is one thing for all of them: the job is built and
translated for Dataflow, offline and without credentials, and
:func:`run_job` raises :class:`DryRun` instead of returning a result, so the
job reads no counters and writes no report or success marker.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import (GoogleCloudOptions, PipelineOptions,
                                                  StandardOptions, TestOptions)
from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator

from shoprec.core.errors import ConfigError

# Beam 2.77's DirectRunner first tries to download the Prism runner binary; the
# FnApiRunner runs in-process and never needs the network, so it is the default
# for local runs. Any runner passed explicitly wins (Dataflow, Flink, ...).
DEFAULT_LOCAL_RUNNER = "FnApiRunner"
# The runners that honour --dry_run (every other one would run the job).
_DRY_RUNNERS = ("dataflow", "dataflowrunner")


class DryRun(Exception):
    """A Dataflow dry run built the job and stopped: nothing ran, there are no counters.

    Not an error: the stage runner turns it into its dry-run outcome.

    Attributes:
        job: The Dataflow ``Job`` the dry run built (its ``proto`` and
            ``proto_pipeline``).
        runner: The runner named on the command line.
    """

    def __init__(self, job, runner: str):
        super().__init__(f"dry run: the {runner} job was built, not run")
        self.job = job
        self.runner = runner


def is_dry_run(options: PipelineOptions) -> bool:
    """Whether ``options`` ask for a dry run, as Beam reads ``--dry_run`` (any value)."""
    return bool(options.view_as(TestOptions).dry_run)


def pipeline_options(beam_args: Optional[Sequence[str]]) -> PipelineOptions:
    """Builds options from pass-through Beam flags, defaulting the runner.

    Raises:
        ConfigError: a dry run on a runner that would run the job anyway, or
            without a well-formed ``gs://`` temp or staging location (Beam
            would then go online to create a bucket).
    """
    args: List[str] = list(beam_args or [])
    options = PipelineOptions(args)
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = DEFAULT_LOCAL_RUNNER
    if is_dry_run(options):
        _check_dry_run(options, standard.runner)
    return options


def _check_dry_run(options: PipelineOptions, runner: str) -> None:
    if runner.rsplit(".", 1)[-1].lower() not in _DRY_RUNNERS:
        raise ConfigError(f"--dry_run builds a Dataflow job without running it; with "
                          f"--runner={runner} the job would run: add --runner=DataflowRunner")
    validator = PipelineOptionsValidator(options, None)
    cloud = options.view_as(GoogleCloudOptions)
    errors = {name: validator.validate_gcs_path(cloud, name)
              for name in ("temp_location", "staging_location")}
    if all(errors.values()):
        raise ConfigError("a dry run needs --temp_location or --staging_location gs://BUCKET/"
                          f"PATH (nothing is written there): {errors['temp_location'][0]}")


def new_pipeline(beam_args: Optional[Sequence[str]]) -> beam.Pipeline:
    """A pipeline for a shoprec job, with :func:`pipeline_options`.

    Raises:
        ConfigError: Beam refuses the flags (an unknown runner, a malformed
            project id or job name, ...); its own words, on one line.
    """
    options = pipeline_options(beam_args)
    try:
        return beam.Pipeline(options=options)
    except ValueError as err:  # Beam checks the flags here and nowhere else
        why = " ".join(str(err).replace("Pipeline has validations errors:", "").split())
        raise ConfigError(f"Beam refused the flags: {why}") from err


def run_job(pipeline: beam.Pipeline):
    """Runs a finished job and waits for it; its result, to read counters from.

    Raises:
        DryRun: the options ask for a dry run: the job was built and
            translated, nothing ran and there are no counters to read.
    """
    result = pipeline.run()
    options = pipeline.options
    if is_dry_run(options):
        raise DryRun(result.job, options.view_as(StandardOptions).runner)
    result.wait_until_finish()
    return result
