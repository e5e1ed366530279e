"""Publish swaps in the verified read models; stages are audited; the CLI fails with one line."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import pytest

from joinedup import cli
from joinedup.stages import HUB_STAGES, STAGES, run_stage
from tests.landing_fixtures import write_agency
from warehouse.db import connect


def test_publish_writes_verified_read_models_and_replaces_them_atomically(settings):
    """After ingest alone (no linked, scores or wards yet) publish still writes the three read
    models with their documented schemas; raw rows never reach them, only load metadata."""
    from warehouse.read_models.builder import snapshot_paths

    write_agency(settings.landing_dir, "health", n_people=4)
    run_stage("ingest", settings)
    first = run_stage("publish", settings)
    assert first["rows"] > 0 and set(first["checks"].values()) == {"passed"}
    paths = snapshot_paths(settings)
    assert settings.published_path == paths["analysts"]
    for path in paths.values():
        snap = duckdb.connect(str(path), read_only=True)
        schemas = {
            r[0] for r in snap.sql("SELECT DISTINCT schema_name FROM duckdb_tables()").fetchall()
        }
        assert schemas == {"main"}  # no raw, staging, quarantine or audit schema
        snap.close()
    snap = duckdb.connect(str(paths["engineers"]), read_only=True)
    loads = snap.execute("SELECT count(*) FROM loads").fetchone()[0]
    manifest = dict(snap.execute("SELECT table_name, n_rows FROM manifest").fetchall())
    snap.close()
    assert loads == manifest["loads"] == 2
    write_agency(settings.landing_dir / "next", "police", n_people=2)
    run_stage("ingest", settings)
    run_stage("publish", settings)
    snap = duckdb.connect(str(paths["engineers"]), read_only=True)
    assert snap.execute("SELECT count(*) FROM loads").fetchone()[0] == 4
    snap.close()
    assert not list(settings.published_path.parent.glob("*.tmp"))
    assert not list(settings.published_path.parent.glob(".*.tmp*"))


def test_hub_stages_are_recorded_in_the_audit_layer(settings):
    run_stage("ingest", settings, run_id="r1")
    with connect(settings) as con:
        status, figures, by = con.execute(
            "SELECT status, figures, run_by FROM audit.stage_runs WHERE run_id='r1'"
        ).fetchone()
    assert status == "success" and json.loads(figures)["files_loaded"] == 0 and by


def test_a_failing_stage_is_recorded_as_failed(settings, monkeypatch):
    import warehouse.ingest

    def boom(_settings):
        raise ValueError("landing folder unreadable")

    monkeypatch.setattr(warehouse.ingest, "run", boom)
    with pytest.raises(ValueError):
        run_stage("ingest", settings, run_id="r2")
    with connect(settings) as con:
        status, error = con.execute(
            "SELECT status, error FROM audit.stage_runs WHERE run_id='r2'"
        ).fetchone()
    assert status == "failed" and "landing folder unreadable" in error


def test_every_stage_is_a_cli_subcommand_and_importable():
    help_text = subprocess.run(
        [sys.executable, "-m", "joinedup.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name, stage in STAGES.items():
        assert name in help_text
        assert callable(stage.function())
    assert HUB_STAGES[0] == "ingest" and HUB_STAGES[-1] == "publish"


def test_cli_bad_input_exits_non_zero_with_one_line(tmp_path, capsys):
    code = cli.main(["--home", str(tmp_path), "demo", "--children", "5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--children" in err[0]
    code = cli.main(
        ["--home", str(tmp_path), "pseudonymise", "--key-file", str(tmp_path / "missing.key")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and err[0].startswith("joinedup pseudonymise: error:")


def test_cli_json_prints_one_object(tmp_path, capsys):
    assert cli.main(["--home", str(tmp_path), "--json", "ingest"]) == 0
    out = capsys.readouterr().out.strip()
    assert json.loads(out)["files_loaded"] == 0
