"""Run configuration: one YAML file, safe-loaded into typed dataclasses.

A config describes a whole run: where the inputs are and what format they are
in, the run folder, the generator's sizes, ingest windows and split, the model,
training and scoring. Relative paths resolve against the run folder so that one
config can be re-pointed with ``--run_dir``, or with ``--date`` at one dated
partition of ``run_root`` (``partition``: ``dt={date}``); input paths may hold
``{date}`` too (``events/dt={date}/*.csv``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from importlib import resources
from typing import Optional, Tuple

import yaml

from shoprec.core import dataset_yaml, generated_shop, model_config
from shoprec.core import registry as F
from shoprec.core.dataset import DatasetConfig
from shoprec.core.layout import Layout, SPLITS
from shoprec.core.model_config import GateConfig, ModelConfig, TrainingConfig
from shoprec.core.recommend_config import RecommendConfig, check_recommend
from shoprec.core.sections import ConfigError, build
from shoprec.core.timestamps import parse_timestamp


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
    # The shop's users and items are drawn for this many (0: num_users /
    # num_items) and the first num_users / num_items of them are generated: a
    # later day with a larger pool share keeps an earlier day's users and items
    # (ids, attributes, photos, tastes) and adds new ones.
    pool_users: int = 0
    pool_items: int = 0
    # Fractions of deliberately bad rows/images, so a demo shows dead letters.
    corrupt_fraction: float = 0.0
    duplicate_fraction: float = 0.0
    missing_image_fraction: float = 0.0
    # Abusive / bot users (0: none, the default shop). Bots click at random,
    # at night, some without an impression, and half of them in bursts; the
    # users table then gains the ground-truth column ``is_bot``.
    bot_fraction: float = 0.0
    # Cold start: this share of the items is launched during the days (at a
    # uniform time; never shown before it) and this share of the users arrives
    # during them (their first session then; more at the shop's rate over the
    # days left). 0: every item and user is there from the first day.
    new_item_fraction: float = 0.0
    new_user_fraction: float = 0.0


@dataclasses.dataclass(frozen=True)
class InputsConfig:
    format: str = "csv"  # csv | jsonl | parquet
    # Folder the input paths below are relative to (`--data DIR`); None: the run folder.
    data_dir: Optional[str] = None
    events: str = "raw/events.csv"
    items: Optional[str] = "raw/items.csv"  # null: the items come from the events
    users: Optional[str] = "raw/users.csv"  # null: no user table
    images_root: str = "raw"  # item image_path values are relative to this
    # Where absolute image paths and URLs may point (e.g. "gs://bucket/photos/");
    # by default nowhere: every photo lies under images_root.
    allowed_image_prefixes: Tuple[str, ...] = ()
    truth: Optional[str] = "raw/truth.csv"  # generator ground truth, if any


@dataclasses.dataclass(frozen=True)
class BehaviourConfig:
    """The packaged encoder's behaviour head: what shoppers do with an item.

    Besides the labelled attributes, the encoder learns from the photo a
    per-item target counted from the events before ``ingest.eval_start``
    (nothing of the eval window), so that a new item's photo lands near items
    shoppers treat alike (``trainer.behaviour``): with impressions in the log,
    the smoothed log-odds of each later funnel stage given an impression,
    ``logit((events + smoothing * prior) / (impressions + smoothing))``;
    without (a purchases-only log), the z-scored ``log1p`` count of each stage.

    Attributes:
        enabled: Train the behaviour head (the embed stage then also reads
            ``inputs.events``).
        weight: Its loss weight next to each attribute head's (weight 1).
        min_events: Items with fewer impressions (events, without
            impressions) in the train window teach nothing (loss weight 0).
        smoothing: Pseudo-impressions at the catalogue-wide rate, ``m``.
    """

    enabled: bool = True
    weight: float = 1.0
    min_events: int = 20
    smoothing: float = 20.0


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
            from the photo (may be empty with ``behaviour`` enabled).
        behaviour: The encoder's behaviour head (:class:`BehaviourConfig`).
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
    behaviour: BehaviourConfig = BehaviourConfig()


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    click_window_s: int = 1800
    conversion_window_s: int = 86400
    eval_start: str = "2026-11-12T00:00:00Z"
    # Optional third split: examples from here on are `test` (None: no test split).
    test_start: Optional[str] = None
    num_shards: int = 4
    # Every ingest and score worker holds the catalogue's rows (a side input);
    # a larger catalogue fails the job with a message naming this limit.
    max_catalogue_items: int = 2_000_000


@dataclasses.dataclass(frozen=True)
class ScoringConfig:
    pairs: Optional[str] = None  # CSV of user_id,item_id; None: eval-window pairs
    rank_by: str = "p_click"
    # Rows per serving signature call: the signature's cost per row, and the
    # job's per batch (ranking, a Parquet row group), fall up to a few
    # thousand rows (docs/recommend.md).
    batch_size: int = 4096


# A date-partitioned run: the date's folder under run_root, e.g. dt=2026-12-01.
DATE_FORMAT = "%Y-%m-%d"
DATE_FIELD = "{date}"


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole run.

    Attributes:
        run_dir: The run folder (for a dated run: the date's partition).
        run_root: Where dated partitions go (None: ``run_dir`` given in the
            file is the root).
        partition: A dated run's folder under ``run_root``; ``{date}`` is the
            run's date.
        date: The run's date (``YYYY-MM-DD``; ``--date``), or None for an
            undated run; ``{date}`` in input paths is replaced by it.
        layout_roots: Stage folders rooted elsewhere while that stage runs
            (``Layout.roots``); set by the stage runner, never in a file.
    """

    run_dir: str = "runs/demo"
    run_root: Optional[str] = None
    partition: str = "dt=" + DATE_FIELD
    date: Optional[str] = None
    generate: GenerateConfig = GenerateConfig()
    inputs: InputsConfig = InputsConfig()
    embed: EmbedConfig = EmbedConfig()
    ingest: IngestConfig = IngestConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    scoring: ScoringConfig = ScoringConfig()
    recommend: RecommendConfig = RecommendConfig()
    gate: GateConfig = GateConfig()
    # Where `shoprec push` publishes blessed models (models/<version>/, CURRENT);
    # relative to the run folder; None: <run_dir>/models, or for a dated run
    # <run_root>/models, outside the partitions, so the published model carries
    # from one day to the next.
    models_dir: Optional[str] = None
    # A run folder's lock from another host (gs://, a shared disk) older than this is
    # stale and taken over: the schedulers stop a run after 6 h (shoprec.io.lock).
    lock_stale_hours: float = 6.0
    # What the input files mean; None: the shop `shoprec generate` writes.
    dataset: Optional[DatasetConfig] = None
    layout_roots: Tuple[Tuple[str, str], ...] = dataclasses.field(
        default=(), metadata={"internal": True})

    @property
    def data(self) -> DatasetConfig:
        """The data set description in force (the generated shop's by default)."""
        if self.dataset is not None:
            return self.dataset
        return generated_shop.dataset(generated_shop.REGISTRY)

    @property
    def registry(self) -> F.Registry:
        """The feature registry every stage of this run uses."""
        return self.data.registry

    def input_path(self, relative: Optional[str]) -> Optional[str]:
        """Resolves an ``inputs`` path against ``inputs.data_dir`` (else the run folder)."""
        if not relative:
            return None
        if os.path.isabs(relative) or "://" in relative:
            return self._dated(relative)
        base = self.inputs.data_dir
        if base is None:
            return self._dated(self.path(relative))
        return self._dated(os.path.join(
            base if (os.path.isabs(base) or "://" in base) else self.path(base), relative))

    def _dated(self, path: str) -> str:
        """``path`` with ``{date}`` replaced by the run's date."""
        if DATE_FIELD not in path:
            return path
        if self.date is None:
            raise ConfigError(f"the input path {path} holds {DATE_FIELD}: pass --date YYYY-MM-DD")
        return path.replace(DATE_FIELD, self.date)

    @property
    def split_starts(self) -> Tuple[int, Optional[int]]:
        """(eval start, test start or None) in unix seconds."""
        test = self.ingest.test_start
        return self.eval_start_ts, (parse_timestamp(test) if test else None)

    def path(self, relative: Optional[str]) -> Optional[str]:
        """Resolves a config path against the run folder (absolute paths pass)."""
        if relative is None:
            return None
        return relative if os.path.isabs(relative) else os.path.join(self.run_dir, relative)

    @property
    def splits(self) -> Tuple[str, ...]:
        """train, eval, and test when ``ingest.test_start`` is set."""
        return SPLITS if self.ingest.test_start else SPLITS[:2]

    @property
    def layout(self) -> Layout:
        models = self.models_dir
        return Layout(self.run_dir,
                      models_dir=models if models is None or "://" in models else self.path(models),
                      roots=self.layout_roots)

    @property
    def eval_start_ts(self) -> int:
        return parse_timestamp(self.ingest.eval_start)


def check(config: Config, where: str) -> None:
    """Checks a loaded config's sections against each other and the registry.

    Raises:
        ConfigError: the first misfit found, naming the key.
    """
    if config.inputs.format not in ("csv", "jsonl", "parquet"):
        raise ConfigError(f"{where}: inputs.format must be csv, jsonl or parquet")
    if not config.lock_stale_hours > 0:
        raise ConfigError(f"{where}: lock_stale_hours must be > 0")
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
        inputs = {f.name for f in config.registry.inputs()}
        bad = [n for n in task.inputs if n not in inputs or n == task.label]
        if bad:
            raise ConfigError(f"{where}: task {task.name!r}: inputs {bad} must be model inputs "
                              "other than the task's label")
        holdout = config.registry.by_name.get(task.holdout or "")
        if holdout is not None and holdout.kind == F.Kind.HOLDOUT:
            key = holdout.derived_from[0]
            # Any input built from the held-out key would let the task
            # memorise its label per key: held-out keys would then not be unseen.
            carries = [n for n in task.inputs if n == key
                       or key in config.registry.by_name[n].derived_from]
            if not task.inputs or carries:
                raise ConfigError(
                    f"{where}: task {task.name!r} holds out {key!r} values, so it needs "
                    f"inputs, none of them {key!r} or derived from it (found {carries})")
    embed = config.embed
    if len(embed.image_shape) != 3 or embed.image_shape[2] != 3 or min(embed.image_shape) < 1:
        raise ConfigError(f"{where}: embed.image_shape must be [height, width, 3]")
    if config.registry.embedding_feature() is not None and embed.encoder is None:
        items = config.data.items
        missing = [a for a in embed.attributes if items.column(a) is None]
        if missing or not (embed.attributes or embed.behaviour.enabled):
            raise ConfigError(f"{where}: embed.attributes must name item columns the encoder "
                              f"learns from the photos (or embed.behaviour be enabled); "
                              f"not item columns: {missing}")
        behaviour = embed.behaviour
        if behaviour.weight < 0 or behaviour.min_events < 1 or not behaviour.smoothing > 0:
            raise ConfigError(f"{where}: embed.behaviour needs weight >= 0, min_events >= 1 "
                              f"and smoothing > 0")
    # A multiclass task's scores are a list of class probabilities: no order.
    rankable = {f"p_{t.name}" for t in config.model.tasks if t.type != "multiclass"}
    if config.scoring.rank_by not in rankable:
        raise ConfigError(f"{where}: scoring.rank_by must be p_<task name> of a binary or "
                          f"regression task, one of {sorted(rankable)}")
    model_config.check(config.model, config.training, label_names, where,
                       {f.name for f in config.registry.holdouts()})
    model_config.check_gate(config.gate, config.model, where)
    check_recommend(config, where, label_names)


def today() -> str:
    """Today's date in UTC, as ``--date`` takes it."""
    return dt.datetime.now(dt.timezone.utc).strftime(DATE_FORMAT)


def dated(config: Config, date: str, run_dir: Optional[str] = None) -> Config:
    """``config`` for the run of ``date``: its partition of the run root.

    Args:
        config: A loaded config.
        date: ``YYYY-MM-DD``.
        run_dir: An explicit run folder, which wins over the partition
            (``{date}`` in input paths still takes ``date``).

    Raises:
        ConfigError: not a date, or ``partition`` does not name ``{date}``.
    """
    try:
        dt.datetime.strptime(date, DATE_FORMAT)
    except ValueError as err:
        raise ConfigError(f"--date {date!r} is not a date YYYY-MM-DD") from err
    if DATE_FIELD not in config.partition:
        raise ConfigError(f"partition {config.partition!r} must hold {DATE_FIELD}")
    root = config.run_root or config.run_dir
    folder = run_dir or os.path.join(root, config.partition.replace(DATE_FIELD, date))
    models = config.models_dir
    if models is None and not run_dir:
        # One models folder for every day's partition: a day's gate compares with,
        # and scores with, the model an earlier day published.
        models = os.path.join(root, "models")
        models = models if "://" in models else os.path.abspath(models)
    return dataclasses.replace(config, run_dir=folder, date=date, models_dir=models)


def load(path: Optional[str] = None, run_dir: Optional[str] = None,
         data_dir: Optional[str] = None, date: Optional[str] = None) -> Config:
    """Loads a config file (default: the packaged demo config).

    Args:
        path: YAML file; None loads ``shoprec/configs/demo.yaml``.
        run_dir: Overrides the file's ``run_dir`` (and, with ``date``, the
            date's partition).
        data_dir: Overrides ``inputs.data_dir`` (where a data set's files are).
        date: The run's date ``YYYY-MM-DD``: the run folder is its partition
            of ``run_root`` (see :func:`dated`); None: an undated run.

    Raises:
        ConfigError: the file is not UTF-8 YAML, names an unknown key, gives
            a value of the wrong type or does not fit together (:func:`check`).
        OSError: the file cannot be read.
    """
    if path is None:
        text = resources.files("shoprec").joinpath("configs/demo.yaml").read_text()
        where = "demo.yaml"
    else:
        with open(path, "rb") as f:
            raw = f.read()
        where = path
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(f"{where}: not UTF-8 text ({err.reason} at byte "
                              f"{err.start}); save it as UTF-8") from err
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        # One line: the problem and where, without PyYAML's quoted snippet.
        mark = getattr(err, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or " ".join(str(err).split())
        raise ConfigError(f"{where}: not valid YAML{at}: {problem}") from err
    config = build(Config, data, where, nested={"dataset": dataset_yaml.from_dict,
                                              "gate": model_config.gate_from_dict})
    if date:
        config = dated(config, date, run_dir)
    elif run_dir:
        config = dataclasses.replace(config, run_dir=run_dir)
    if data_dir:
        config = dataclasses.replace(
            config, inputs=dataclasses.replace(config.inputs, data_dir=data_dir))
    check(config, where)
    return config
