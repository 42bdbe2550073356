"""Training input benchmark: examples/s fed from TFRecords vs the same tensors from memory.

The feeds run the same compiled train step of the same model in one
process: ``tfrecord`` reads the featurize job's gzip TFRecord shards through
``trainer.data.make_dataset`` with the cache on (the split parsed once and
held in memory as columns, each batch gathered from them in the streamed
order: what training uses for a split of at most ``data.CACHE_MAX_BYTES``),
``stream`` the same with the cache off (every epoch read, inflated, shuffled
and parsed from the files: what training uses for a larger split; the same
batches), and ``memory`` replays the very batches the pipeline produced, held in
memory. Each record feed first runs one untimed pass over the train split,
so the figures are for the epochs after the first. Repeats rotate the order
of the feeds so drift (other processes, thermal) hits them alike; the
figures are medians over repeats. A ratio near 1 means the input pipeline
keeps up with training (the goal is >= 0.9).

Usage (after ``shoprec demo --run_dir RUN``):

    .venv/bin/python benchmarks/train_input.py --run_dir RUN [--steps 40] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Tuple

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf
import tensorflow_transform as tft

from shoprec.core import config as config_lib
from trainer import data, model as model_lib


def _time_steps(train_function, iterator, steps: int) -> Tuple[float, float]:
    """(wall, CPU) seconds for ``steps`` train steps (the last result is read back to sync).

    CPU is this process's, all threads: the train step's and the input's. On a
    host shared with other work the wall rate measures the neighbours too; the
    CPU per example does not, and on a CPU-bound host it is what sets the rate.
    """
    start, cpu = time.perf_counter(), time.process_time()
    logs = None
    for _ in range(steps):
        logs = train_function(iterator)
    float(logs["loss"])
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_dir", required=True, help="a run folder featurize has written")
    parser.add_argument("--config", default=None, help="run config (default: packaged demo)")
    parser.add_argument("--steps", type=int, default=40, help="train steps per measurement")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per feed")
    args = parser.parse_args()

    config = config_lib.load(args.config, run_dir=args.run_dir)
    layout, training = config.layout, config.training
    batch = training.per_replica_batch_size
    tft_output = tft.TFTransformOutput(layout.transform_dir)
    tf.keras.utils.set_random_seed(training.seed)
    model = model_lib.build_model(config.model, tft_output, batch, registry=config.registry)
    model.compile(optimizer=tf.keras.optimizers.Adam(training.learning_rate))
    train_function = model.make_train_function()

    pattern = layout.transformed_pattern("train")
    spec = tft_output.transformed_feature_spec()

    def records(cache):
        return data.make_dataset(pattern, spec, config.model.tasks, batch, training=True,
                                 seed=training.seed, repeat=True, registry=config.registry,
                                 cache=cache)

    # The same tensors, from memory: the batches the record pipeline yields,
    # stacked so that each element of the in-memory dataset is one batch.
    held = list(records(False).take(args.steps + args.warmup))
    stacked = tf.nest.map_structure(lambda *t: tf.stack(t), *held)
    memory = tf.data.Dataset.from_tensor_slices(stacked).repeat().prefetch(tf.data.AUTOTUNE)

    epoch_steps = len(data.scan_column(pattern, spec, config.model.tasks[0].label)) // batch
    feeds = {"tfrecord": iter(records(True)), "stream": iter(records(False)),
             "memory": iter(memory)}
    for name, iterator in feeds.items():
        if name != "memory":
            for _ in range(epoch_steps):  # the first pass, untimed
                next(iterator)
        # Traces the step once per feed and fills the prefetch buffers.
        _time_steps(train_function, iterator, args.warmup)
    rates = {name: [] for name in feeds}
    cpu_rates = {name: [] for name in feeds}
    for repeat in range(args.repeats):
        names = list(feeds)
        order = names[repeat % len(names):] + names[:repeat % len(names)]
        for name in order:
            seconds, cpu = _time_steps(train_function, feeds[name], args.steps)
            rates[name].append(args.steps * batch / seconds)
            cpu_rates[name].append(args.steps * batch / cpu)
    cpu_medians = {name: statistics.median(values) for name, values in cpu_rates.items()}
    medians = {name: statistics.median(values) for name, values in rates.items()}
    ratios = [r / m for r, m in zip(rates["tfrecord"], rates["memory"])]
    stream_ratios = [r / m for r, m in zip(rates["stream"], rates["memory"])]
    result = {
        "batch_size": batch, "steps_per_measurement": args.steps, "repeats": args.repeats,
        "examples_per_second": {name: [round(v, 1) for v in values]
                                for name, values in rates.items()},
        "median_examples_per_second": {name: round(v, 1) for name, v in medians.items()},
        "ratio_of_medians": round(medians["tfrecord"] / medians["memory"], 3),
        "median_ratio": round(statistics.median(ratios), 3),
        "stream_ratio_of_medians": round(medians["stream"] / medians["memory"], 3),
        "stream_median_ratio": round(statistics.median(stream_ratios), 3),
        "median_examples_per_cpu_second": {name: round(v, 1)
                                           for name, v in cpu_medians.items()},
        "cpu_ratio": round(cpu_medians["tfrecord"] / cpu_medians["memory"], 3),
        "stream_cpu_ratio": round(cpu_medians["stream"] / cpu_medians["memory"], 3),
    }
    print(f"{'feed':<9} {'median ex/s':>12} {'ex/CPU-s':>9}   per repeat (ex/s)")
    for name in feeds:
        print(f"{name:<9} {medians[name]:>12.1f} {cpu_medians[name]:>9.0f}   "
              + " ".join(f"{v:.0f}" for v in rates[name]))
    cached = data.CACHE_MAX_BYTES >= sum(tf.io.gfile.stat(p).length
                                         for p in tf.io.gfile.glob(pattern))
    uses = ("what training uses for this split", "what training uses for a larger split")
    print(f"tfrecord, cached ({uses[not cached]}) / memory: ratio of medians "
          f"{result['ratio_of_medians']:.3f}, median of per-repeat ratios "
          f"{result['median_ratio']:.3f} (goal >= 0.9)")
    print(f"stream ({uses[cached]}) / memory: ratio of medians "
          f"{result['stream_ratio_of_medians']:.3f}, median of per-repeat ratios "
          f"{result['stream_median_ratio']:.3f} (goal >= 0.9)")
    print(f"by CPU (examples per CPU-second, feed / memory): cached {result['cpu_ratio']:.3f}, "
          f"stream {result['stream_cpu_ratio']:.3f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
