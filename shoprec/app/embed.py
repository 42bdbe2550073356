"""The embed stage: item photos → one embedding per item, run before ingest.

Item photos belong to items, not events: this stage turns each item's photo
into a compact vector once, and ingest joins it by item id, so event examples
never carry pixels. Unless ``embed.encoder`` names a SavedModel embedder, it
first trains the packaged image encoder (``trainer.image_encoder``) on the
catalogue: a CNN that predicts ``embed.attributes`` from the photo, with its
accuracy measured on held-out items next to the majority-class rate (the items
a HOLDOUT feature of the item key holds out, when the registry has one: the
encoder must not learn the attributes the model's tasks are judged on). With
``embed.behaviour.enabled`` the encoder also learns what shoppers do with each
item (``trainer.behaviour``), counted by a Beam job over the events before
``ingest.eval_start`` (``pipelines.behaviour_counts``): the stage then reads
``inputs.events`` and depends on ``ingest.eval_start``. Then the Beam embed job
(``pipelines.embed_images``) embeds every catalogue item.

Writes ``embed/encoder/`` (the trained encoder), ``embed/behaviour/`` (the
per-item train-window counts and their dead letters), ``embed/items/`` (embedding
shards, dead letters, the job report) and ``embed/report.json``, and last the
success marker ingest requires. Fails, after writing the report but not the
marker, when the photos' bad fraction is over the data set's threshold or the
items file has fewer than ``dataset.quality.min_rows`` rows.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from pipelines import behaviour_counts, embed_images, report as report_lib
from pipelines.options import is_dry_run, pipeline_options
from shoprec.core.errors import ConfigError
from shoprec.io.outputs import clear, write_report, write_success
from trainer import behaviour as B
from trainer import image_encoder as E
from transforms import holdout as holdout_lib

# Inputs whose dead letters the embed job counts (see pipelines.images).
_INPUTS = ("items", "images")


def _held_out_items(registry, ids) -> Optional[np.ndarray]:
    """bool per catalogue item: held out by a HOLDOUT feature of the item key; None if none.

    The photo embedding is an input of the model's attribute tasks: an encoder
    trained on a held-out item's category and colour would hand them to the
    model through the embedding, so those items are the encoder's held-out
    items too (and its accuracy is measured on the same items as the tasks').
    """
    holdouts = [h for h in registry.holdouts() if h.derived_from[0] == registry.item_key]
    if not holdouts:
        return None
    keys = tf.constant([str(i) for i in ids])
    return np.any([holdout_lib.held_out(keys, h.fraction).numpy() > 0.5 for h in holdouts],
                  axis=0)


def _behaviour_targets(config, ids, beam_args) -> Tuple[B.Targets, Dict[str, Any]]:
    """Counts the train window's events per item (a Beam job) → the behaviour targets."""
    layout, behaviour = config.layout, config.embed.behaviour
    # A dry run builds the embed job only; the encoder it needs is still trained
    # here, so its counts are too, on the local runner.
    dry = bool(beam_args) and is_dry_run(pipeline_options(beam_args))
    job = behaviour_counts.run(
        config.input_path(config.inputs.events), config.inputs.format, config.data,
        config.eval_start_ts, layout.behaviour_counts, layout.behaviour_dead_letter,
        None if dry else beam_args)
    targets = B.targets(B.read_counts(job["outputs"]["counts"]), ids, behaviour.min_events,
                        behaviour.smoothing)
    return targets, {**job, "columns": targets.columns, "priors": targets.priors,
                     "teachers": int(targets.weight.sum()),
                     "config": dataclasses.asdict(behaviour)}


def _train_encoder(config, width: int, beam_args) -> Dict[str, Any]:
    """Trains and exports the packaged encoder; returns its training report."""
    embed, data = config.embed, config.data
    catalogue = E.load_catalogue(
        config.input_path(config.inputs.items), config.input_path(config.inputs.images_root),
        embed.attributes, tuple(embed.image_shape), id_column=data.items.key,
        image_path=data.items.image_path, file_format=config.inputs.format,
        min_class_count=embed.min_class_count,
        allowed_prefixes=config.inputs.allowed_image_prefixes)
    encoder_config = dataclasses.replace(
        E.EncoderConfig(), embedding_dim=width, epochs=embed.epochs, min_steps=embed.min_steps,
        seed=embed.seed)
    held_out = _held_out_items(config.registry, catalogue.ids)
    targets, counted = (_behaviour_targets(config, catalogue.ids, beam_args)
                        if embed.behaviour.enabled else (None, None))
    model, report = E.train_encoder(catalogue.images, catalogue.labels, encoder_config,
                                    {k: len(v) for k, v in catalogue.classes.items()},
                                    held_out=held_out, behaviour=targets,
                                    behaviour_weight=embed.behaviour.weight)
    if counted is not None:
        report["behaviour_counts"] = counted
    report.update(items=int(len(catalogue.ids)), skipped=len(catalogue.skipped),
                  held_out_by=("task holdout" if held_out is not None else "seeded split"))
    E.export(model, config.layout.encoder_dir, catalogue.classes, report)
    return report


def run(config, beam_args: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Runs the embed stage for ``config``; returns its report.

    Raises:
        ConfigError: the registry has no EMBEDDING feature, or the embedder's
            output width is not that feature's ``width``.
        report.DataQualityError: too many photos are missing or broken.
        InputEmptyError: the items file has too few rows.
    """
    feature = config.registry.embedding_feature()
    if feature is None:
        raise ConfigError("the registry has no EMBEDDING feature, so there is nothing "
                          "to embed; ingest needs no embed stage for this data set")
    layout, embed, data = config.layout, config.embed, config.data
    start = time.time()
    clear(layout.embed_dir)
    report: Dict[str, Any] = {}
    if embed.encoder is None:
        report["encoder"] = _train_encoder(config, feature.width, beam_args)
        model_dir = layout.encoder_dir
    else:
        model_dir = embed.encoder
    job = embed_images.run(
        config.input_path(config.inputs.items), config.input_path(config.inputs.images_root),
        model_dir, layout.embed_items_dir, file_format=config.inputs.format,
        id_column=data.items.key, image_path=data.items.image_path,
        signature=embed.signature, input_key=embed.input_key, output_key=embed.output_key,
        image_shape=tuple(embed.image_shape), batch_size=embed.batch_size,
        expected_width=feature.width,
        allowed_prefixes=config.inputs.allowed_image_prefixes, beam_args=beam_args)
    counts = job["counts"]
    quality = data.quality
    inputs = report_lib.inputs_section(counts, _INPUTS)
    found = report_lib.problems({"inputs": inputs}, quality.max_bad_fraction,
                                dict(quality.max_bad_fraction_by_reason))
    empty = report_lib.too_few_rows(counts, {"items": config.input_path(config.inputs.items)},
                                    (), quality.min_rows)
    report.update({
        "status": "failed" if found or empty else "ok", "problems": empty + found,
        "inputs": inputs,
        "counts": counts,
        "items": counts.get("embed/items", 0), "with_image": counts.get("embed/embedded", 0),
        "embedding_width": job["embedding_dim"], "image_shape": job["image_shape"],
        "model_dir": model_dir,
        "job_seconds": job["seconds"], "seconds": round(time.time() - start, 2),
        "outputs": job["outputs"]})
    write_report(layout.embed_report, report)
    report_lib.check_quality({"inputs": inputs, "outputs": {"report": layout.embed_report}},
                             quality.max_bad_fraction,
                             dict(quality.max_bad_fraction_by_reason), stage="embed")
    report_lib.check_rows(empty, report)
    write_success(layout.embed_dir, "embed")
    return report
