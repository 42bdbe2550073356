"""The Vertex AI custom job (infra/vertex/trainer-job.yaml): one chief, the same command.

Vertex writes each replica's ``TF_CONFIG`` itself (the first worker pool is the
``chief``, the others' replicas are ``worker``s); the test builds those from
the pools' replica counts and checks ``trainer.strategy`` trains multi-worker
with exactly one writer.
"""

import os

import yaml

from tests.infra.manifests import INFRA
from trainer import strategy

JOB = os.path.join(INFRA, "vertex", "trainer-job.yaml")


def _vertex_tf_configs(pools):
    """Every replica's TF_CONFIG as Vertex sets it for ``pools``."""
    cluster = {"chief": ["workerpool0-0:2222"]}
    cluster["worker"] = [f"workerpool{p}-{r}:2222" for p, pool in enumerate(pools) if p > 0
                         for r in range(pool["replicaCount"])]
    configs = [{"cluster": cluster, "task": {"type": "chief", "index": 0}}]
    configs += [{"cluster": cluster, "task": {"type": "worker", "index": i}}
                for i in range(len(cluster["worker"]))]
    return configs


def test_every_pool_runs_the_same_dated_train_command():
    with open(JOB) as f:
        pools = yaml.safe_load(f)["workerPoolSpecs"]
    assert pools[0]["replicaCount"] == 1
    commands = [p["containerSpec"]["command"] for p in pools]
    assert all(c == commands[0] for c in commands)
    command = commands[0]
    assert command[:2] == ["shoprec", "train"]
    assert command[command.index("--strategy") + 1] == "auto"
    assert command[command.index("--date") + 1] == "RUN_DATE_VALUE"
    assert "--run_dir" not in command


def test_vertex_tf_config_trains_multi_worker_with_one_chief():
    with open(JOB) as f:
        pools = yaml.safe_load(f)["workerPoolSpecs"]
    configs = _vertex_tf_configs(pools)
    assert len(configs) == sum(p["replicaCount"] for p in pools) == 2
    assert [strategy.choose("auto", c, num_gpus=2) for c in configs] == ["multi_worker"] * 2
    assert [strategy.is_chief(c) for c in configs] == [True, False]
