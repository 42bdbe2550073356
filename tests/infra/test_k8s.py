"""The Kubernetes manifests (infra/k8s/): their structure, and what their pods run.

Each container's command line runs in a real shell with a stand-in
``shoprec`` (``manifests.run_container``), so the checks see the arguments and the
``TF_CONFIG`` a pod would hand to shoprec; ``trainer.strategy`` then reads that
``TF_CONFIG`` as training would.
"""

import datetime
import json
import os

import yaml

from tests.infra.manifests import INFRA, container_env, dag_exit_codes, run_container
from trainer import strategy

K8S = os.path.join(INFRA, "k8s")


def _load(name):
    with open(os.path.join(K8S, name)) as f:
        return list(yaml.safe_load_all(f))


def test_cronjob_runs_one_day_at_a_time_at_two_utc():
    (cron,) = _load("cronjob.yaml")
    assert cron["kind"] == "CronJob"
    spec = cron["spec"]
    assert spec["schedule"] == "0 2 * * *"
    assert spec["timeZone"] == "Etc/UTC"
    assert spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    (rule,) = job["podFailurePolicy"]["rules"]
    # The same codes as the Airflow DAG: not blessed stops the day without retries.
    assert rule["action"] == "FailJob"
    assert rule["onExitCodes"]["values"] == [dag_exit_codes()["model_not_blessed"]]
    assert rule["onExitCodes"]["containerName"] == "shoprec"


def test_cronjob_pod_runs_shoprec_run_for_today_utc(tmp_path):
    (cron,) = _load("cronjob.yaml")
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    before = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    call = run_container(container["command"], container["args"], container_env(container),
                         tmp_path)
    after = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    assert call["args"][:2] == ["run", "--date"]
    assert call["args"][2] in (before, after)
    assert call["args"][3:] == ["--config", "/config/run.yaml"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/config" in mounts


def test_trainer_job_gives_each_pod_its_tf_config_and_one_chief(tmp_path):
    service, job = _load("trainer-multiworker.yaml")
    assert service["kind"] == "Service" and service["spec"]["clusterIP"] == "None"
    assert job["kind"] == "Job"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    workers = spec["completions"]
    assert spec["parallelism"] == workers == 2
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["subdomain"] == service["metadata"]["name"]
    (container,) = pod["containers"]
    port = container["ports"][0]["containerPort"]
    assert service["spec"]["ports"][0]["port"] == port
    # Indexed Job pods are named <job>-<index>, reachable as <pod>.<subdomain>.
    names = [f"{job['metadata']['name']}-{i}.{pod['subdomain']}:{port}" for i in range(workers)]
    env = container_env(container)
    chiefs = []
    for index in range(workers):
        call = run_container(container["command"], container["args"],
                             dict(env, JOB_COMPLETION_INDEX=str(index)), tmp_path)
        assert call["args"] == ["train", "--date", env["RUN_DATE"], "--config",
                                "/config/run.yaml", "--strategy", "auto"]
        tf_config = json.loads(call["tf_config"])
        assert tf_config["cluster"] == {"worker": names}
        assert tf_config["task"] == {"type": "worker", "index": index}
        assert strategy.choose("auto", tf_config, num_gpus=1) == "multi_worker"
        chiefs.append(strategy.is_chief(tf_config))
    assert chiefs == [True, False]
