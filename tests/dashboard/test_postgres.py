"""The app database on PostgreSQL: the route, security, workflow and sign-on tests run again in a
subprocess against the PostgreSQL server the machines run (127.0.0.1:5432, trust auth), so both
app databases are tested by every CI run.  Set `JOINEDUP_TEST_POSTGRES_URL` to use another."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
URL = os.environ.get("JOINEDUP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SUITES = [
    "test_routes.py",
    "test_security.py",
    "test_workflow.py",
    "test_oidc.py",
    "test_postgres.py::test_the_database_in_use_is_the_configured_one",
]


@pytest.mark.slow
def test_the_app_on_postgresql():
    if os.environ.get("JOINEDUP_DASHBOARD_DATABASE_URL"):
        pytest.fail("run this test from a SQLite run: it starts the PostgreSQL run itself")
    import psycopg2

    try:
        psycopg2.connect(URL.replace("postgresql://", "postgres://"), connect_timeout=5).close()
    except psycopg2.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {URL.split('@')[-1]}: {exc}".splitlines()[0])
    # the run picks its own stub sign-on provider port (tests/dashboard/django_settings.py)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOINEDUP_OIDC_")}
    env["JOINEDUP_DASHBOARD_DATABASE_URL"] = URL
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--create-db",
         *[str(ROOT / "tests" / "dashboard" / s) for s in SUITES]],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
    assert proc.returncode == 0, tail
    assert " passed" in tail and "failed" not in tail and "error" not in tail, tail


@pytest.mark.django_db
def test_the_database_in_use_is_the_configured_one():
    """In the PostgreSQL run this proves the tests really ran on PostgreSQL."""
    from django.db import connection

    expected = "postgresql" if os.environ.get("JOINEDUP_DASHBOARD_DATABASE_URL") else "sqlite"
    assert connection.vendor == expected
