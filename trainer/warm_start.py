"""Warm start: initialise a new model from the published one (``training.warm_start``).

A daily run with ``training.warm_start: latest_blessed`` starts from the
model ``models/CURRENT`` names (EasyRec's ``fine_tune_checkpoint``) instead
of a fresh initialisation, so it can train one epoch instead of ten.

Today's vocabularies differ from the published model's: new users and items
appear, some disappear, and indices shift. Embedding tables are therefore
carried over by token (:func:`remap_rows`), reading both vocabularies (the
published version's TFT output and today's): a token in both keeps its old
row at its new index, a new token keeps its fresh initialisation, a token no
longer in the vocabulary is dropped, and the OOV bucket rows (after the
vocabulary) are copied bucket for bucket (the hash of a token into a bucket
does not depend on the vocabulary). Tables of hashed, crossed and bucketized
features have a fixed size and are copied as they are.

Every other weight is copied where its shape is unchanged. A weight whose
shape depends on a vocabulary but is not an embedding table — a multiclass
head over a label's vocabulary, the retrieval task's candidate
probabilities (recomputed from today's data anyway) — keeps its fresh value
and is listed as ``skipped``. The optimizer starts afresh.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Dict, Sequence

import numpy as np

import shoprec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf
import tensorflow_transform as tft

from shoprec.core import registry as F
from shoprec.core.config import Config
from shoprec.core.errors import ConfigError
from trainer import inputs as inputs_lib, model as model_lib

log = logging.getLogger(__name__)


def _tokens(values) -> list:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def remap_rows(old_table: np.ndarray, old_vocab: Sequence[str], new_table: np.ndarray,
               new_vocab: Sequence[str], oov_buckets: int):
    """An embedding table for today's vocabulary, rows carried over from the old one by token.

    Row ``i < len(vocab)`` embeds token ``vocab[i]``; the ``oov_buckets`` rows
    after the vocabulary are the OOV buckets.

    Args:
        old_table: ``[len(old_vocab) + oov_buckets, d]`` trained rows.
        old_vocab: The old model's vocabulary, by index.
        new_table: ``[len(new_vocab) + oov_buckets, d]`` freshly initialised rows.
        new_vocab: Today's vocabulary, by index.
        oov_buckets: OOV buckets of the feature (the same on both days).

    Returns:
        ``(table, counts)``: the new table (a copy) and ``{'carried', 'fresh',
        'dropped', 'oov'}`` row counts.

    Raises:
        ValueError: a table's row count does not match its vocabulary.
    """
    old_table, new_table = np.asarray(old_table), np.array(new_table)
    for name, table, vocab in (("old", old_table, old_vocab), ("new", new_table, new_vocab)):
        if table.shape[0] != len(vocab) + oov_buckets:
            raise ValueError(f"{name} table has {table.shape[0]} rows for {len(vocab)} tokens "
                             f"and {oov_buckets} OOV buckets")
    old_index = {token: i for i, token in enumerate(old_vocab)}
    carried = [(i, old_index[t]) for i, t in enumerate(new_vocab) if t in old_index]
    if carried:
        rows, sources = map(list, zip(*carried))
        new_table[rows] = old_table[sources]
    new_oov, old_oov = len(new_vocab), len(old_vocab)
    new_table[new_oov:new_oov + oov_buckets] = old_table[old_oov:old_oov + oov_buckets]
    counts = {"carried": len(carried), "fresh": len(new_vocab) - len(carried),
              "dropped": len(old_vocab) - len(carried), "oov": oov_buckets}
    return new_table, counts


def _vocabularies(tft_output, registry: F.Registry) -> Dict[str, list]:
    """Tokens by index of every feature owning a vocabulary."""
    return {f.name: _tokens(tft_output.vocabulary_by_name(f.vocab_filename))
            for f in inputs_lib.vocabulary_owners(registry)}


def _plain_name(variable) -> str:
    # Auto-named layers get a per-process number (dense_3): two builds of one
    # architecture differ only there.
    return re.sub(r"_\d+(?=/|:)", "", variable.name)


def _tables(model) -> Dict[int, str]:
    """id of each vocabulary embedding table variable → its feature."""
    return {id(layer.embeddings): name for name, layer in model.encoder.embeddings.items()}


def _published_model(config: Config, checkpoint: str, old_tft, global_batch_size: int):
    """The published model, rebuilt with its own vocabulary sizes and restored."""
    old = model_lib.build_model(config.model, old_tft, global_batch_size, config.registry)
    status = tf.train.Checkpoint(model=old).read(checkpoint).expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as err:
        raise ConfigError(f"training.warm_start: the published model at {checkpoint} does not "
                          f"match the configured model section ({err}); set "
                          "training.warm_start: none to train this one from scratch") from err
    return old


def apply(model, config: Config, checkpoint: str, old_transform_dir: str, tft_output,
          global_batch_size: int) -> Dict[str, Any]:
    """Initialises ``model`` (built for today's vocabularies) from a published model.

    Args:
        model: The new, freshly built ``MultiTaskModel`` (any strategy).
        config: Run config (the model section both models share).
        checkpoint: The published version's checkpoint prefix.
        old_transform_dir: The published version's TFT output.
        tft_output: Today's TFT output.
        global_batch_size: The new model's global batch size.

    Returns:
        ``{'copied': n weights, 'remapped': {feature: row counts},
        'skipped': [names of weights whose shape changed]}``.

    Raises:
        ConfigError: the published model is not of the configured architecture.
    """
    registry = config.registry
    old_tft = tft.TFTransformOutput(old_transform_dir)
    old = _published_model(config, checkpoint, old_tft, global_batch_size)
    old_weights, new_weights = old.weights, model.weights
    if [_plain_name(v) for v in old_weights] != [_plain_name(v) for v in new_weights]:
        raise ConfigError("training.warm_start: the published model's weights are not the "
                          "configured model's; set training.warm_start: none")
    old_vocab, new_vocab = _vocabularies(old_tft, registry), _vocabularies(tft_output, registry)
    old_tables, new_tables = _tables(old), _tables(model)
    report: Dict[str, Any] = {"copied": 0, "remapped": {}, "skipped": []}
    for old_var, new_var in zip(old_weights, new_weights):
        value = old_var.numpy()
        feature = new_tables.get(id(new_var))
        if feature is not None and feature in new_vocab and old_tables.get(id(old_var)) == feature:
            value, counts = remap_rows(value, old_vocab[feature], new_var.numpy(),
                                       new_vocab[feature], registry.by_name[feature].oov_buckets)
            report["remapped"][feature] = counts
        elif tuple(value.shape) != tuple(new_var.shape):
            report["skipped"].append(_plain_name(new_var))
            continue
        else:
            report["copied"] += 1
        new_var.assign(value)
    log.info("warm start from %s: %d weights copied, %d tables remapped, skipped %s",
             checkpoint, report["copied"], len(report["remapped"]), report["skipped"])
    return report

