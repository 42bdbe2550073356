"""The Airflow DAG (infra/airflow/shoprec_daily.py), loaded by Airflow itself.

Airflow 3.3 installs beside this stack (the ``test`` extra), so the DAG is
parsed by a real ``DagBag`` in its own process and its task's rendered command
is run by Airflow's BashOperator against a stand-in ``shoprec`` on ``PATH``
that records its arguments and exits with the status it is told: that checks
how the schedule treats each of shoprec's exit codes without running a day.
"""

import json
import os
import subprocess
import sys

import pytest

from shoprec.core import errors
from tests.infra.manifests import DAG_FILE, dag_exit_codes

DAG_FOLDER = os.path.dirname(DAG_FILE)
PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "airflow_probe.py")
STUB = '#!/bin/sh\necho "$*" >> "$STUB_LOG"\nexit "$STUB_EXIT"\n'


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("airflow")
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "shoprec"
    stub.write_text(STUB)
    stub.chmod(0o755)
    log = tmp / "calls.log"
    env = dict(os.environ, AIRFLOW_HOME=str(tmp / "home"), STUB_LOG=str(log),
               PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", PROBE_EXIT_CODES="0,1,7,70")
    done = subprocess.run([sys.executable, PROBE, DAG_FOLDER], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["calls"] = log.read_text().splitlines()
    return report


def test_dagbag_loads_the_dag_without_import_errors(probe):
    assert probe["import_errors"] == {}
    assert probe["dag_ids"] == ["shoprec_daily"]
    assert probe["task_ids"] == ["shoprec_run"]


def test_one_daily_run_at_a_time_and_no_catchup(probe):
    assert probe["timetable"] == "CronTriggerTimetable"
    assert probe["cron"] == "0 2 * * *"
    assert probe["catchup"] is False
    assert probe["max_active_runs"] == 1
    assert probe["max_active_tis_per_dag"] == 1
    assert probe["retries"] == 2


def test_the_run_that_fires_on_a_day_runs_that_date(probe):
    # A trigger timetable: ds is the day the run fires (the CronJob's `date -u +%F`).
    assert probe["first_run_after"] == "2026-12-01T02:00:00+00:00"
    assert probe["first_ds"] == "2026-12-01"
    assert probe["command_template"] == "shoprec run --date {{ ds }} --config {{ params.config }}"
    assert probe["command"] == "shoprec run --date 2026-12-01 --config /opt/shoprec/config/run.yaml"
    assert probe["calls"] == ["run --date 2026-12-01 --config /opt/shoprec/config/run.yaml"] * 4


def test_not_blessed_is_skipped_gate_and_crash_fail_and_retry(probe):
    codes = dag_exit_codes()
    assert probe["skip_on_exit_code"] == [codes["model_not_blessed"]]
    assert probe["outcomes"] == {"0": "success", str(codes["quality_gate_failed"]): "failed",
                                 str(codes["model_not_blessed"]): "skipped",
                                 str(codes["crashed"]): "failed"}


def test_the_dag_exit_codes_are_shoprecs():
    codes = dag_exit_codes()
    assert codes["quality_gate_failed"] == errors.QualityGateError.exit_code
    if not hasattr(errors, "ModelNotBlessedError") or not hasattr(errors, "CRASH_EXIT_CODE"):
        pytest.skip("ModelNotBlessedError / CRASH_EXIT_CODE land with issue 11's other parts")
    assert codes["model_not_blessed"] == errors.ModelNotBlessedError.exit_code
    assert codes["crashed"] == errors.CRASH_EXIT_CODE
