"""Per-epoch evaluation benchmark: its cost beside a training epoch, at two eval batch sizes.

The trainer evaluates every task over the whole eval split after each epoch
(``trainer.callbacks.EpochEvaluation``). This times, in one process and on
one model, a full evaluation (``trainer.evaluation.evaluate``) with the eval
split batched like training (the global batch, read from the shards each
time) and as the trainer now does (``trainer.train.EVAL_BATCH_SIZE``, cached
after the first pass), and one training epoch. Repeats alternate the order
so drift on a shared machine hits both alike; figures are medians.

Usage (after ``shoprec demo --run_dir RUN``):

    .venv/bin/python benchmarks/epoch_eval.py --run_dir RUN [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf
import tensorflow_transform as tft

from shoprec.core import config as config_lib
from trainer import data, evaluation, model as model_lib, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_dir", required=True, help="a run folder featurize has written")
    parser.add_argument("--config", default=None, help="run config (default: packaged demo)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    config = config_lib.load(args.config, run_dir=args.run_dir)
    layout, training, registry = config.layout, config.training, config.registry
    batch = training.per_replica_batch_size
    tft_output = tft.TFTransformOutput(layout.transform_dir)
    spec = tft_output.transformed_feature_spec()
    tasks, extra = config.model.tasks, evaluation.label_columns(config.model)
    tf.keras.utils.set_random_seed(training.seed)
    model = model_lib.build_model(config.model, tft_output, batch, registry=registry)
    model.compile(optimizer=tf.keras.optimizers.Adam(training.learning_rate))
    train_ds = data.make_dataset(layout.transformed_pattern("train"), spec, tasks, batch,
                                 training=True, seed=training.seed, registry=registry,
                                 extra_labels=extra)

    def eval_ds(size):
        return data.make_dataset(layout.transformed_pattern("eval"), spec, tasks, size,
                                 training=False, registry=registry, extra_labels=extra)

    feeds = {f"batch {batch}, read each time": eval_ds(batch),
             f"batch {max(batch, train.EVAL_BATCH_SIZE)}, cached":
                 eval_ds(max(batch, train.EVAL_BATCH_SIZE)).cache()}

    def evaluate(dataset) -> float:
        start = time.perf_counter()
        evaluation.evaluate(model, dataset, config.model, registry.user_key, registry.item_key)
        return time.perf_counter() - start

    model.fit(train_ds, epochs=1, verbose=0)  # traces the train step
    for dataset in feeds.values():
        evaluate(dataset)  # traces the eval step and fills the cache
    seconds = {name: [] for name in feeds}
    epochs = []
    for repeat in range(args.repeats):
        start = time.perf_counter()
        model.fit(train_ds, epochs=1, verbose=0)
        epochs.append(time.perf_counter() - start)
        for name in (list(feeds) if repeat % 2 == 0 else list(feeds)[::-1]):
            seconds[name].append(evaluate(feeds[name]))
    epoch = statistics.median(epochs)
    medians = {name: statistics.median(v) for name, v in seconds.items()}
    old, new = medians.values()
    print(f"training epoch: median {epoch:.2f}s over {args.repeats}")
    for name, value in medians.items():
        print(f"evaluation, {name}: median {value:.2f}s = {value / epoch:.2f} of an epoch")
    print(f"cached big-batch evaluation / per-batch evaluation: {new / old:.3f}")
    print(json.dumps({"epoch_seconds": epochs, "eval_seconds": seconds,
                      "ratio_new_over_old": round(new / old, 3)}))


if __name__ == "__main__":
    main()
