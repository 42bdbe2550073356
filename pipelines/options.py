"""Beam pipeline options shared by every shoprec job."""

from __future__ import annotations

from typing import List, Optional, Sequence

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

# Beam 2.77's DirectRunner first tries to download the Prism runner binary; the
# FnApiRunner runs in-process and never needs the network, so it is the default
# for local runs. Any runner passed explicitly wins (Dataflow, Flink, ...).
DEFAULT_LOCAL_RUNNER = "FnApiRunner"


def pipeline_options(beam_args: Optional[Sequence[str]]) -> PipelineOptions:
    """Builds options from pass-through Beam flags, defaulting the runner."""
    args: List[str] = list(beam_args or [])
    options = PipelineOptions(args)
    if options.view_as(StandardOptions).runner is None:
        options.view_as(StandardOptions).runner = DEFAULT_LOCAL_RUNNER
    return options
