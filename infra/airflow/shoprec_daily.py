"""Airflow DAG: one ``shoprec run --date {{ ds }}`` a day, one partition at a time.

Copy this file into the scheduler's DAG folder. The task runs the ``shoprec``
console script where the Airflow worker runs, so the worker's image needs
shoprec installed (``infra/Dockerfile``); a cluster without such workers runs
the same command as a Kubernetes CronJob instead (``infra/k8s/cronjob.yaml``).
``shoprec run`` runs every stage of the day in order, skips what is already
done and publishes each stage atomically, so a retried or re-triggered run of
a date picks up where the last one stopped.

The timetable is a ``CronTriggerTimetable``: the run that fires on day D has
``ds`` = D, the same date the CronJob's ``date -u +%F`` gives (Airflow's
data-interval timetables would give D - 1). ``catchup=False``: enabling the DAG
or a scheduler outage does not start one run per missed day; a missed date is
run on purpose with ``airflow dags backfill`` or ``shoprec run --date``.
``max_active_runs=1`` and ``max_active_tis_per_dag=1`` keep one run of the
pipeline at a time, so two dates never compete for the trainer and the
published model (shoprec's partition lock refuses a second run of the same
date anyway).

Exit codes (``shoprec/core/errors.py``; ``tests/infra/test_airflow_dag.py``
checks these numbers against it): a model the gate did not bless is not a
failure of the day (scoring and recommending used the last blessed model), so
the task ends *skipped*, visible in the grid and not retried. A data-quality
gate failure and a crash fail the task and are retried: late-arriving data
can clear the gate, and a crash may be the machine's.

This module imports only Airflow: the scheduler parses it without TensorFlow.
"""

from __future__ import annotations

import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, CronTriggerTimetable

# shoprec's exit status for each outcome the schedule treats differently.
SHOPREC_EXIT_CODES = {
    "quality_gate_failed": 1,
    "model_not_blessed": 7,
    "crashed": 70,
}

# 02:00 UTC: after the day's partition of events has landed.
SCHEDULE = "0 2 * * *"
COMMAND = "shoprec run --date {{ ds }} --config {{ params.config }}"

with DAG(
    dag_id="shoprec_daily",
    description="shoprec: ingest, featurize, train, gate, score and recommend one day",
    schedule=CronTriggerTimetable(SCHEDULE, timezone="UTC"),
    start_date=datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    max_active_runs=1,
    params={"config": "/opt/shoprec/config/run.yaml"},
    default_args={
        "retries": 2,
        "retry_delay": datetime.timedelta(minutes=30),
        "execution_timeout": datetime.timedelta(hours=6),
    },
    tags=["shoprec"],
) as dag:
    BashOperator(
        task_id="shoprec_run",
        bash_command=COMMAND,
        # Tracebacks of a crash go to the task log.
        env={"SHOPREC_VERBOSE": "1"},
        append_env=True,
        skip_on_exit_code=[SHOPREC_EXIT_CODES["model_not_blessed"]],
        max_active_tis_per_dag=1,
    )
