"""A tiny end-to-end run, shared by the app tests that read its outputs."""

import contextlib
import dataclasses
import io

import pytest

from shoprec.app import demo
from shoprec.core import config as config_lib
from shoprec.core.dataset import QualitySpec


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """Runs `shoprec demo` on a tiny config; returns (config, printed summary)."""
    base = config_lib.load()
    config = dataclasses.replace(
        base,
        run_dir=str(tmp_path_factory.mktemp("run") / "demo"),
        generate=dataclasses.replace(base.generate, num_users=80, num_items=24,
                                     sessions_per_user=3.0, corrupt_fraction=0.01,
                                     duplicate_fraction=0.01, missing_image_fraction=0.1),
        ingest=dataclasses.replace(base.ingest, num_shards=2),
        embed=dataclasses.replace(base.embed, epochs=1, min_steps=30),
        model=dataclasses.replace(base.model, bottom_units=(16,), tower_units=(8,)),
        training=dataclasses.replace(base.training, epochs=1, per_replica_batch_size=64),
        # One epoch on a tiny shop: the gate must not refuse the demo's first model.
        gate=dataclasses.replace(base.gate, min_auc=0.0),
        # 1% corrupt rows and 10% bad photos on purpose: above the default quality gate.
        dataset=dataclasses.replace(base.data, quality=QualitySpec(max_bad_fraction=0.5)),
    )
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert demo.run(config) == 0
    return config, printed.getvalue()
