"""Training state on disk: the per-epoch backup a failed job resumes from, and the
final checkpoint.

``BackupAndRestore`` saves the model, optimizer and epoch counter at the end
of every epoch under ``train/backup``; a job restarted after a worker died
restores it and continues with the first unfinished epoch, and a job that
finishes deletes it. A re-run therefore starts clean unless a backup is
waiting, in which case it resumes: the backup is the one thing a new run
keeps from the train folder.

Saving is collective under MultiWorkerMirroredStrategy (reading a
sync-on-read variable reduces across workers), so every worker saves and only
the chief's copy lands in the shared folder (``trainer.strategy.write_dir``).
"""

from __future__ import annotations

import logging
import os

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf

from shoprec.config import Layout
from trainer import strategy as strategy_lib

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "ckpt"


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
    if tf.io.gfile.exists(layout.train_dir):
        for name in tf.io.gfile.listdir(layout.train_dir):
            path = os.path.join(layout.train_dir, name.rstrip("/"))
            if resume and path.rstrip("/") == layout.backup_dir:
                continue
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)
    tf.io.gfile.makedirs(layout.train_dir)
    if resume:
        log.info("resuming from the backup in %s", layout.backup_dir)
    return resume


def backup_callback(layout: Layout) -> tf.keras.callbacks.BackupAndRestore:
    """Per-epoch backup, deleted by Keras when ``fit`` returns normally."""
    return tf.keras.callbacks.BackupAndRestore(layout.backup_dir, save_freq="epoch",
                                               delete_checkpoint=True)


def remove_backup(layout: Layout, chief: bool) -> None:
    """Removes what Keras leaves of the backup (its emptied folder); chief only."""
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
