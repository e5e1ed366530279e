"""Run the hub DAG in-process, embedded: Airflow's `dag.test()` on a SQLite metadata database
under the project-local AIRFLOW_HOME (`<home>/airflow`).  No scheduler, webserver or other server.

Airflow reads its configuration from the environment at import time, so `configure_environment`
must run before anything imports airflow (the CLI imports this module only for `run`/`demo`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from joinedup.config import PROJECT_ROOT, Settings

DAG_ID = "joinedup_pipeline"
DAGS_FOLDER = PROJECT_ROOT / "dags"


class DagRunFailed(RuntimeError):
    """The DAG run ended in failure; the message names the failed task and its error."""


def airflow_env(settings: Settings) -> dict[str, str]:
    home = settings.airflow_home
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("JOINEDUP_AIRFLOW_LOG_LEVEL", "WARNING"),
        "JOINEDUP_HOME": str(settings.home),
    }


def configure_environment(settings: Settings) -> None:
    if "airflow" in sys.modules:
        current = os.environ.get("AIRFLOW_HOME")
        if current != str(settings.airflow_home):
            raise RuntimeError("airflow was imported before the embedded environment was set")
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    os.environ.update(airflow_env(settings))


def ensure_metadata_db(settings: Settings) -> None:
    """`airflow db migrate` once per AIRFLOW_HOME (a marker records the Airflow version)."""
    import importlib.metadata

    version = importlib.metadata.version("apache-airflow")
    marker = settings.airflow_home / ".migrated"
    if marker.exists() and marker.read_text().strip() == version:
        return
    airflow_bin = Path(sys.executable).with_name("airflow")
    cmd = (
        [str(airflow_bin), "db", "migrate"]
        if airflow_bin.exists()
        else [sys.executable, "-m", "airflow", "db", "migrate"]
    )
    env = {**os.environ, **airflow_env(settings)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"airflow db migrate failed: {tail[0]}")
    marker.write_text(version)


def run_dag(settings: Settings) -> dict:
    """Parse the DAG folder, run the pipeline DAG in-process, return the run's state and figures."""
    configure_environment(settings)
    ensure_metadata_db(settings)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    if bag.import_errors:
        path, err = next(iter(bag.import_errors.items()))
        raise DagRunFailed(f"DAG import error in {path}: {err.strip().splitlines()[-1]}")
    dag = bag.get_dag(DAG_ID)
    if dag is None:
        raise DagRunFailed(f"DAG {DAG_ID} not found in {DAGS_FOLDER}")
    dag_run = dag.test()
    run_id = dag_run.run_id
    state = str(getattr(dag_run.state, "value", dag_run.state))
    figures = _stage_figures(settings, run_id)
    if state != "success":
        failed = [s for s, f in figures.items() if f.get("status") == "failed"]
        detail = "; ".join(f"{s}: {figures[s].get('error')}" for s in failed) or "see Airflow log"
        raise DagRunFailed(f"DAG run {run_id} {state}: {detail}")
    return {"run_id": run_id, "state": state, "stages": figures}


def _stage_figures(settings: Settings, run_id: str) -> dict[str, dict]:
    import json

    from warehouse.db import connect

    rows = []
    for unit in ("linkage", "hub"):  # each unit records its own stages in its own store
        with connect(settings.for_unit(unit)) as con:
            rows += con.execute(
                "SELECT stage, status, figures, error, epoch(finished_at - started_at) "
                "FROM audit.stage_runs WHERE run_id = ? ORDER BY started_at",
                [run_id],
            ).fetchall()
    return {
        stage: {
            "status": status,
            "seconds": round(secs or 0, 2),
            "error": error,
            "figures": json.loads(figs) if figs else None,
        }
        for stage, status, figs, error, secs in rows
    }
