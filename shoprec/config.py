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
    format: str = "csv"  # csv | parquet
    events: str = "raw/events.csv"
    items: str = "raw/items.csv"
    users: str = "raw/users.csv"
    images_root: str = "raw"  # item image_path values are relative to this
    truth: Optional[str] = "raw/truth.csv"  # generator ground truth, if any


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    click_window_s: int = 1800
    conversion_window_s: int = 86400
    eval_start: str = "2026-11-12T00:00:00Z"
    num_shards: int = 4


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    name: str
    label: str
    weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    bottom_units: Tuple[int, ...] = (128, 64)
    tower_units: Tuple[int, ...] = (32,)
    image_filters: Tuple[int, ...] = (16, 32)
    image_embedding_dim: int = 16
    # L2 on embedding rows and dropout after each bottom layer: id embeddings see
    # few examples per user and overfit without them.
    embedding_l2: float = 0.003
    dropout: float = 0.0
    tasks: Tuple[TaskConfig, ...] = (
        TaskConfig("click", "click"),
        TaskConfig("conversion", "conversion"),
    )


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    strategy: str = "auto"  # auto | default | mirrored | multi_worker
    per_replica_batch_size: int = 256
    epochs: int = 10
    learning_rate: float = 0.003
    seed: int = 42
    steps_per_epoch: Optional[int] = None  # None: one pass over the train files


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
    ingest: IngestConfig = IngestConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    scoring: ScoringConfig = ScoringConfig()

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
        if name == "tasks":
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


def load(path: Optional[str] = None, run_dir: Optional[str] = None) -> Config:
    """Loads a config file (default: the packaged demo config).

    Args:
        path: YAML file; None loads ``shoprec/configs/demo.yaml``.
        run_dir: Overrides the file's ``run_dir`` (e.g. a dated partition).
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
    _check(config, where)
    return config


def _check(config: Config, where: str) -> None:
    if config.inputs.format not in ("csv", "parquet"):
        raise ConfigError(f"{where}: inputs.format must be csv or parquet")
    if config.training.strategy not in ("auto", "default", "mirrored", "multi_worker"):
        raise ConfigError(f"{where}: training.strategy must be auto|default|mirrored|multi_worker")
    try:
        parse_timestamp(config.ingest.eval_start)
    except ValueError as err:
        raise ConfigError(f"{where}: ingest.eval_start: {err}") from err
    from transforms import features

    label_names = {f.name for f in features.labels()}
    for task in config.model.tasks:
        if task.label not in label_names:
            raise ConfigError(
                f"{where}: task {task.name!r} names label {task.label!r}; "
                f"registry labels are {sorted(label_names)}")
    if config.scoring.rank_by not in {f"p_{t.name}" for t in config.model.tasks}:
        raise ConfigError(f"{where}: scoring.rank_by must be p_<task name>")


def to_dict(config: Config) -> Dict[str, Any]:
    """Plain-data view, for writing beside a run's outputs."""
    return dataclasses.asdict(config)


def task_names(config: Config) -> List[str]:
    return [t.name for t in config.model.tasks]
