"""The model, training and model-gate sections of a run config, and their checks.

The trainer reads only these; an exported model carries its ``ModelConfig``
(see :func:`model_config_from_dict`), so scoring and evaluation rebuild the
model exactly as it was trained.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Collection, Dict, Optional, Tuple

from shoprec.core.sections import ConfigError, build

TASK_TYPES = ("binary", "regression", "multiclass")
# A task's baseline (trainer.baselines): ingest's anomaly rule, scored on the same examples.
BASELINES = ("anomaly_rule",)
LOSS_WEIGHTINGS = ("fixed", "uncertainty", "dwa")
ARCHITECTURES = ("shared_bottom", "mmoe", "ple", "esmm", "soft_sharing")


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """One training objective.

    Attributes:
        name: Output key (``p_<name>`` in the serving signature).
        label: Transformed column holding the target.
        weight: Weight of this task's loss in the joint loss.
        type: binary (log loss), regression (squared error) or multiclass
            (softmax cross-entropy over ``num_classes``).
        num_classes: multiclass only; 0 takes the label's vocabulary size.
        condition: A 0/1 label column; the task is defined only where it is 1
            (e.g. CVR given click): other examples get zero loss weight and are
            left out of the task's evaluation.
        inputs: When set, the only input features this task reads, through a
            bottom of its own (``bottom_units``) beside the shared
            architecture: an item attribute predicted from the other item
            features must not see the attribute itself (it is also an input).
            Empty: the task is a branch of the architecture.
        threshold: binary: also report precision and recall of predictions
            at or above it.
        baseline: ``anomaly_rule``: also report ingest's rule score (the
            user's busiest window / max_events) on the same eval examples.
        holdout: A HOLDOUT feature of the registry (a hashed share of the
            item or user keys): examples of held-out keys get zero loss
            weight for this task, and its evaluation (and baseline) is over
            held-out keys only, so an attribute or a user flag the model could
            memorise per key is judged on keys it never saw labelled.
    """

    name: str
    label: str
    weight: float = 1.0
    type: str = "binary"
    num_classes: int = 0
    condition: Optional[str] = None
    inputs: Tuple[str, ...] = ()
    threshold: Optional[float] = None
    baseline: Optional[str] = None
    holdout: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class ExpertsConfig:
    """Experts of MMoE and PLE (ignored by the other architectures)."""

    num_experts: int = 4  # mmoe: experts shared by every task
    units: Tuple[int, ...] = (64,)  # each expert's MLP
    shared_experts: int = 2  # ple: shared experts per level
    task_experts: int = 1  # ple: experts of each task's own per level
    levels: int = 2  # ple: extraction levels


@dataclasses.dataclass(frozen=True)
class EsmmConfig:
    """ESMM: pCTCVR = pCTR x pCVR; losses on the CTR and CTCVR tasks over all impressions."""

    ctr_task: str = "click"
    ctcvr_task: str = "conversion"
    cvr_output: str = "cvr"  # extra output (p_cvr) of the CVR sub-network


@dataclasses.dataclass(frozen=True)
class RetrievalConfig:
    """Two-tower retrieval task trained jointly with the ranking tasks."""

    enabled: bool = False
    weight: float = 1.0
    embedding_dim: int = 32
    tower_units: Tuple[int, ...] = (64,)
    # Cosine similarity / temperature: unit-norm embeddings need a sharp softmax.
    temperature: float = 0.1
    positive_label: str = "click"  # impressions with this label 1 are positive pairs
    # Subtract log(impression share) of each in-batch candidate (Yi et al., RecSys 2019).
    sampling_bias_correction: bool = True
    recall_at: Tuple[int, ...] = (10, 50)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    bottom_units: Tuple[int, ...] = (128, 64)
    tower_units: Tuple[int, ...] = (32,)
    # L2 on embedding rows and dropout after each bottom layer: id embeddings see
    # few examples per user and overfit without them.
    embedding_l2: float = 0.003
    dropout: float = 0.0
    # Cold start (DropoutNet, Volkovs et al. 2017): in training, this share of
    # the examples reads each ID feature (user, item) as an out-of-vocabulary
    # bucket, so the model learns to score a new user or item from its other
    # features; with 0 the OOV rows are never trained and a cold id reads noise.
    id_dropout: float = 0.0
    # L2 on the kernels of every dense layer after the inputs (bottoms, experts,
    # towers, wide terms): weight decay for ranking data with few positives.
    dense_l2: float = 0.0
    # Wide & Deep (Cheng et al. 2016): each task's output adds a linear term of
    # its numeric and flag inputs, so a signal that ranks on its own (a repurchase
    # count, a recent popularity) reaches the output without the deep part.
    wide: bool = False
    tasks: Tuple[TaskConfig, ...] = (
        TaskConfig("click", "click"),
        TaskConfig("conversion", "conversion"),
    )
    architecture: str = "shared_bottom"  # shared_bottom | mmoe | ple | esmm | soft_sharing
    # soft_sharing: lambda of the penalty lambda * sum_{i<j} ||theta_i - theta_j||^2
    # between the task bottoms' corresponding kernels and biases.
    soft_sharing_lambda: float = 0.01
    # How task losses combine (trainer.weighting): fixed (the tasks' weights),
    # uncertainty (learned log-variances) or dwa (dynamic weight average).
    loss_weighting: str = "fixed"
    dwa_temperature: float = 2.0  # dwa's T: larger T, weights closer to equal
    experts: ExpertsConfig = ExpertsConfig()
    esmm: EsmmConfig = EsmmConfig()
    retrieval: RetrievalConfig = RetrievalConfig()


@dataclasses.dataclass(frozen=True)
class EarlyStoppingConfig:
    """Stop when a task's eval metric has not improved for ``patience`` epochs.

    Off while ``task`` is None. The metric is computed exactly on the eval
    split after each epoch; the best epoch's weights are restored.
    """

    task: Optional[str] = None
    metric: str = "auc"  # auc | gauc | log_loss | rmse | accuracy
    patience: int = 2
    min_delta: float = 0.0


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    strategy: str = "auto"  # auto | default | mirrored | multi_worker
    per_replica_batch_size: int = 256
    epochs: int = 10
    learning_rate: float = 0.003
    seed: int = 42
    steps_per_epoch: Optional[int] = None  # None: one pass over the train files
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    # Back up the model every epoch and resume from it after a failure.
    backup_and_restore: bool = True
    # Train only on examples whose 0/1 label column is 1 (e.g. click, for a
    # naive CVR baseline); evaluation is not filtered.
    train_filter: Optional[str] = None
    # none: train from a fresh initialisation; latest_blessed: start from the
    # model ``models_dir/CURRENT`` names (embedding rows carried over by token).
    warm_start: str = "none"


WARM_START = ("none", "latest_blessed")


@dataclasses.dataclass(frozen=True)
class TaskGate:
    """One binary task's thresholds in the model gate (see :class:`GateConfig`)."""

    min_auc: Optional[float] = None
    max_auc_drop: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class GateConfig:
    """The model gate ``shoprec push`` applies before it publishes a trained model.

    Every binary task is judged by its eval AUC: blessed when it is at least
    ``min_auc`` and (once a model has been published) at most ``max_auc_drop``
    below the published model's AUC on the same eval examples.

    Attributes:
        min_auc: Absolute minimum eval AUC of every binary task.
        max_auc_drop: Largest allowed AUC drop below the published model.
        tasks: Per-task overrides, ``{task name: {min_auc, max_auc_drop}}``.
    """

    min_auc: float = 0.5
    max_auc_drop: float = 0.01
    tasks: Tuple[Tuple[str, TaskGate], ...] = ()

    def thresholds(self, task: str) -> Tuple[float, float]:
        """(min_auc, max_auc_drop) of ``task``: its override, else the defaults."""
        own = dict(self.tasks).get(task, TaskGate())
        return (self.min_auc if own.min_auc is None else own.min_auc,
                self.max_auc_drop if own.max_auc_drop is None else own.max_auc_drop)


def gate_from_dict(data: Any, where: str) -> GateConfig:
    """Builds the ``gate`` section; ``tasks`` maps task names to :class:`TaskGate` mappings.

    Raises:
        ConfigError: unknown keys or malformed values.
    """
    def tasks(value, here):
        if not isinstance(value, dict):
            raise ConfigError(f"{here}: expected a mapping of task name to thresholds")
        return tuple((str(name), build(TaskGate, v, f"{here}.{name}"))
                     for name, v in value.items())

    return build(GateConfig, data, where, nested={"tasks": tasks})


def check(model: ModelConfig, training: TrainingConfig, label_names: Collection[str],
          where: str, holdout_names: Collection[str] = ()) -> None:
    """Checks the model's architecture, tasks and training settings against each other.

    Args:
        model: The model section.
        training: The training section.
        label_names: 0/1 label columns of the registry; conditions, filters and
            retrieval positives must be one of them.
        where: Prefix of error messages (the config file).
        holdout_names: HOLDOUT features of the registry; a task's ``holdout``
            must be one of them.

    Raises:
        ConfigError: an inconsistent setting.
    """
    names = [t.name for t in model.tasks]
    by_name = {t.name: t for t in model.tasks}
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: model.tasks has duplicate names {names}")
    if model.architecture not in ARCHITECTURES:
        raise ConfigError(f"{where}: model.architecture must be one of {ARCHITECTURES}")
    if model.dense_l2 < 0 or model.embedding_l2 < 0:
        raise ConfigError(f"{where}: model.dense_l2 and embedding_l2 must be >= 0")
    if not 0.0 <= model.id_dropout < 1.0:
        raise ConfigError(f"{where}: model.id_dropout must be in [0, 1)")
    for task in model.tasks:
        if task.type not in TASK_TYPES:
            raise ConfigError(f"{where}: task {task.name!r}: type must be one of {TASK_TYPES}")
        if task.num_classes < 0 or (task.num_classes == 1 and task.type == "multiclass"):
            raise ConfigError(f"{where}: task {task.name!r}: num_classes must be 0 or >= 2")
        if task.condition is not None and task.condition not in label_names:
            raise ConfigError(f"{where}: task {task.name!r}: condition must be a label column")
        if task.baseline is not None and (task.baseline not in BASELINES
                                          or task.type != "binary"):
            raise ConfigError(f"{where}: task {task.name!r}: baseline must be one of "
                              f"{BASELINES}, on a binary task")
        if task.threshold is not None and (task.type != "binary"
                                           or not 0.0 <= task.threshold <= 1.0):
            raise ConfigError(f"{where}: task {task.name!r}: threshold is for a binary task, "
                              "in [0, 1]")
        if task.holdout is not None and task.holdout not in holdout_names:
            raise ConfigError(f"{where}: task {task.name!r}: holdout must name a hold-out "
                              f"feature, one of {sorted(holdout_names)}")
        if task.inputs and model.architecture == "esmm":
            raise ConfigError(f"{where}: task {task.name!r}: inputs is not for esmm")
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
    lam = model.soft_sharing_lambda
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or lam < 0:
        raise ConfigError(f"{where}: model.soft_sharing_lambda must be >= 0")
    if model.loss_weighting not in LOSS_WEIGHTINGS:
        raise ConfigError(f"{where}: model.loss_weighting must be one of {LOSS_WEIGHTINGS}")
    temperature = model.dwa_temperature
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or (
            temperature <= 0):
        raise ConfigError(f"{where}: model.dwa_temperature must be > 0")
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
    if training.warm_start not in WARM_START:
        raise ConfigError(f"{where}: training.warm_start must be one of {WARM_START}")


def check_gate(gate: GateConfig, model: ModelConfig, where: str) -> None:
    """Checks the gate's thresholds and that its overrides name binary tasks.

    Raises:
        ConfigError: an unknown or non-binary task, or a threshold out of range.
    """
    binary = sorted(t.name for t in model.tasks if t.type == "binary")
    unknown = sorted(name for name, _ in gate.tasks if name not in binary)
    if unknown:
        raise ConfigError(f"{where}: gate.tasks {unknown}: the gate judges binary tasks "
                          f"only, {binary}")
    for name in [None] + [n for n, _ in gate.tasks]:
        min_auc, drop = (gate.min_auc, gate.max_auc_drop) if name is None else (
            gate.thresholds(name))
        if not (0.0 <= float(min_auc) <= 1.0 and 0.0 <= float(drop) <= 1.0):
            raise ConfigError(f"{where}: gate{'.tasks.' + name if name else ''}: min_auc and "
                              "max_auc_drop must lie in [0, 1]")


def model_config_from_dict(data: Dict[str, Any]) -> ModelConfig:
    """Rebuilds a ModelConfig from ``dataclasses.asdict`` output or its JSON form.

    Raises:
        ConfigError: unknown keys or malformed values.
    """
    def plain(value):
        # asdict keeps tuples; the YAML loader's rules expect lists.
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return build(ModelConfig, plain(data), "model")
