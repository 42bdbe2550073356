"""Loads a DAG folder with Airflow's DagBag and runs its task's command; prints JSON.

Run as a script in its own process (``AIRFLOW_HOME`` set by the caller), so
Airflow's import-time set-up (config file, logging) stays out of the test
session: ``python airflow_probe.py DAG_FOLDER``. The task's command runs
once per exit status in ``PROBE_EXIT_CODES`` (comma separated) with whatever
``shoprec`` is first on ``PATH``; the outcome of each is ``success``,
``skipped`` (Airflow's skip) or ``failed`` (an error Airflow retries).
"""

import json
import os
import sys

from airflow.dag_processing.dagbag import DagBag
from airflow.exceptions import AirflowSkipException
from airflow.serialization.encoders import coerce_to_core_timetable
from airflow.timetables.base import TimeRestriction

DAG_ID, TASK_ID = "shoprec_daily", "shoprec_run"


def _outcome(task) -> str:
    try:
        task.execute({})
    except AirflowSkipException:
        return "skipped"
    except Exception:  # Airflow fails (and retries) a task on any other error.
        return "failed"
    return "success"


def main(folder: str) -> None:
    bag = DagBag(dag_folder=folder)
    report = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()},
              "dag_ids": sorted(bag.dag_ids)}
    dag = bag.dags[DAG_ID]
    task = dag.get_task(TASK_ID)
    timetable = coerce_to_core_timetable(dag.timetable)
    first = timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=dag.start_date, latest=None, catchup=True))
    ds = first.logical_date.strftime("%Y-%m-%d")
    command = task.render_template(task.bash_command, {"ds": ds, "params": dag.params})
    report.update({
        "task_ids": list(dag.task_ids), "command_template": task.bash_command,
        "timetable": type(timetable).__name__, "cron": timetable.summary,
        "catchup": dag.catchup, "max_active_runs": dag.max_active_runs,
        "max_active_tis_per_dag": task.max_active_tis_per_dag, "retries": task.retries,
        "skip_on_exit_code": sorted(task.skip_on_exit_code),
        "first_run_after": first.run_after.isoformat(), "first_ds": ds, "command": command,
    })
    task.bash_command = command
    outcomes = {}
    for code in os.environ.get("PROBE_EXIT_CODES", "").split(","):
        if code:
            os.environ["STUB_EXIT"] = code
            outcomes[code] = _outcome(task)
    report["outcomes"] = outcomes
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
