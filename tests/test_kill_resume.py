"""Kill-and-resume: a stage killed at its riskiest point (SIGKILL inside the transaction just
before COMMIT, or between two writes) can be re-run to exactly the state an uninterrupted run
reaches, with no duplicates, and the audit trail says the killed attempt was abandoned.

A reference run goes stage by stage (the linkage unit's, then the hub's) on a small synthetic
county, keeping a copy of the data home before and after each stage.  For every checkpoint in
`joinedup.faults.CHECKPOINTS`, a copy of the 'before' home runs the stage in a subprocess with
JOINEDUP_KILL_AT set (it must die by SIGKILL), then the stage runs again normally, and the
fingerprint of both stores (the linkage unit's and the hub's warehouse: row counts and an
order-independent hash of every deterministic column of every table) must equal the reference's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from joinedup import faults
from joinedup.config import Settings
from joinedup.stages import PIPELINE_STAGES, run_stage, settings_for
from linkage.handoff import MAPPING_FILE
from warehouse.db import connect

pytestmark = pytest.mark.slow
CHILDREN = 1000
#: columns that legitimately differ between two runs on the same input
VOLATILE_NAMES = {"run_id", "built_at", "at", "loaded_at", "quarantined_at", "validated_at",
                  "published_at", "decided_at", "created_at"}  # fmt: skip


def fingerprint(settings: Settings) -> dict[str, tuple[int, int]]:
    """unit:table -> (rows, bit_xor of row hashes over deterministic columns) over both units'
    stores (a store not created yet has no tables); audit excluded."""
    out: dict[str, tuple[int, int]] = {}
    for unit in ("linkage", "hub"):
        us = settings.for_unit(unit)
        if us.warehouse_path.exists():
            out.update({f"{unit}:{k}": v for k, v in _store_fingerprint(us).items()})
    return out


def _store_fingerprint(settings: Settings) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    with connect(settings, read_only=True) as con:
        tables = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() "
            "WHERE schema_name NOT IN ('audit') AND table_name <> 'schema_migrations' "
            "ORDER BY 1, 2"
        ).fetchall()
        for schema, table in tables:
            cols = [
                # floating-point results (match weights) may differ in the last bits between two
                # runs (parallel sums in a different order): compared to 6 significant digits
                f'round("{name}" / pow(10, floor(log10(abs("{name}") + 1e-300)) - 5))'
                if dtype in ("DOUBLE", "FLOAT", "REAL")
                else f'"{name}"'
                for name, dtype in con.execute(
                    "SELECT column_name, data_type FROM duckdb_columns() "
                    "WHERE schema_name = ? AND table_name = ? ORDER BY column_index",
                    [schema, table],
                ).fetchall()
                if name not in VOLATILE_NAMES and not dtype.startswith("TIMESTAMP")
            ]
            quoted = ", ".join(cols) or "1"
            rows, h = con.execute(
                f'SELECT count(*), coalesce(bit_xor(hash({quoted})), 0) FROM {schema}."{table}"'
            ).fetchall()[0]
            out[f"{schema}.{table}"] = (int(rows), int(h))
    return out


def _files(settings: Settings) -> dict[str, str]:
    """The current model pointer, the published snapshot's existence and the linkage unit's
    hand-off as delivered to the hub."""
    current = settings.models_dir / "current"
    mapping = settings.handoff_inbox / MAPPING_FILE
    return {
        "current_model": current.read_text() if current.exists() else "",
        "published": str(settings.published_path.exists()),
        "handoff": hashlib.sha256(mapping.read_bytes()).hexdigest() if mapping.exists() else "",
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Homes before and after each stage of an uninterrupted run, and their fingerprints."""
    root = tmp_path_factory.mktemp("killresume")
    home = root / "run"
    s = Settings.from_env(home)
    for stage, opts in (("synth", {"children": CHILDREN, "seed": 7}), ("keygen", {}),
                        ("pseudonymise", {})):  # fmt: skip
        run_stage(stage, s, **opts)
    before: dict[str, Path] = {}
    after: dict[str, tuple[dict, dict]] = {}
    for stage in PIPELINE_STAGES:
        before[stage] = root / f"before-{stage}"
        shutil.copytree(home, before[stage])
        run_stage(stage, s, run_id="reference")
        after[stage] = (fingerprint(s), _files(s))
    return before, after


def _kill_case_ids() -> list[tuple[str, str]]:
    return [(stage, point) for stage, points in faults.CHECKPOINTS.items() for point in points]


@pytest.mark.parametrize(("stage", "point"), _kill_case_ids(), ids=lambda v: v)
def test_stage_killed_at_checkpoint_resumes_to_the_same_state(reference, tmp_path, stage, point):
    before, after = reference
    home = tmp_path / "home"
    shutil.copytree(before[stage], home)
    env = {**os.environ, "JOINEDUP_HOME": str(home), faults.ENV: point}
    killed = subprocess.run(
        [sys.executable, "-m", "joinedup.cli", stage], env=env, capture_output=True, text=True
    )
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])

    s = Settings.from_env(home)
    run_stage(stage, s, run_id="resume")
    want_tables, want_files = after[stage]
    got_tables = fingerprint(s)
    assert got_tables == want_tables, {
        k: (got_tables.get(k), want_tables.get(k))
        for k in set(got_tables) | set(want_tables)
        if got_tables.get(k) != want_tables.get(k)
    }
    assert _files(s) == want_files
    with connect(settings_for(stage, s), read_only=True) as con:  # the stage's own unit
        runs = dict(
            con.execute(
                "SELECT status, count(*) FROM audit.stage_runs WHERE stage = ? "
                "AND run_id <> 'reference' GROUP BY status",
                [stage],
            ).fetchall()
        )
    assert runs == {"abandoned": 1, "success": 1}, runs


def test_every_pipeline_stage_has_a_checkpoint():
    assert set(faults.CHECKPOINTS) == set(PIPELINE_STAGES)
