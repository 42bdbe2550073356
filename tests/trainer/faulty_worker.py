"""A training worker that kills itself mid-epoch, as a preempted machine would.

``python -m tests.trainer.faulty_worker --config F --kill_epoch E --kill_batch B
--progress P`` trains like ``python -m trainer.train --strategy multi_worker``
but SIGKILLs its own process at batch B of epoch E, after writing the epochs
it completed and where it died to P.
"""

import argparse
import json
import os
import signal

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf

from shoprec.core import config as config_lib
from trainer import train


class KillAt(tf.keras.callbacks.Callback):
    """SIGKILLs this process when batch ``batch`` of epoch ``epoch`` begins."""

    def __init__(self, epoch: int, batch: int, progress_path: str):
        super().__init__()
        self.epoch, self.batch, self.progress_path = epoch, batch, progress_path
        self.current_epoch = None
        self.completed = []

    def on_epoch_begin(self, epoch, logs=None):
        self.current_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self.completed.append(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        if self.current_epoch == self.epoch and batch == self.batch:
            with open(self.progress_path, "w") as f:
                json.dump({"completed": self.completed, "killed_in_epoch": self.current_epoch,
                           "killed_at_batch": batch}, f)
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--kill_epoch", type=int, required=True)
    parser.add_argument("--kill_batch", type=int, required=True)
    parser.add_argument("--progress", required=True)
    args = parser.parse_args()
    config = config_lib.load(args.config)
    train.run(config, "multi_worker",
              extra_callbacks=[KillAt(args.kill_epoch, args.kill_batch, args.progress)])


if __name__ == "__main__":
    main()
