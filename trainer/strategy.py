"""Distribution strategy selection, and who may write in a multi-worker run.

The same training code runs on a laptop CPU, one multi-GPU machine and a
cluster of workers; only the strategy differs. ``TF_CONFIG`` is read when a
strategy is made, never at import, so a launcher can set it after importing.

``MultiWorkerMirroredStrategy`` must be created before any other TensorFlow op
runs in the process (it configures the collective runtime), which is why
:func:`make_strategy` decides multi-worker from ``TF_CONFIG`` alone before it
asks TensorFlow anything.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Mapping, Optional, Tuple

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


def tf_config() -> dict:
    """The parsed ``TF_CONFIG`` environment variable ({} when unset or empty).

    Raises:
        ValueError: ``TF_CONFIG`` is set but is not a JSON object.
    """
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise ValueError("TF_CONFIG must be a JSON object")
    return value


def cluster_worker_count(config: Mapping[str, Any]) -> int:
    """Number of training processes in a TF_CONFIG cluster (chief + workers)."""
    cluster = config.get("cluster") or {}
    return len(cluster.get("chief") or []) + len(cluster.get("worker") or [])


def choose(name: Optional[str], config: Mapping[str, Any], num_gpus: Optional[int] = None) -> str:
    """Resolves a strategy name, ``auto`` included, to a concrete one.

    Args:
        name: One of :data:`STRATEGIES`; None means ``auto``.
        config: Parsed TF_CONFIG (see :func:`tf_config`).
        num_gpus: Local GPU count; only consulted for ``auto`` on a single
            worker, and looked up lazily when None.

    Returns:
        ``default``, ``mirrored`` or ``multi_worker``.

    Raises:
        ValueError: ``name`` is not a known strategy.
    """
    name = name or "auto"
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; expected one of {STRATEGIES}")
    if name != "auto":
        return name
    if cluster_worker_count(config) > 1:
        return "multi_worker"
    if num_gpus is None:
        # Listing physical devices does not initialize the runtime.
        num_gpus = len(tf.config.list_physical_devices("GPU"))
    return "mirrored" if num_gpus > 1 else "default"


def mirrored_devices() -> list:
    """Devices a local MirroredStrategy spans: every GPU, else every logical CPU.

    Falling back to logical CPUs lets tests exercise real cross-replica code
    paths on a machine whose CPU is split into several logical devices.
    """
    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    return [d.name for d in devices]


def make_strategy(name: Optional[str] = "auto") -> tf.distribute.Strategy:
    """Creates the distribution strategy for ``name`` (see :func:`choose`).

    Call this before building any dataset, model or tensor.

    Raises:
        ValueError: ``name`` is not a known strategy.
    """
    resolved = choose(name, tf_config())
    if resolved == "multi_worker":
        # Cluster membership comes from TF_CONFIG; collectives are picked per
        # device type (NCCL on GPUs, ring on CPUs).
        return tf.distribute.MultiWorkerMirroredStrategy()
    if resolved == "mirrored":
        devices = mirrored_devices()
        cross_device_ops = None  # GPUs: MirroredStrategy's default (NCCL all-reduce).
        if all("CPU" in d.upper() for d in devices):
            # The CPU default is RING collectives, whose instance keys restart
            # with every strategy object; a second strategy in one process
            # (tests, notebooks) then collides with the first one's cached
            # collective shapes. Reducing on one device uses no collectives.
            cross_device_ops = tf.distribute.ReductionToOneDevice()
        return tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=cross_device_ops)
    return tf.distribute.get_strategy()


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """Short name of a strategy object, as recorded in metrics."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multi_worker"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    return "default"


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Returns on each worker once every worker has called it.

    A cross-replica sum of a constant: under MultiWorkerMirroredStrategy it
    is a collective every worker must join; in one process it waits for nothing.
    """
    strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)),
                    axis=None)


def is_chief(config: Optional[Mapping[str, Any]] = None) -> bool:
    """Whether this process should write shared outputs (model, metrics, logs).

    Follows the TensorFlow multi-worker convention: the ``chief`` task if the
    cluster has one, else worker 0; a process without a cluster is its own chief.

    Args:
        config: Parsed TF_CONFIG; read from the environment when None.
    """
    config = tf_config() if config is None else config
    task = config.get("task") or {}
    task_type = task.get("type")
    if task_type is None or task_type == "chief":
        return True
    cluster = config.get("cluster") or {}
    return task_type == "worker" and int(task.get("index", 0)) == 0 and "chief" not in cluster


def write_dir(final_dir: str, chief: bool) -> Tuple[str, bool]:
    """Where this process should write an output every worker must produce.

    Saving under MultiWorkerMirroredStrategy is collective: every worker must
    save, but only the chief's copy may land in the shared location. Other
    workers write to a private temporary folder, removed with
    :func:`discard_write_dir`.

    Returns:
        (folder to write, whether it is temporary).
    """
    if chief:
        return final_dir, False
    return tempfile.mkdtemp(prefix="shoprec-worker-"), True


def discard_write_dir(path: str, temporary: bool) -> None:
    """Removes a non-chief's temporary write folder (no-op for the chief)."""
    if temporary:
        shutil.rmtree(path, ignore_errors=True)
