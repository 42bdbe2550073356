"""The run folder: every path any stage reads or writes, in one place.

Every stage owns one folder of the run (``embed/``, ``ingest/``,
``featurize/``, ``train/``, ``push/``, ``score/``). Run from the CLI, a stage
writes that folder in its staging place (``.staging/<stage>/``, see
:attr:`Layout.roots`) and it is published over the stage's folder only once
complete (``shoprec.io.publish``); on a local disk the stage's folder is then
a symbolic link to one of ``.versions/``. Published models live apart from
the stages' folders, in ``models_dir`` (``<run_dir>/models`` by default), and
are never deleted by a run: ``shoprec push`` adds versions and moves the
``CURRENT`` pointer. Sharded
outputs are named by a *prefix* (``.../examples/train``); the writer adds
``-SSSSS-of-NNNNN`` and the suffix, and readers glob with the ``*_pattern``
helpers, so no stage spells another stage's file names.

A stage that finishes writes :data:`SUCCESS_FILE` last in its folder, and a
stage reads an earlier stage's folder only when that marker is there
(``shoprec.io.outputs``): a stage that failed half way, or failed its quality
gate after writing its outputs, leaves nothing a later stage accepts.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Optional, Sequence, Tuple

SPLITS = ("train", "eval", "test")
TFRECORD_SUFFIX = ".tfrecord.gz"
PARQUET_SUFFIX = ".parquet"
CSV_SUFFIX = ".csv"
JSONL_SUFFIX = ".jsonl"
REPORT_FILE = "report.json"
# Written last by a stage that finished: its manifest (JSON; shoprec.io.manifest).
SUCCESS_FILE = "_SUCCESS"
# Hidden (a glob of the run folder skips dot names): staged and published versions.
STAGING_DIR = ".staging"
VERSIONS_DIR = ".versions"
# One run of a partition at a time (shoprec.io.lock).
LOCK_FILE = ".lock"
SCHEMA_FILE = "schema.pbtxt"
# Prefix of the final checkpoint's files in train/checkpoint/ (and a published version's).
CHECKPOINT_PREFIX = "ckpt"
# Inside an image encoder's SavedModel: its image shape, classes and training report.
ENCODER_METADATA = os.path.join("assets.extra", "encoder.json")


def success_marker(stage_dir: str) -> str:
    """The success marker of the stage that owns ``stage_dir``."""
    return os.path.join(stage_dir, SUCCESS_FILE)


# The published models' pointer: a text file holding the current version's name.
CURRENT_FILE = "CURRENT"
# A version being published: copied here, then renamed to its version name.
STAGING_PREFIX = ".staging-"
# What a published version holds, by name inside its folder.
VERSION_MODEL, VERSION_CHECKPOINT, VERSION_TRANSFORM = "model", "checkpoint", "transform"
VERSION_METRICS, VERSION_VERDICT = "metrics.json", "verdict.json"


def staging_dir_of(stage_dir: str) -> str:
    """Where the stage owning ``stage_dir`` (``RUN/ingest``) stages its output."""
    stage_dir = stage_dir.rstrip("/")
    return os.path.join(os.path.dirname(stage_dir), STAGING_DIR, os.path.basename(stage_dir))


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where each stage writes inside the run folder ``run_dir``.

    Attributes:
        run_dir: The run folder (one partition of a dated run).
        models_dir: Where ``shoprec push`` publishes blessed models, one
            folder per version and the ``CURRENT`` pointer; None puts it in
            the run folder (``<run_dir>/models``). Scheduled runs point it
            outside the dated partitions, so a day's run finds the model an
            earlier day published.
        roots: (stage folder, path) pairs that root a stage's folder
            elsewhere: a stage run for publishing writes its own folder in
            its staging place while every other path, its inputs among
            them, stays the published one.
    """

    run_dir: str
    models_dir: Optional[str] = None
    roots: Tuple[Tuple[str, str], ...] = ()

    def _p(self, *parts: str) -> str:
        for name, root in self.roots:
            if parts and parts[0] == name:
                return os.path.join(root, *parts[1:])
        return os.path.join(self.run_dir, *parts)

    def stage_dir(self, name: str) -> str:
        """The folder the stage ``name`` owns (``ingest`` → ``RUN/ingest``)."""
        return self._p(name)

    def staged(self, name: str) -> "Layout":
        """This layout with stage ``name``'s folder rooted at its staging place."""
        return dataclasses.replace(self, roots=((name, self.staging_dir(name)),))

    def staging_dir(self, name: str) -> str:
        """Where the stage ``name`` writes before its output is published."""
        return staging_dir_of(os.path.join(self.run_dir, name))

    @property
    def versions_dir(self) -> str:
        """Published versions of the stages' folders (local disks)."""
        return os.path.join(self.run_dir, VERSIONS_DIR)

    @property
    def lock_file(self) -> str:
        """Held by the one process running stages in this run folder."""
        return os.path.join(self.run_dir, LOCK_FILE)

    @property
    def validate_dir(self) -> str:
        """``shoprec validate``'s report and dead letters (laid out as ingest's)."""
        return self._p("validate")

    # embed/: the image encoder and one photo embedding per item.
    @property
    def embed_dir(self) -> str:
        return self._p("embed")

    @property
    def embed_report(self) -> str:
        return self._p("embed", REPORT_FILE)

    @property
    def encoder_dir(self) -> str:
        """The image encoder SavedModel ``shoprec embed`` trained (absent with embed.encoder)."""
        return self._p("embed", "encoder")

    @property
    def behaviour_dir(self) -> str:
        """The encoder's behaviour counts per item and funnel stage, before the eval start."""
        return self._p("embed", "behaviour")

    @property
    def behaviour_counts(self) -> str:
        """Prefix of the behaviour count table (``item_counts.csv``)."""
        return self._p("embed", "behaviour", "item_counts")

    @property
    def behaviour_dead_letter(self) -> str:
        """Prefix of the count job's event dead letters (``dead_letter.jsonl``)."""
        return self._p("embed", "behaviour", "dead_letter")

    @property
    def embed_items_dir(self) -> str:
        """The embed job's folder: embedding shards, its dead letters and job report."""
        return self._p("embed", "items")

    @property
    def item_embeddings(self) -> str:
        """Prefix of the item embedding shards (TFRecord and Parquet)."""
        return self._p("embed", "items", "embeddings")

    @property
    def item_embeddings_pattern(self) -> str:
        return self.item_embeddings + "-*" + TFRECORD_SUFFIX

    # ingest/: raw examples per split and the side tables scoring reads.
    @property
    def ingest_dir(self) -> str:
        return self._p("ingest")

    def examples(self, split: str) -> str:
        """Prefix of a split's raw example shards."""
        return self._p("ingest", "examples", split)

    def examples_pattern(self, split: str) -> str:
        return f"{self.examples(split)}-*-of-*{TFRECORD_SUFFIX}"

    @property
    def items_table(self) -> str:
        return self._p("ingest", "items", "items")

    @property
    def users_table(self) -> str:
        return self._p("ingest", "users", "users")

    @property
    def history_table(self) -> str:
        """Prefix of each user's history after their last event (for scoring)."""
        return self._p("ingest", "history", "history")

    @property
    def history_at_eval_table(self) -> str:
        """Prefix of each user's history strictly before the eval split (``recommend``)."""
        return self._p("ingest", "history_at_eval", "history")

    @property
    def anomaly_table(self) -> str:
        """Prefix of the per-user anomaly CSV."""
        return self._p("ingest", "anomaly", "users")

    @property
    def eval_pairs(self) -> str:
        return self._p("ingest", "eval_pairs", "pairs")

    @property
    def events_log(self) -> str:
        """Prefix of the clean event log (Parquet): what the candidate sources read."""
        return self._p("ingest", "events", "events")

    @property
    def events_log_pattern(self) -> str:
        return self.events_log + "-*" + PARQUET_SUFFIX

    @property
    def dead_letter(self) -> str:
        return self._p("ingest", "dead_letter", "dead_letter")

    @property
    def ingest_report(self) -> str:
        return self._p("ingest", REPORT_FILE)

    @property
    def ingest_report_text(self) -> str:
        return self._p("ingest", "report.txt")

    def ingest_outputs(self, splits: Sequence[str]) -> Dict[str, str]:
        """File or glob of every ingest output, as the report lists them."""
        out = {split: self.examples_pattern(split) for split in splits}
        out.update(items=self.items_table + TFRECORD_SUFFIX,
                   users=self.users_table + TFRECORD_SUFFIX,
                   history=self.history_table + TFRECORD_SUFFIX,
                   history_at_eval=self.history_at_eval_table + TFRECORD_SUFFIX,
                   anomaly=self.anomaly_table + CSV_SUFFIX,
                   eval_pairs=self.eval_pairs + CSV_SUFFIX,
                   events=self.events_log_pattern,
                   dead_letter=self.dead_letter + JSONL_SUFFIX,
                   report=self.ingest_report,
                   report_text=self.ingest_report_text)
        return out

    # featurize/: the transform graph and transformed shards.
    @property
    def featurize_dir(self) -> str:
        return self._p("featurize")

    @property
    def featurize_report(self) -> str:
        return self._p("featurize", REPORT_FILE)

    @property
    def transform_dir(self) -> str:
        """TFT output: transform_fn/ and transformed_metadata/."""
        return self._p("featurize", "transform")

    def transformed(self, split: str) -> str:
        """Prefix of a split's transformed shards."""
        return self._p("featurize", "examples", split)

    def transformed_pattern(self, split: str) -> str:
        return self.transformed(split) + "-*" + TFRECORD_SUFFIX

    @property
    def transformed_schema(self) -> str:
        """The transformed schema, beside the shards it describes."""
        return self._p("featurize", "examples", SCHEMA_FILE)

    # train/: the exported model, its metrics and training state.
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
    def diagnostics_file(self) -> str:
        """Per binary task and split: ROC / PR points, reliability bins, score
        histograms, sliced AUCs and a popularity baseline (``trainer.diagnostics``)."""
        return self._p("train", "diagnostics.json")

    @property
    def backup_dir(self) -> str:
        """BackupAndRestore's state; exists only while a training job is unfinished."""
        return self._p("train", "backup")

    @property
    def checkpoint_dir(self) -> str:
        """Final checkpoint of the trained model and optimizer (chief only)."""
        return self._p("train", "checkpoint")

    @property
    def logs_dir(self) -> str:
        """TensorBoard logs."""
        return self._p("train", "logs")

    # push/: the model gate's verdict on the trained model.
    @property
    def push_dir(self) -> str:
        return self._p("push")

    @property
    def push_report(self) -> str:
        """The verdict: both models' eval metrics, thresholds, blessed or not, the version."""
        return self._p("push", REPORT_FILE)

    # models/: every blessed model, by version, and the pointer to the current one.
    @property
    def models_root(self) -> str:
        return self.models_dir or self._p("models")

    @property
    def current_pointer(self) -> str:
        """Names the version scoring, recommending and warm starts use; written last."""
        return os.path.join(self.models_root, CURRENT_FILE)

    def version_dir(self, version: str) -> str:
        return os.path.join(self.models_root, version)

    def version_staging_dir(self, version: str) -> str:
        """Where a version is assembled before it is renamed into place."""
        return os.path.join(self.models_root, STAGING_PREFIX + version)

    def published_model(self, version: str) -> str:
        """A published version's serving SavedModel (a copy of ``train/model``)."""
        return os.path.join(self.version_dir(version), VERSION_MODEL)

    def published_checkpoint(self, version: str) -> str:
        """Its final checkpoint prefix (a copy of ``train/checkpoint``); warm starts read it."""
        return os.path.join(self.version_dir(version), VERSION_CHECKPOINT, CHECKPOINT_PREFIX)

    def published_transform(self, version: str) -> str:
        """The TFT output it was trained on: its vocabularies, for warm starts and class names."""
        return os.path.join(self.version_dir(version), VERSION_TRANSFORM)

    def published_metrics(self, version: str) -> str:
        return os.path.join(self.version_dir(version), VERSION_METRICS)

    def published_verdict(self, version: str) -> str:
        return os.path.join(self.version_dir(version), VERSION_VERDICT)

    # score/: ranked scores.
    @property
    def score_dir(self) -> str:
        return self._p("score")

    @property
    def scores(self) -> str:
        """Prefix of the scores Parquet files."""
        return self._p("score", "scores")

    @property
    def score_dead_letter(self) -> str:
        """Prefix of the scoring job's dead letters."""
        return self._p("score", "dead_letter")

    @property
    def score_report(self) -> str:
        return self._p("score", REPORT_FILE)

    # recommend/: the top K of the catalogue per user and their evaluation.
    @property
    def recommend_dir(self) -> str:
        return self._p("recommend")

    @property
    def recommendations(self) -> str:
        """Prefix of the recommendations Parquet files."""
        return self._p("recommend", "recommendations")

    @property
    def candidates_table(self) -> str:
        """Prefix of every user's candidates with the sources that proposed them."""
        return self._p("recommend", "candidates")

    @property
    def related_items(self) -> str:
        """Prefix of each catalogue item's related items."""
        return self._p("recommend", "related")

    @property
    def neighbours_table(self) -> str:
        """Prefix of the co-occurrence neighbours at the recommend cut-off."""
        return self._p("recommend", "neighbours")

    @property
    def recommend_report(self) -> str:
        return self._p("recommend", REPORT_FILE)

    @property
    def recommend_metrics(self) -> str:
        """Ranking metrics of the model and the baselines."""
        return self._p("recommend", "metrics.json")

    # report/: one self-contained HTML page of the run.
    @property
    def report_dir(self) -> str:
        return self._p("report")

    @property
    def report_page(self) -> str:
        return self._p("report", "index.html")
