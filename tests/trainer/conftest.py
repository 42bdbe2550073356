"""Fixtures for trainer tests: a tiny run folder featurized by the real job.

Raw examples are encoded with the same code ingest uses and featurized with
``pipelines.featurize``, so the trainer is tested against the actual TFT
output contract rather than a hand-made imitation of it.
"""

import pytest

from tests.trainer.synthetic import NUM_EVAL, NUM_TRAIN, make_config, make_rows, write_raw


@pytest.fixture(scope="session")
def featurized_dir(tmp_path_factory) -> str:
    """Run folder holding raw and featurized train/eval splits (built once per session)."""
    # Imported here so tests that need no featurized data never load Beam.
    from pipelines import featurize

    run_dir = str(tmp_path_factory.mktemp("run"))
    config = make_config(run_dir)
    write_raw(config.layout.examples("train"), make_rows(NUM_TRAIN, seed=1))
    write_raw(config.layout.examples("eval"), make_rows(NUM_EVAL, seed=2))
    featurize.run(config)
    return run_dir
