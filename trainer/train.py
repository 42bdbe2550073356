"""Train job: fit the multi-task model on featurized data, evaluate, export.

Reads the featurize job's output (transform graph and transformed shards),
trains under the configured distribution strategy, computes exact eval
metrics (and test metrics when the run has a test split), writes
``metrics.json`` and the serving SavedModel. Every process of
a multi-worker run executes this same code; only the chief writes shared
outputs.

Run one worker by hand with ``python -m trainer.train --config my.yaml``
(``TF_CONFIG`` set per worker for a cluster).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import os
import sys
import time
from typing import Optional, Sequence

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf
import tensorflow_transform as tft

from shoprec.core import config as config_lib, registry as F
from shoprec.core.config import Config
from shoprec.core.errors import StageOrderError
from shoprec.core.layout import Layout
from shoprec.io import models
from shoprec.io.outputs import require_success, write_report, write_success
from trainer import (baselines, callbacks as callbacks_lib, checkpoints, data, diagnostics,
                     evaluation, export, model as model_lib, retrieval as retrieval_lib,
                     strategy as strategy_lib, warm_start, weighting)

log = logging.getLogger(__name__)

# Examples per evaluation batch (at least the global training batch).
EVAL_BATCH_SIZE = 4096


class _Throughput(tf.keras.callbacks.Callback):
    """Counts training steps and times them, excluding the first (tracing) step."""

    def __init__(self):
        super().__init__()
        self.steps = 0
        self.start = self.first_step_end = self.end = None

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps == 1:
            self.first_step_end = time.perf_counter()

    def on_train_end(self, logs=None):
        self.end = time.perf_counter()

    def summary(self, global_batch_size: int) -> dict:
        seconds = self.end - self.start
        if self.steps > 1 and self.end > self.first_step_end:
            rate = (self.steps - 1) * global_batch_size / (self.end - self.first_step_end)
        else:
            rate = self.steps * global_batch_size / seconds if seconds > 0 else math.nan
        return {"steps": self.steps, "train_examples": self.steps * global_batch_size,
                "seconds": round(seconds, 3), "examples_per_second": round(rate, 1)}


def _finite_or_none(value):
    """JSON has no NaN: undefined metrics (e.g. AUC with one class) become null."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _tensorboard_dir(layout: Layout) -> Optional[str]:
    """TensorBoard log folder, or None when the tensorboard package is absent.

    TensorFlow 2.21 no longer depends on tensorboard, and without it every
    ``tf.summary`` write raises; training must not fail for want of logs.
    """
    if importlib.util.find_spec("tensorboard") is None:
        log.warning("tensorboard is not installed; training without TensorBoard logs")
        return None
    return layout.logs_dir


def _slice_feature(registry: F.Registry) -> Optional[F.Feature]:
    """The first categorical item feature the model reads: the report slices by it."""
    return next((f for f in registry.inputs()
                 if f.source == F.Source.ITEM and f.kind == F.Kind.CATEGORICAL), None)


def _diagnose(split_data: dict, config: Config, tft_output, train_pattern: str, spec,
              category: Optional[F.Feature]) -> dict:
    """``trainer.diagnostics`` of each split's collected data, against the train split."""
    registry, model_config = config.registry, config.model
    labels = sorted({t.label for t in model_config.tasks if t.type == "binary"})
    train = data.scan_columns(train_pattern, spec,
                              [registry.user_key, registry.item_key, *labels],
                              config.training.train_filter)
    train["user"], train["item"] = train[registry.user_key], train[registry.item_key]
    names = ()
    if category is not None:
        names = [v.decode() if isinstance(v, bytes) else str(v)
                 for v in tft_output.vocabulary_by_name(category.vocab_filename)]
    return {split: (None if collected is None else diagnostics.diagnose(
        collected, model_config, train, category.name if category else None, names,
        seed=config.training.seed)) for split, collected in split_data.items()}


def cold_start(diagnosed: Optional[dict]) -> dict:
    """Per binary output, eval AUC (with its interval) of cold and known items and users.

    Cold: no train example (``trainer.diagnostics``' ``item`` and ``user``
    slices); ``{output: {'item' | 'user': {'known' | 'cold': slice row}}}``.
    """
    if diagnosed is None:
        return {}
    return {name: {kind: {row["value"]: row for row in entry["slices"][kind]}
                   for kind in ("item", "user")}
            for name, entry in diagnosed.items() if not name.startswith("_")}


def _load_transform(layout: Layout) -> tft.TFTransformOutput:
    require_success(layout.featurize_dir, "featurize")
    transform_dir = layout.transform_dir
    if not tf.io.gfile.exists(os.path.join(transform_dir, "transform_fn")):
        raise StageOrderError(
            f"no TFT output at {transform_dir}; run `shoprec featurize` again")
    return tft.TFTransformOutput(transform_dir)


def _warm_start(model, config: Config, tft_output, global_batch: int) -> Optional[dict]:
    """Applies ``training.warm_start``; returns what it did (None: off).

    A resumed job's backup is restored by Keras after this, over these weights.
    """
    if config.training.warm_start == "none":
        return None
    layout = config.layout
    version = models.current_version(layout)
    if version is None:
        log.warning("training.warm_start: no model is published in %s; training from scratch",
                    layout.models_root)
        return {"version": None, "reason": f"no published model in {layout.models_root}"}
    report = warm_start.apply(model, config, layout.published_checkpoint(version),
                              layout.published_transform(version), tft_output, global_batch)
    return {"version": version, **report}


def run(config: Config, strategy_name: Optional[str] = None,
        extra_callbacks: Sequence[tf.keras.callbacks.Callback] = ()) -> dict:
    """Trains, evaluates and exports; returns the metrics written to ``metrics.json``.

    Args:
        config: Run config; reads ``layout.transform_dir`` and the transformed
            shards, writes ``layout.train_dir`` (cleared first, except for a
            backup an interrupted run left, which training resumes from).
        strategy_name: Overrides ``config.training.strategy``.
        extra_callbacks: Appended to the training callbacks (e.g. a test's
            fault injection).

    Returns:
        ``{'tasks': {output: metrics by type (trainer.evaluation)},
        'retrieval': {'recall_at_<k>', ...} or None, 'eval_examples': n,
        'test': {'tasks', 'retrieval', 'examples'} on the test split (the
        same metrics, after training) or None without one, 'baselines':
        {task: its baseline's metrics on the eval examples} (trainer.baselines),
        'training': {strategy, replicas, batch sizes, epochs, steps,
        examples_per_second, loss per epoch, initial_epoch, epochs_run,
        early_stopping, warm_start (the version and what was copied, or
        None), ...}, 'model_dir': ..., 'checkpoint': ...}``,
        non-finite values as None.

    Raises:
        StageOrderError: featurize has not finished, or wrote no test split
            although ``ingest.test_start`` is set.
        ValueError: the train split is smaller than one global batch.
    """
    # Multi-worker collectives must be configured before any other op runs.
    strategy = strategy_lib.make_strategy(strategy_name or config.training.strategy)
    chief = strategy_lib.is_chief()
    layout, training = config.layout, config.training
    tasks = tuple(config.model.tasks)
    registry = config.registry

    if chief:
        # Re-runs start clean: no checkpoint, log or model of an earlier run
        # survives, except a backup of an interrupted run to resume from.
        checkpoints.prepare_train_dir(layout, keep_backup=training.backup_and_restore)
    tf.keras.utils.set_random_seed(training.seed)

    tft_output = _load_transform(layout)
    spec = tft_output.transformed_feature_spec()
    replicas = strategy.num_replicas_in_sync
    global_batch = training.per_replica_batch_size * replicas
    multi_worker = strategy_lib.strategy_name(strategy) == "multi_worker"
    extra_labels = evaluation.label_columns(config.model)
    train_pattern = layout.transformed_pattern("train")
    item_ids = None
    steps_per_epoch = training.steps_per_epoch
    if config.model.retrieval.enabled or (multi_worker and steps_per_epoch is None):
        item_ids = data.scan_column(train_pattern, spec, registry.item_key, training.train_filter)
    if multi_worker and steps_per_epoch is None:
        # Workers read different shards of different lengths; a fixed step
        # count over repeated input keeps their collectives in lockstep.
        steps_per_epoch = max(1, item_ids.size // global_batch)
    sharding = None
    if multi_worker:
        # Whole files per worker (AUTO, trainer.data) when there are enough
        # files, else every worker reads all and keeps its share (DATA, below).
        workers = strategy_lib.cluster_worker_count(strategy_lib.tf_config())
        sharding = "file" if len(tf.io.gfile.glob(train_pattern)) >= workers else "data"
    train_ds = data.make_dataset(
        train_pattern, spec, tasks, global_batch, training=True,
        seed=training.seed, repeat=steps_per_epoch is not None,
        registry=registry, extra_labels=extra_labels, keep_if=training.train_filter)
    if sharding == "data":
        # AUTO does not fall back to DATA with fewer files than workers: it
        # fails at the first step. Under DATA each worker reads every record
        # and keeps its piece of each global batch.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        train_ds = train_ds.with_options(options)
    # Evaluation runs after every epoch outside the distributed loop; big
    # batches make it cheap, and it keeps every example whatever the size.
    eval_batch = max(global_batch, EVAL_BATCH_SIZE)
    eval_ds = data.make_dataset(
        layout.transformed_pattern("eval"), spec, tasks, eval_batch, training=False,
        registry=registry, extra_labels=extra_labels).cache()
    test_ds = None
    if config.ingest.test_start:
        # Featurize writes a test split exactly when test_start is set
        # (config.splits); failing here beats failing after training.
        test_pattern = layout.transformed_pattern("test")
        if not tf.io.gfile.glob(test_pattern):
            raise StageOrderError(
                f"ingest.test_start is set but there is no test split at "
                f"{test_pattern}; run `shoprec ingest` and `shoprec featurize` again")
        test_ds = data.make_dataset(test_pattern, spec, tasks, eval_batch, training=False,
                                    registry=registry, extra_labels=extra_labels)

    if not any(True for _ in train_ds.take(1)):
        # Training drops partial batches, so Keras would only report empty logs.
        raise ValueError(f"train: the train split has fewer than one global batch "
                         f"({global_batch}) of examples; lower per_replica_batch_size")

    with strategy.scope():
        model = model_lib.build_model(config.model, tft_output, global_batch,
                                      registry=registry)
        model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=training.learning_rate))
    warm = _warm_start(model, config, tft_output, global_batch)
    if model.retrieval is not None:
        # In-batch negatives are drawn from one replica's batch.
        model.retrieval.set_candidate_probabilities(retrieval_lib.candidate_probabilities(
            item_ids, int(model.retrieval.candidate_probability.shape[0]),
            training.per_replica_batch_size))

    def evaluate(dataset=eval_ds) -> dict:
        return evaluation.evaluate(model, dataset, config.model, registry.user_key,
                                   registry.item_key)

    # Summaries are not collective, so other workers simply do not write any.
    tensorboard_dir = _tensorboard_dir(layout) if chief else None
    throughput = _Throughput()
    epoch_log = callbacks_lib.EpochLog()
    # Before early stopping, which judges the evaluation this makes.
    epoch_eval = callbacks_lib.EpochEvaluation(evaluate, log_dir=tensorboard_dir,
                                               loss_weights=model.task_weighting.report)
    callbacks = [throughput, epoch_log, epoch_eval]
    if config.model.loss_weighting == "dwa":
        # After the evaluation, which records the weights the epoch trained
        # with; before the backup, which must hold the next epoch's.
        callbacks.append(weighting.DynamicWeightAverage(model.task_weighting))
    stopper = None
    if training.early_stopping.task is not None:
        stopping = training.early_stopping
        backup = (checkpoints.early_stopping_backup(layout, chief)
                  if training.backup_and_restore else None)
        stopper = callbacks_lib.EvalEarlyStopping(lambda: epoch_eval.latest, stopping.task,
                                                  stopping.metric,
                                                  stopping.patience, stopping.min_delta,
                                                  backup=backup)
        callbacks.append(stopper)
    if training.backup_and_restore:
        # After the stopper: its record of an epoch must be on disk before
        # Keras backs that epoch up (trainer.checkpoints).
        callbacks.append(checkpoints.backup_callback(layout))
    if tensorboard_dir:
        callbacks.append(tf.keras.callbacks.TensorBoard(log_dir=tensorboard_dir, profile_batch=0))
    log.info("training with %s over %d replica(s), global batch %d",
             strategy_lib.strategy_name(strategy), replicas, global_batch)
    callbacks.extend(extra_callbacks)
    # A progress bar over the epoch's steps on a terminal; one line per epoch in a log.
    progress = (1 if sys.stdout.isatty() else 2) if chief else 0
    history = model.fit(train_ds, epochs=training.epochs, steps_per_epoch=steps_per_epoch,
                        callbacks=callbacks, verbose=progress)
    checkpoints.remove_backup(layout, strategy, chief)

    # The final metrics, and the report's curves and slices from the same arrays.
    category = _slice_feature(registry)
    keep_keys = (category.name,) if category is not None else ()
    collected = {"eval": evaluation.collect(model, eval_ds, registry.user_key,
                                            registry.item_key, keep_keys), "test": None}
    evaluated = evaluation.evaluate_collected(collected["eval"], config.model)
    result = {"tasks": evaluated["tasks"], "retrieval": evaluated["retrieval"],
              "eval_examples": evaluated["examples"], "test": None,
              # A task's baseline (ingest's anomaly rule) on the same eval examples.
              "baselines": baselines.evaluate(layout, registry, config.model.tasks)}
    if test_ds is not None:
        # The final (best-epoch) weights; the test split never steers training.
        collected["test"] = evaluation.collect(model, test_ds, registry.user_key,
                                               registry.item_key, keep_keys)
        tested = evaluation.evaluate_collected(collected["test"], config.model)
        result["test"] = {"tasks": tested["tasks"], "retrieval": tested["retrieval"],
                          "examples": tested["examples"]}
    result["training"] = {
        "architecture": config.model.architecture,
        "loss_weighting": config.model.loss_weighting,
        # Per epoch, {task: {"weight", ["log_variance"]}}: the weights it trained
        # with (uncertainty: as learned by the epoch's end).
        "loss_weights": [entry["loss_weights"] for entry in epoch_eval.history],
        "strategy": strategy_lib.strategy_name(strategy),
        "replicas": replicas,
        "per_replica_batch_size": training.per_replica_batch_size,
        "global_batch_size": global_batch,
        "epochs": training.epochs,
        "learning_rate": training.learning_rate,
        **throughput.summary(global_batch),
        "steps_per_epoch": steps_per_epoch,
        "input_sharding": sharding,
        "loss": [float(v) for v in history.history.get("loss", [])],
        # Keras' per-output losses (click_loss, retrieval_loss, ...) per epoch.
        "losses": {name: [float(v) for v in values] for name, values in history.history.items()
                   if name.endswith("_loss")},
        "initial_epoch": epoch_log.initial_epoch,
        "epochs_run": epoch_log.completed,
        "early_stopping": stopper.summary() if stopper is not None else None,
        "eval_per_epoch": epoch_eval.history,
        "train_filter": training.train_filter,
        "warm_start": warm,
        "tensorboard_dir": tensorboard_dir,
    }
    result["model_dir"] = layout.model_dir
    export.export(model, tft_output, model.prediction_names, layout.model_dir, chief=chief,
                  registry=registry)
    result["checkpoint"] = checkpoints.save_final(model, layout, chief)

    result["diagnostics"] = layout.diagnostics_file if chief else None
    result = _finite_or_none(result)
    if chief:
        diagnosed = _finite_or_none(
            _diagnose(collected, config, tft_output, train_pattern, spec, category))
        result["cold_start"] = cold_start(diagnosed["eval"])
        write_report(layout.diagnostics_file, diagnosed)
        write_report(layout.metrics_file, result)
        write_success(layout.train_dir, "train")
    return result


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Command line: ``python -m trainer.train [--config F] [--run_dir D] [--strategy S]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="run config YAML (default: packaged demo)")
    parser.add_argument("--run_dir", help="override the config's run folder")
    parser.add_argument("--strategy", choices=strategy_lib.STRATEGIES,
                        help="override training.strategy")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    result = run(config_lib.load(args.config, run_dir=args.run_dir), args.strategy)
    print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
