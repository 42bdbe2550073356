"""One training step's cost against the rows of an embedding table, under the trainer's Adam.

The trainer compiles Keras 2's ``Adam`` (``trainer/train.py``). Given an
embedding's sparse gradient it still decays both slots and updates every row
of the table, so a step costs in proportion to the table (the user id's grows
with the users), not to the batch. This times a step of one embedding of 16
dimensions and a dense layer on batches of 256, on one thread, at each row
count, and prints each against the smallest::

    python benchmarks/embedding_step.py --rows 1500,150000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # run as a script: make shoprec importable
    sys.path.insert(0, REPO_ROOT)

import shoprec  # noqa: E402,F401  (selects Keras 2 before TensorFlow loads)


def step_ms(rows: int, steps: int, batch: int = 256, seed: int = 0) -> float:
    """Mean milliseconds of one compiled step over ``steps`` steps (after a first, untimed one)."""
    import numpy as np
    import tensorflow as tf

    embedding, dense = tf.keras.layers.Embedding(rows, 16), tf.keras.layers.Dense(1)
    optimizer = tf.keras.optimizers.Adam(0.01)
    ids = tf.constant(np.random.default_rng(seed).integers(0, rows, batch))
    target = tf.ones((batch, 1))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((dense(embedding(ids)) - target) ** 2)
        variables = embedding.trainable_variables + dense.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

    step()  # traced and the slots built outside the timing
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return 1e3 * (time.perf_counter() - start) / steps


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1500,150000", help="comma-separated table sizes")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    sizes = [int(n) for n in args.rows.split(",")]
    times = [step_ms(n, args.steps) for n in sizes]
    print("| embedding rows | ms a step | against the smallest |")
    print("|---|---|---|")
    for n, ms in zip(sizes, times):
        print(f"| {n:,} | {ms:.3f} | {ms / times[0]:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
