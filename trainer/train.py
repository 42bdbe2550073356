"""Train job: fit the multi-task model on featurized data, evaluate, export.

Reads the featurize job's output (transform graph and transformed shards),
trains under the configured distribution strategy, computes exact eval
metrics, writes ``metrics.json`` and the serving SavedModel. Every process of
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
import time
from typing import Optional, Sequence

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf
import tensorflow_transform as tft

from shoprec import config as config_lib
from shoprec.config import Config
from trainer import data, export, metrics, model as model_lib, strategy as strategy_lib

log = logging.getLogger(__name__)

SHARD_GLOB = "-*-of-*.tfrecord.gz"


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
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _tensorboard_dir(train_dir: str) -> Optional[str]:
    """TensorBoard log folder, or None when the tensorboard package is absent.

    TensorFlow 2.21 no longer depends on tensorboard, and without it every
    ``tf.summary`` write raises; training must not fail for want of logs.
    """
    if importlib.util.find_spec("tensorboard") is None:
        log.warning("tensorboard is not installed; training without TensorBoard logs")
        return None
    return os.path.join(train_dir, "logs")


def _load_transform(transform_dir: str):
    if not tf.io.gfile.exists(os.path.join(transform_dir, "transform_fn")):
        raise FileNotFoundError(
            f"train: no TFT output at {transform_dir}; run `shoprec featurize` first")
    return tft.TFTransformOutput(transform_dir)


def run(config: Config, strategy_name: Optional[str] = None) -> dict:
    """Trains, evaluates and exports; returns the metrics written to ``metrics.json``.

    Args:
        config: Run config; reads ``layout.transform_dir`` and the transformed
            shards, writes ``layout.train_dir`` (cleared first).
        strategy_name: Overrides ``config.training.strategy``.

    Returns:
        ``{'tasks': {task: {'auc', 'log_loss', 'positive_rate',
        'mean_prediction'}}, 'eval_examples': n, 'training': {strategy,
        replicas, batch sizes, epochs, steps, examples_per_second, loss per
        epoch, ...}, 'model_dir': ...}``, non-finite values as None.

    Raises:
        FileNotFoundError: featurize has not run.
        ValueError: the train split is smaller than one global batch.
    """
    # Multi-worker collectives must be configured before any other op runs.
    strategy = strategy_lib.make_strategy(strategy_name or config.training.strategy)
    chief = strategy_lib.is_chief()
    layout, training = config.layout, config.training
    tasks = tuple(config.model.tasks)

    if chief:
        # Re-runs start clean: no checkpoint, log or model of an earlier run survives.
        if tf.io.gfile.exists(layout.train_dir):
            tf.io.gfile.rmtree(layout.train_dir)
        tf.io.gfile.makedirs(layout.train_dir)
    tf.keras.utils.set_random_seed(training.seed)

    tft_output = _load_transform(layout.transform_dir)
    spec = tft_output.transformed_feature_spec()
    replicas = strategy.num_replicas_in_sync
    global_batch = training.per_replica_batch_size * replicas
    train_ds = data.make_dataset(
        layout.transformed("train") + SHARD_GLOB, spec, tasks, global_batch, training=True,
        seed=training.seed, repeat=training.steps_per_epoch is not None)
    eval_ds = data.make_dataset(
        layout.transformed("eval") + SHARD_GLOB, spec, tasks, global_batch, training=False)

    if not any(True for _ in train_ds.take(1)):
        # Training drops partial batches, so Keras would only report empty logs.
        raise ValueError(f"train: the train split has fewer than one global batch "
                         f"({global_batch}) of examples; lower per_replica_batch_size")

    with strategy.scope():
        model = model_lib.build_model(config.model, tft_output, global_batch)
        model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=training.learning_rate))

    throughput = _Throughput()
    callbacks = [throughput]
    # Summaries are not collective, so other workers simply do not write any.
    tensorboard_dir = _tensorboard_dir(layout.train_dir) if chief else None
    if tensorboard_dir:
        callbacks.append(tf.keras.callbacks.TensorBoard(log_dir=tensorboard_dir, profile_batch=0))
    log.info("training with %s over %d replica(s), global batch %d",
             strategy_lib.strategy_name(strategy), replicas, global_batch)
    history = model.fit(train_ds, epochs=training.epochs, steps_per_epoch=training.steps_per_epoch,
                        callbacks=callbacks, verbose=2 if chief else 0)

    evaluation = metrics.evaluate(model, eval_ds, tasks)
    result = {"tasks": {t.name: evaluation[t.name] for t in tasks},
              "eval_examples": evaluation["examples"]}
    result["training"] = {
        "strategy": strategy_lib.strategy_name(strategy),
        "replicas": replicas,
        "per_replica_batch_size": training.per_replica_batch_size,
        "global_batch_size": global_batch,
        "epochs": training.epochs,
        "learning_rate": training.learning_rate,
        **throughput.summary(global_batch),
        "loss": [float(v) for v in history.history.get("loss", [])],
        "tensorboard_dir": tensorboard_dir,
    }
    result["model_dir"] = layout.model_dir
    export.export(model, tft_output, [t.name for t in tasks], layout.model_dir, chief=chief)

    result = _finite_or_none(result)
    if chief:
        with tf.io.gfile.GFile(layout.metrics_file, "w") as f:
            f.write(json.dumps(result, indent=2, sort_keys=True))
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
