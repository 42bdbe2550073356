"""Runs ``preprocessing_fn`` through real TFT on Beam, for the transforms tests."""

import functools
import tempfile

import apache_beam as beam
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from transforms.preprocessing import preprocessing_fn


def check_transformed(registry, train, test, check, sort_key=None):
    """Analyses on ``train``, transforms ``test`` and runs ``check`` on the rows.

    ``check`` runs inside ``assert_that`` (rows sorted by ``sort_key`` when
    given), so a failed assertion fails the pipeline.
    """
    metadata = tft.DatasetMetadata.from_feature_spec(registry.raw_feature_spec())
    with tempfile.TemporaryDirectory() as tmp:
        with TestPipeline(runner="FnApiRunner") as p, tft_beam.Context(temp_dir=tmp):
            transform_fn = (p | "Train" >> beam.Create(train), metadata) | tft_beam.AnalyzeDataset(
                functools.partial(preprocessing_fn, registry=registry))
            (out, _) = ((p | "Test" >> beam.Create(test), metadata), transform_fn
                        ) | tft_beam.TransformDataset()
            assert_that(out, lambda rows: check(sorted(rows, key=sort_key) if sort_key
                                                else rows))
