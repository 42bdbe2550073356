"""Training state on disk: the per-epoch backup a failed job resumes from, and the
final checkpoint.

``BackupAndRestore`` saves the model, optimizer and epoch counter at the end
of every epoch under ``train/backup``; a job restarted after a worker died
restores it and continues with the first unfinished epoch, and a job that
finishes deletes it. A re-run therefore starts clean unless a backup is
waiting, in which case it resumes: the backup is the one thing a new run
keeps from the train folder.

Early stopping's state (epochs without improvement, best value and epoch,
the metric history, the best weights) goes with the backup, under
``train/backup/early_stopping`` (:class:`EarlyStoppingBackup`), so a resumed
job stops at the epoch an uninterrupted one would and restores the same best
weights. Keras' backup is one checkpoint of the model and cannot carry a
callback's state, so this is a second record, written by the stopper just
before Keras backs the epoch up; two epochs are kept so that whichever epoch
Keras' backup holds, its early-stopping state is there too.

Saving is collective under MultiWorkerMirroredStrategy (reading a
sync-on-read variable reduces across workers), so every worker saves and only
the chief's copy lands in the shared folder (``trainer.strategy.write_dir``).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from typing import List, Optional, Sequence, Tuple

import numpy as np

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf

from shoprec.core.layout import CHECKPOINT_PREFIX, Layout
from shoprec.io.outputs import clear
from trainer import strategy as strategy_lib

log = logging.getLogger(__name__)

EARLY_STOPPING_DIR = "early_stopping"
_STATE_FILE = re.compile(r"^state-(\d+)\.json$")
_WEIGHTS_FILE = re.compile(r"^best-(\d+)\.npz$")


def has_backup(layout: Layout) -> bool:
    """Whether an unfinished run left a backup to resume from."""
    return bool(tf.io.gfile.glob(os.path.join(layout.backup_dir, "*", "checkpoint")))


def prepare_train_dir(layout: Layout, keep_backup: bool) -> bool:
    """Empties the train folder (chief only), keeping a resumable backup if asked.

    Args:
        layout: The run's folders.
        keep_backup: Keep ``layout.backup_dir`` when it holds a checkpoint.

    Returns:
        Whether training will resume from a kept backup.
    """
    resume = keep_backup and has_backup(layout)
    clear(layout.train_dir, keep=(os.path.basename(layout.backup_dir),) if resume else ())
    tf.io.gfile.makedirs(layout.train_dir)
    if resume:
        log.info("resuming from the backup in %s", layout.backup_dir)
    return resume


def backup_callback(layout: Layout) -> tf.keras.callbacks.BackupAndRestore:
    """Per-epoch backup, which :func:`remove_backup` deletes once ``fit`` has returned.

    Keras' own deletion would race: the chief removes the folder as soon as
    its ``fit`` ends, while another worker may still be writing its last
    backup into ``workertemp_<i>`` inside it (and then fails on a vanished file).
    """
    return tf.keras.callbacks.BackupAndRestore(layout.backup_dir, save_freq="epoch",
                                               delete_checkpoint=False)


def remove_backup(layout: Layout, strategy: tf.distribute.Strategy, chief: bool) -> None:
    """Deletes the backup once every worker is past its last save; the chief deletes."""
    strategy_lib.barrier(strategy)
    if chief and tf.io.gfile.exists(layout.backup_dir):
        tf.io.gfile.rmtree(layout.backup_dir)


def save_final(model: tf.keras.Model, layout: Layout, chief: bool) -> str:
    """Writes the trained model and optimizer as a checkpoint; every worker must call it.

    Returns:
        The chief's checkpoint path prefix (``train/checkpoint/ckpt``).
    """
    target, temporary = strategy_lib.write_dir(layout.checkpoint_dir, chief)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    try:
        checkpoint.write(os.path.join(target, CHECKPOINT_PREFIX))
    finally:
        strategy_lib.discard_write_dir(target, temporary)
    return os.path.join(layout.checkpoint_dir, CHECKPOINT_PREFIX)


class EarlyStoppingBackup:
    """Early-stopping state by epoch, beside Keras' per-epoch backup.

    For epoch ``e``: ``state-<e>.json`` holds the stopper's counters and
    history after that epoch, and ``best-<b>.npz`` the weights of its best
    epoch ``b`` (written only in the epoch that improved). The weights are
    written before the state, so a state on disk always has its weights.

    Args:
        directory: Folder of the records (``train/backup/early_stopping``).
        write: Whether this process writes (the chief); every worker reads.
    """

    def __init__(self, directory: str, write: bool = True):
        self.directory = directory
        self.write = write

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def save(self, epoch: int, state: dict, new_best_weights: Optional[Sequence] = None
             ) -> None:
        """Records the state after ``epoch``; keeps this and the previous epoch's record.

        Args:
            epoch: The epoch just finished.
            state: JSON-able counters; ``state['best_epoch']`` names the weights file.
            new_best_weights: The model's weights when ``epoch`` is the new best.
        """
        if not self.write:
            return
        tf.io.gfile.makedirs(self.directory)
        if new_best_weights is not None:
            buffer = io.BytesIO()
            np.savez(buffer, *[np.asarray(w) for w in new_best_weights])
            _write_atomically(self._path(f"best-{int(epoch)}.npz"), buffer.getvalue())
        _write_atomically(self._path(f"state-{int(epoch)}.json"),
                          json.dumps(dict(state, epoch=int(epoch))).encode())
        self._prune(keep_states={int(epoch), int(epoch) - 1})

    def load(self, epoch: int) -> Optional[Tuple[dict, Optional[List[np.ndarray]]]]:
        """The state recorded after ``epoch`` and its best weights, or None if none was.

        Returns:
            ``(state, best weights or None when no epoch has improved)``.
        """
        path = self._path(f"state-{int(epoch)}.json")
        if not tf.io.gfile.exists(path):
            return None
        with tf.io.gfile.GFile(path, "rb") as f:
            state = json.loads(f.read())
        weights = None
        if state.get("best_epoch") is not None:
            with tf.io.gfile.GFile(self._path(f"best-{state['best_epoch']}.npz"), "rb") as f:
                arrays = np.load(io.BytesIO(f.read()))
                weights = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
        return state, weights

    def _prune(self, keep_states: set) -> None:
        names = tf.io.gfile.listdir(self.directory)
        keep_weights = set()
        for name in names:
            match = _STATE_FILE.match(name)
            if match and int(match.group(1)) in keep_states:
                with tf.io.gfile.GFile(self._path(name), "rb") as f:
                    keep_weights.add(json.loads(f.read()).get("best_epoch"))
        for name in names:
            state, weights = _STATE_FILE.match(name), _WEIGHTS_FILE.match(name)
            if ((state and int(state.group(1)) not in keep_states)
                    or (weights and int(weights.group(1)) not in keep_weights)):
                tf.io.gfile.remove(self._path(name))


def early_stopping_backup(layout: Layout, chief: bool) -> EarlyStoppingBackup:
    """Where the early-stopping state of this run's backup lives; only the chief writes."""
    return EarlyStoppingBackup(os.path.join(layout.backup_dir, EARLY_STOPPING_DIR), write=chief)


def _write_atomically(path: str, content: bytes) -> None:
    # A reader must never see half a file: a job can be killed mid-write.
    temporary = path + ".tmp"
    with tf.io.gfile.GFile(temporary, "wb") as f:
        f.write(content)
    tf.io.gfile.rename(temporary, path, overwrite=True)
