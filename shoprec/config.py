"""Run configuration: one YAML file, safe-loaded into typed dataclasses.

A config describes a whole run: where the inputs are and what format they are
in, the run folder, the generator's sizes, ingest windows and split, the model,
training and scoring. Relative paths resolve against the run folder so that one
config can be re-pointed with ``--run_dir`` (e.g. a dated partition).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from importlib import resources
from typing import Any, Dict, List, Optional, Tuple

import yaml

from shoprec import dataset as dataset_lib


class ConfigError(ValueError):
    """A config file is malformed or names an unknown key."""


@dataclasses.dataclass(frozen=True)
class GenerateConfig:
    seed: int = 7
    num_users: int = 1500
    num_items: int = 300
    days: int = 14
    start_date: str = "2026-11-01"
    sessions_per_user: float = 5.0
    impressions_per_session: int = 8
    image_size: int = 48
    # Fractions of deliberately bad rows/images, so a demo shows dead letters.
    corrupt_fraction: float = 0.0
    duplicate_fraction: float = 0.0
    missing_image_fraction: float = 0.0


@dataclasses.dataclass(frozen=True)
class InputsConfig:
    format: str = "csv"  # csv | jsonl | parquet
    # Folder the input paths below are relative to (`--data DIR`); None: the run folder.
    data_dir: Optional[str] = None
    events: str = "raw/events.csv"
    items: str = "raw/items.csv"
    users: str = "raw/users.csv"
    images_root: str = "raw"  # item image_path values are relative to this
    truth: Optional[str] = "raw/truth.csv"  # generator ground truth, if any


@dataclasses.dataclass(frozen=True)
class EmbedConfig:
    """The item photo embedder that ``shoprec embed`` runs over the catalogue.

    Its output width is the registry's EMBEDDING feature's ``width``, so the
    two cannot disagree silently.

    Attributes:
        encoder: A SavedModel image embedder to use as it is (a signature
            mapping float32 images ``[N, H, W, 3]`` in [0, 1] to ``[N, D]``);
            None trains the packaged encoder (``trainer.image_encoder``) on
            the catalogue's photos and ``attributes``.
        attributes: Item-file columns the packaged encoder learns to predict
            from the photo.
        image_shape: (height, width, 3) photos are resized to for the encoder.
        min_class_count: Attribute classes with fewer items merge into one.
        epochs: Training passes over the catalogue (at least; see ``min_steps``).
        min_steps: Training steps at least, for small catalogues.
        seed: Seeds the held-out item split and the encoder's training.
        signature: Signature of ``encoder`` to call.
        input_key: Its image input.
        output_key: Its embedding output.
        batch_size: Images per RunInference call.
    """

    encoder: Optional[str] = None
    attributes: Tuple[str, ...] = ("category", "colour")
    image_shape: Tuple[int, ...] = (32, 32, 3)
    min_class_count: int = 1
    epochs: int = 12
    min_steps: int = 600
    seed: int = 0
    signature: str = "embed"
    input_key: str = "images"
    output_key: str = "embedding"
    batch_size: int = 256


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    click_window_s: int = 1800
    conversion_window_s: int = 86400
    eval_start: str = "2026-11-12T00:00:00Z"
    # Optional third split: examples from here on are `test` (None: no test split).
    test_start: Optional[str] = None
    num_shards: int = 4


TASK_TYPES = ("binary", "regression", "multiclass")
ARCHITECTURES = ("shared_bottom", "mmoe", "ple", "esmm")


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
    """

    name: str
    label: str
    weight: float = 1.0
    type: str = "binary"
    num_classes: int = 0
    condition: Optional[str] = None


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
    tasks: Tuple[TaskConfig, ...] = (
        TaskConfig("click", "click"),
        TaskConfig("conversion", "conversion"),
    )
    architecture: str = "shared_bottom"  # shared_bottom | mmoe | ple | esmm
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


@dataclasses.dataclass(frozen=True)
class ScoringConfig:
    pairs: Optional[str] = None  # CSV of user_id,item_id; None: eval-window pairs
    rank_by: str = "p_click"
    batch_size: int = 1024


@dataclasses.dataclass(frozen=True)
class Config:
    run_dir: str = "runs/demo"
    generate: GenerateConfig = GenerateConfig()
    inputs: InputsConfig = InputsConfig()
    embed: EmbedConfig = EmbedConfig()
    ingest: IngestConfig = IngestConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    scoring: ScoringConfig = ScoringConfig()
    # What the input files mean; None: the shop `shoprec generate` writes.
    dataset: Optional[dataset_lib.DatasetConfig] = None

    @property
    def data(self) -> dataset_lib.DatasetConfig:
        """The data set description in force (the generated shop's by default)."""
        return self.dataset if self.dataset is not None else dataset_lib.generated()

    @property
    def registry(self):
        """The feature registry every stage of this run uses."""
        return self.data.registry

    def input_path(self, relative: Optional[str]) -> Optional[str]:
        """Resolves an ``inputs`` path against ``inputs.data_dir`` (else the run folder)."""
        if not relative:
            return None
        if os.path.isabs(relative) or "://" in relative:
            return relative
        base = self.inputs.data_dir
        if base is None:
            return self.path(relative)
        return os.path.join(base if (os.path.isabs(base) or "://" in base) else self.path(base),
                            relative)

    @property
    def split_starts(self) -> Tuple[int, Optional[int]]:
        """(eval start, test start or None) in unix seconds."""
        test = self.ingest.test_start
        return self.eval_start_ts, (parse_timestamp(test) if test else None)

    def path(self, relative: str) -> str:
        """Resolves a config path against the run folder (absolute paths pass)."""
        if relative is None:
            return None
        return relative if os.path.isabs(relative) else os.path.join(self.run_dir, relative)

    @property
    def layout(self) -> "Layout":
        return Layout(self.run_dir)

    @property
    def eval_start_ts(self) -> int:
        return parse_timestamp(self.ingest.eval_start)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where each stage writes inside the run folder; every stage owns one folder."""

    run_dir: str

    def _p(self, *parts: str) -> str:
        return os.path.join(self.run_dir, *parts)

    @property
    def embed_dir(self) -> str:
        return self._p("embed")

    @property
    def encoder_dir(self) -> str:
        """The image encoder SavedModel ``shoprec embed`` trained (absent with embed.encoder)."""
        return self._p("embed", "encoder")

    @property
    def item_embeddings(self) -> str:
        """Prefix of the item embedding shards (``-*.tfrecord.gz``) ingest joins in."""
        return self._p("embed", "items", "embeddings")

    @property
    def ingest_dir(self) -> str:
        return self._p("ingest")

    def examples(self, split: str) -> str:
        """Prefix of raw example shards for a split ('train' / 'eval')."""
        return self._p("ingest", "examples", split)

    @property
    def items_table(self) -> str:
        return self._p("ingest", "items", "items")

    @property
    def users_table(self) -> str:
        return self._p("ingest", "users", "users")

    @property
    def eval_pairs(self) -> str:
        return self._p("ingest", "eval_pairs", "pairs")

    @property
    def dead_letter(self) -> str:
        return self._p("ingest", "dead_letter", "dead_letter")

    @property
    def ingest_report(self) -> str:
        return self._p("ingest", "report.json")

    @property
    def featurize_dir(self) -> str:
        return self._p("featurize")

    @property
    def transform_dir(self) -> str:
        """TFT output: transform_fn/ and transformed_metadata/."""
        return self._p("featurize", "transform")

    def transformed(self, split: str) -> str:
        return self._p("featurize", "examples", split)

    @property
    def train_dir(self) -> str:
        return self._p("train")

    @property
    def model_dir(self) -> str:
        return self._p("train", "model")

    @property
    def metrics_file(self) -> str:
        return self._p("train", "metrics.json")

    @property
    def backup_dir(self) -> str:
        """BackupAndRestore's state; exists only while a training job is unfinished."""
        return self._p("train", "backup")

    @property
    def checkpoint_dir(self) -> str:
        """Final checkpoint of the trained model and optimizer (chief only)."""
        return self._p("train", "checkpoint")

    @property
    def score_dir(self) -> str:
        return self._p("score")

    @property
    def scores(self) -> str:
        return self._p("score", "scores")


def parse_timestamp(value: Any) -> int:
    """Parses unix seconds or ISO-8601 (naive means UTC) into unix seconds.

    Raises:
        ValueError: the value is neither.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return int(parsed.timestamp())


def _build(cls, data: Any, where: str):
    """Builds dataclass ``cls`` from a mapping, rejecting unknown keys."""
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    kwargs: Dict[str, Any] = {}
    for name, value in data.items():
        default = getattr(cls(), name) if _has_defaults(cls) else None
        if name == "dataset":
            try:
                value = dataset_lib.from_dict(value, f"{where}.dataset")
            except ValueError as err:
                raise ConfigError(str(err)) from err
        elif name == "tasks":
            if not isinstance(value, list) or not value:
                raise ConfigError(f"{where}.tasks: expected a non-empty list")
            value = tuple(_build(TaskConfig, t, f"{where}.tasks[{i}]") for i, t in enumerate(value))
        elif dataclasses.is_dataclass(default):
            value = _build(type(default), value, f"{where}.{name}")
        elif isinstance(default, tuple):
            if not isinstance(value, list):
                raise ConfigError(f"{where}.{name}: expected a list")
            value = tuple(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from err


def _has_defaults(cls) -> bool:
    return all(
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        for f in dataclasses.fields(cls)
    )


def load(path: Optional[str] = None, run_dir: Optional[str] = None,
         data_dir: Optional[str] = None) -> Config:
    """Loads a config file (default: the packaged demo config).

    Args:
        path: YAML file; None loads ``shoprec/configs/demo.yaml``.
        run_dir: Overrides the file's ``run_dir`` (e.g. a dated partition).
        data_dir: Overrides ``inputs.data_dir`` (where a data set's files are).
    """
    if path is None:
        text = resources.files("shoprec").joinpath("configs/demo.yaml").read_text()
        where = "demo.yaml"
    else:
        with open(path) as f:
            text = f.read()
        where = path
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML: {err}") from err
    config = _build(Config, data, where)
    if run_dir:
        config = dataclasses.replace(config, run_dir=run_dir)
    if data_dir:
        config = dataclasses.replace(
            config, inputs=dataclasses.replace(config.inputs, data_dir=data_dir))
    from shoprec.config_check import check  # Imported here: it imports this module.

    check(config, where)
    return config


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

    return _build(ModelConfig, plain(data), "model")


def to_dict(config: Config) -> Dict[str, Any]:
    """Plain-data view, for writing beside a run's outputs."""
    return dataclasses.asdict(config)


def task_names(config: Config) -> List[str]:
    return [t.name for t in config.model.tasks]
