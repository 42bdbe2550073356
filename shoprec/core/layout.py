"""The run folder: every path any stage reads or writes, in one place.

Every stage owns one folder of the run (``embed/``, ``ingest/``,
``featurize/``, ``train/``, ``score/``) and deletes it before writing. Sharded
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
from typing import Dict, Sequence

SPLITS = ("train", "eval", "test")
TFRECORD_SUFFIX = ".tfrecord.gz"
PARQUET_SUFFIX = ".parquet"
CSV_SUFFIX = ".csv"
JSONL_SUFFIX = ".jsonl"
REPORT_FILE = "report.json"
# Written last by a stage that finished: a small JSON with the stage and time.
SUCCESS_FILE = "_SUCCESS"
SCHEMA_FILE = "schema.pbtxt"
# Inside an image encoder's SavedModel: its image shape, classes and training report.
ENCODER_METADATA = os.path.join("assets.extra", "encoder.json")


def success_marker(stage_dir: str) -> str:
    """The success marker of the stage that owns ``stage_dir``."""
    return os.path.join(stage_dir, SUCCESS_FILE)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where each stage writes inside the run folder ``run_dir``."""

    run_dir: str

    def _p(self, *parts: str) -> str:
        return os.path.join(self.run_dir, *parts)

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
