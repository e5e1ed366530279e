"""Shared test set-up: every test gets its own data home; Airflow and GX are configured for
tests before anything imports them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="joinedup-airflow-"))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parent.parent / "dags")


@pytest.fixture
def settings(tmp_path):
    from joinedup.config import Settings

    s = Settings.from_env(tmp_path / "home")
    s.ensure_dirs()
    return s


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated SQLite metadata database for tests that parse or run DAGs."""
    import subprocess
    import sys

    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)
    return _AIRFLOW_HOME
