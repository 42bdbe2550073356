"""Running stages for publishing: skip what is up to date, stage, mark, publish.

Every stage run from the CLI (one stage, ``shoprec run`` or the demo) goes
through :func:`run_stage`: it computes the stage's fingerprint
(``shoprec.io.manifest``: its inputs, the manifests of the upstream stages it
reads, the config, the code, its options); if the published folder's manifest
carries the same one, the stage is skipped (``--force`` runs it anyway).
Otherwise the stage runs with its own folder rooted in its staging place,
its manifest is written there last and the folder is published
(``shoprec.io.publish``). Before a stage runs, every folder it reads (the
upstream stages' and the current model version) is held to its manifest's
file list (:func:`check_reads`): a damaged file stops it before any job
starts. A Dataflow dry run (``--runner=DataflowRunner --dry_run=True``)
builds the stage's job in a temporary folder and publishes nothing
(:func:`is_dry_run`). :func:`run_day` runs a production day's stages in
order: the one command a scheduler calls.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from typing import Any, Dict, Mapping, Optional, Sequence

from shoprec.app.stages import STAGES, Stage, day_stages, options_of
from shoprec.core.config import Config
from shoprec.core.errors import ConfigError, ModelNotBlessedError
from shoprec.io import files, manifest, models, publish
from shoprec.io.outputs import write_success

# Reports (the stages' JSON and text files) under this size get their staged
# paths rewritten to the published ones.
_REPORT_SUFFIXES = (".json", ".txt")
_MAX_REPORT_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What :func:`run_stage` did.

    Attributes:
        status: ``ran``, ``skipped`` (up to date), ``published`` (a run
            killed after writing its manifest left it staged; published now)
            or ``dry_run`` (its job was built, not run).
        report: The stage's report (paths as published), its published
            manifest when it did not run, or what a dry run built.
        seconds: Wall time.
    """

    status: str
    report: Dict[str, Any]
    seconds: float


def is_chief() -> bool:
    """Whether this process publishes: not a non-chief worker of a multi-worker job."""
    if not os.environ.get("TF_CONFIG"):
        return True
    from trainer import strategy

    return strategy.is_chief()


def _reads(stage: Stage, config: Config, options: Mapping[str, Any]):
    """({input: path}, {upstream stage: its published folder}) of ``stage``."""
    layout, inputs, upstream = config.layout, {}, {}
    for read in stage.reads:
        if read == "embed/" and config.registry.embedding_feature() is None:
            continue  # no photo embedding to join: ingest reads no embed stage
        if read.endswith("/"):
            upstream[read.rstrip("/")] = layout.stage_dir(read.rstrip("/"))
        elif read == "inputs":
            for key in ("events", "items", "users"):
                inputs[key] = config.input_path(getattr(config.inputs, key))
        elif read.startswith("inputs."):
            key = read.split(".", 1)[1]
            inputs[key] = config.input_path(getattr(config.inputs, key))
        elif read == "embed.encoder":
            inputs["encoder"] = config.embed.encoder
        elif read == "models/CURRENT" and stage.name != "push":
            # A newly published model makes scoring and recommending stale. Not
            # push's own input: it moves the pointer itself, and a trained model
            # it has judged once is not judged (and published) again.
            inputs["model"] = layout.current_pointer
    if stage.name == "score":
        inputs["pairs"] = options.get("pairs") or config.path(config.scoring.pairs)
    return {k: v for k, v in inputs.items() if v}, upstream


def is_dry_run(beam_args: Sequence[str]) -> bool:
    """Whether the Beam flags ask for a Dataflow dry run (``--dry_run``, as Beam reads it).

    Raises:
        ConfigError: a dry run Beam would not do offline (``pipeline_options``).
    """
    if not beam_args:
        return False
    from pipelines import options as beam_options

    return beam_options.is_dry_run(beam_options.pipeline_options(beam_args))


def check_reads(stage: Stage, config: Config, options: Mapping[str, Any]) -> None:
    """Holds every folder ``stage`` reads to its manifest, before anything runs.

    Args:
        stage: The stage about to run.
        config: The run config (published layout).
        options: The stage's own flag values (``options_of``).

    Raises:
        InputDamagedError: a file of an upstream folder, or of the current
            model version, is missing, added, truncated, changed or
            unreadable, or a manifest or ``models/CURRENT`` cannot be read.
    """
    for name, folder in sorted(_reads(stage, config, options)[1].items()):
        manifest.check(folder, name, f"run `shoprec {name} --force` to write it again")
    if "models/CURRENT" in stage.reads:
        models.check_current(config.layout)


def _dry_run(stage: Stage, config: Config, beam_args: Sequence[str],
             options: Mapping[str, Any], start: float) -> Outcome:
    """Builds ``stage``'s job as a dry run, its folder in a temporary one; publishes nothing."""
    from pipelines.options import DryRun

    if not stage.beam:
        beam = ", ".join(s.name for s in STAGES if s.beam)
        raise ConfigError(f"`shoprec {stage.name}` runs no Beam job, so there is nothing to "
                          f"dry-run: --dry_run builds the job of {beam}")
    check_reads(stage, config, options)
    with tempfile.TemporaryDirectory(prefix=f"shoprec-dry-run-{stage.name}-") as scratch:
        scratch_config = dataclasses.replace(config, layout_roots=((stage.name, scratch),))
        try:
            stage.run(scratch_config, beam_args, options)
        except DryRun as built:
            report = {"runner": built.runner, "job_name": built.job.proto.name,
                      "transforms": len(built.job.proto_pipeline.components.transforms)}
            return Outcome("dry_run", report, time.time() - start)
    raise RuntimeError(f"{stage.name} returned from a dry run: its job did not start with "
                       "pipelines.options.run_job")


def _relocate(value: Any, staged: str, published: str) -> Any:
    """``value`` with every path under ``staged`` moved under ``published``."""
    if isinstance(value, str):
        return value.replace(staged, published)
    if isinstance(value, dict):
        return {k: _relocate(v, staged, published) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_relocate(v, staged, published) for v in value)
    return value


def _relocate_reports(staged: str, published: str) -> None:
    """Rewrites the staged paths in the staged folder's reports to the published ones."""
    for info in files.listing(staged):
        if not info.path.endswith(_REPORT_SUFFIXES) or info.size > _MAX_REPORT_BYTES:
            continue
        text = files.read(info.path).decode("utf-8")
        if staged in text:
            files.write(info.path, text.replace(staged, published).encode("utf-8"))


def _rows(report: Mapping[str, Any]) -> Dict[str, Any]:
    """The row counts a stage's report carries (its counters, or rows per split)."""
    rows = report.get("counts") or report.get("rows") or {}
    out = {k: v for k, v in rows.items() if isinstance(v, int)}
    if isinstance(report.get("eval_examples"), int):
        out["eval_examples"] = report["eval_examples"]
    return out


def run_stage(stage: Stage, config: Config, beam_args: Sequence[str],
              options: Mapping[str, Any], force: bool = False) -> Outcome:
    """Runs ``stage`` unless it is up to date, staged, then published.

    Args:
        stage: From the stage table.
        config: The run config (published layout).
        beam_args: Pass-through Beam flags.
        options: The stage's own flag values (``options_of``).
        force: Run even when the published output is up to date.

    Raises:
        InputDamagedError: a folder it reads is not what its manifest lists
            (:func:`check_reads`); nothing ran.
        ConfigError: a dry run of a stage that runs no Beam job.
        UserError: the stage failed for a reason the user fixes; its staged
            folder (report, dead letters) stays in the staging place and the
            published folder is untouched.
    """
    start = time.time()
    if is_dry_run(beam_args):
        return _dry_run(stage, config, beam_args, options, start)
    if not stage.publishes:
        return Outcome("ran", stage.run(config, beam_args, options), time.time() - start)
    layout = config.layout
    target, staging = layout.stage_dir(stage.name), layout.staging_dir(stage.name)
    inputs, upstream = _reads(stage, config, options)
    fingerprint = manifest.fingerprint(stage.name, inputs, upstream, config, options)
    current = all(manifest.marker_bytes(path) is not None for path in upstream.values())
    chief = is_chief()
    if not force and current:
        found = manifest.read(target)
        if found and found.get("fingerprint") == fingerprint["fingerprint"]:
            return Outcome("skipped", found, time.time() - start)
        for folder in publish.unpublished(layout, stage.name):
            found = manifest.read(folder)
            if found and found.get("fingerprint") == fingerprint["fingerprint"]:
                if chief:
                    publish.publish(layout, stage.name, source=folder)
                return Outcome("published", found, time.time() - start)
    check_reads(stage, config, options)
    staged_config = dataclasses.replace(config, layout_roots=layout.staged(stage.name).roots)
    report = stage.run(staged_config, beam_args, options)
    if not chief:
        return Outcome("ran", report, time.time() - start)
    publish.fault_point("before_marker")
    _relocate_reports(staging, target)
    report = _relocate(report, staging, target)
    write_success(staging, stage.name, dict(
        fingerprint, rows=_rows(report), seconds=round(time.time() - start, 2)))
    publish.publish(layout, stage.name)
    return Outcome("ran", report, time.time() - start)


def say(stage: str, outcome: Outcome) -> Optional[str]:
    """The line a stage that did not run prints, or None when it ran."""
    if outcome.status == "skipped":
        return f"shoprec {stage}: skipped (up to date)"
    if outcome.status == "published":
        return f"shoprec {stage}: published the output an interrupted run had finished"
    if outcome.status == "dry_run":
        built = outcome.report
        return (f"shoprec {stage}: dry run: built the {built['runner']} job "
                f"{built['job_name']} ({built['transforms']} transforms) and did not submit "
                "it; nothing ran, no counters were read, nothing was published")
    return None


def run_day(config: Config, beam_args: Sequence[str], options: Mapping[str, Any],
            force: bool = False) -> int:
    """``shoprec run``: every stage of one day in order, skipping what is done.

    A model-gate refusal (:class:`ModelNotBlessedError`) lets the later
    stages run on the last blessed model and is raised once they are done;
    any other failure stops the run.

    Returns:
        0 when every stage ran or was up to date.

    Raises:
        UserError: a stage failed for a reason the user fixes (the exit code
            says which: a data-quality gate, a model not blessed, ...).
    """
    refused: Optional[ModelNotBlessedError] = None
    summary = []
    for stage in day_stages(config):
        try:
            outcome = run_stage(stage, config, beam_args, options_of(stage, options), force)
        except ModelNotBlessedError as err:
            print(f"shoprec {stage.name}: {err}; the later stages use the last blessed model",
                  file=sys.stderr)
            refused = err
            continue
        line = say(stage.name, outcome) or (
            f"shoprec {stage.name}: done in {outcome.seconds:.1f}s, published "
            f"{config.layout.stage_dir(stage.name)}")
        print(line, flush=True)
        summary.append({"stage": stage.name, "status": outcome.status,
                        "seconds": round(outcome.seconds, 1)})
    print(json.dumps({"run_dir": config.run_dir, "date": config.date, "stages": summary},
                     indent=2))
    if refused is not None:
        raise refused
    return 0
