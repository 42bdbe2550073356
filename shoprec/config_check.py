"""Checks that the sections of a run config fit together and fit the data set.

Kept apart from ``shoprec.config`` (the settings themselves) so that each
stays short; :func:`shoprec.config.load` runs :func:`check`.
"""

from __future__ import annotations

from shoprec.config import (ARCHITECTURES, TASK_TYPES, Config, ConfigError,
                            parse_timestamp)


def check(config: Config, where: str) -> None:
    """Checks a loaded config's sections against each other and the registry.

    Raises:
        ConfigError: the first misfit found, naming the key.
    """
    if config.inputs.format not in ("csv", "jsonl", "parquet"):
        raise ConfigError(f"{where}: inputs.format must be csv, jsonl or parquet")
    if config.training.strategy not in ("auto", "default", "mirrored", "multi_worker"):
        raise ConfigError(f"{where}: training.strategy must be auto|default|mirrored|multi_worker")
    for key in ("eval_start", "test_start"):
        try:
            value = getattr(config.ingest, key)
            if value is not None:
                parse_timestamp(value)
        except ValueError as err:
            raise ConfigError(f"{where}: ingest.{key}: {err}") from err
    eval_ts, test_ts = config.split_starts
    if test_ts is not None and test_ts <= eval_ts:
        raise ConfigError(f"{where}: ingest.test_start must be after ingest.eval_start")

    label_names = {f.name for f in config.registry.labels()}
    # Binary targets are 0/1 labels; a multiclass task may predict a
    # categorical feature's index (an item attribute) and a regression task a
    # numeric feature's transformed value.
    targets = {"binary": ("label",), "multiclass": ("label", "categorical"),
               "regression": ("label", "numeric", "flag")}
    for task in config.model.tasks:
        feature = config.registry.by_name.get(task.label)
        kinds = targets.get(task.type, ("label",))
        if feature is None or feature.kind.value not in kinds:
            raise ConfigError(
                f"{where}: task {task.name!r} names label {task.label!r}; a {task.type} "
                f"task's label must be a registry feature of kind {kinds} "
                f"(registry labels are {sorted(label_names)})")
    embed = config.embed
    if len(embed.image_shape) != 3 or embed.image_shape[2] != 3 or min(embed.image_shape) < 1:
        raise ConfigError(f"{where}: embed.image_shape must be [height, width, 3]")
    if config.registry.embedding_feature() is not None and embed.encoder is None:
        items = config.data.items
        missing = [a for a in embed.attributes if items.column(a) is None]
        if not embed.attributes or missing:
            raise ConfigError(f"{where}: embed.attributes must name item columns the encoder "
                              f"learns from the photos; not item columns: {missing}")
    # A multiclass task's scores are a list of class probabilities: no order.
    rankable = {f"p_{t.name}" for t in config.model.tasks if t.type != "multiclass"}
    if config.scoring.rank_by not in rankable:
        raise ConfigError(f"{where}: scoring.rank_by must be p_<task name> of a binary or "
                          f"regression task, one of {sorted(rankable)}")
    check_trainer(config, where, label_names)


def check_trainer(config: Config, where: str, label_names) -> None:
    """Checks the model's architecture, tasks and training settings against each other.

    Args:
        config: The run config.
        where: Prefix of error messages (the config file).
        label_names: 0/1 label columns of the registry; conditions, filters and
            retrieval positives must be one of them.

    Raises:
        ConfigError: an inconsistent setting.
    """
    model, training = config.model, config.training
    names = [t.name for t in model.tasks]
    by_name = {t.name: t for t in model.tasks}
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: model.tasks has duplicate names {names}")
    if model.architecture not in ARCHITECTURES:
        raise ConfigError(f"{where}: model.architecture must be one of {ARCHITECTURES}")
    for task in model.tasks:
        if task.type not in TASK_TYPES:
            raise ConfigError(f"{where}: task {task.name!r}: type must be one of {TASK_TYPES}")
        if task.num_classes < 0 or (task.num_classes == 1 and task.type == "multiclass"):
            raise ConfigError(f"{where}: task {task.name!r}: num_classes must be 0 or >= 2")
        if task.condition is not None and task.condition not in label_names:
            raise ConfigError(f"{where}: task {task.name!r}: condition must be a label column")
    if model.architecture == "esmm":
        esmm = model.esmm
        for role in ("ctr_task", "ctcvr_task"):
            task = by_name.get(getattr(esmm, role))
            if task is None or task.type != "binary" or task.condition is not None:
                raise ConfigError(f"{where}: model.esmm.{role} must name an unconditioned "
                                  f"binary task; tasks are {names}")
        if esmm.ctr_task == esmm.ctcvr_task or esmm.cvr_output in by_name:
            raise ConfigError(f"{where}: model.esmm needs two distinct tasks and a cvr_output "
                              "that is not a task name")
    experts = model.experts
    if min(experts.num_experts, experts.task_experts, experts.levels) < 1 or (
            experts.shared_experts < 0):
        raise ConfigError(f"{where}: model.experts counts must be >= 1 (shared_experts >= 0)")
    retrieval = model.retrieval
    if retrieval.enabled:
        if retrieval.positive_label not in label_names:
            raise ConfigError(f"{where}: model.retrieval.positive_label must be a label column")
        if retrieval.embedding_dim < 1 or retrieval.temperature <= 0 or not retrieval.recall_at:
            raise ConfigError(f"{where}: model.retrieval needs embedding_dim >= 1, "
                              "temperature > 0 and at least one recall_at")
    stopping = training.early_stopping
    if stopping.task is not None:
        task = by_name.get(stopping.task)
        if task is None:
            raise ConfigError(f"{where}: training.early_stopping.task must be one of {names}")
        allowed = {"binary": ("auc", "gauc", "log_loss"), "regression": ("rmse",),
                   "multiclass": ("accuracy", "log_loss")}[task.type]
        if stopping.metric not in allowed:
            raise ConfigError(f"{where}: training.early_stopping.metric for a {task.type} task "
                              f"must be one of {allowed}")
        if stopping.patience < 0:
            raise ConfigError(f"{where}: training.early_stopping.patience must be >= 0")
    if training.train_filter is not None and training.train_filter not in label_names:
        raise ConfigError(f"{where}: training.train_filter must be a label column")
