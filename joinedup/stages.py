"""The stage registry: one function per stage, called the same way by the CLI, the DAG and tests.

`run_stage(name, settings, **options)` imports the stage lazily (heavy libraries stay out of DAG
parsing and `--help`), runs it with the settings of the stage's own unit, and records linkage-unit
and hub stages in `audit.stage_runs` of that unit's store with their figures or error.
Agency-side stages (synth, keygen, pseudonymise) never touch a store.  Separation of functions:
a linkage-unit stage runs with `settings.for_unit("linkage")`, whose paths name only the linkage
unit's landing folder and store; a hub stage with the hub's.
"""

from __future__ import annotations

import getpass
import importlib
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from joinedup.config import Settings


@dataclass(frozen=True)
class Stage:
    name: str
    target: str  # "module:function"
    side: str  # "agency" (plaintext side, never touches a store), "linkage" (unit) or "hub"
    summary: str

    def function(self) -> Callable[..., dict]:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage(
            "synth",
            "synth.generate:run",
            "agency",
            "generate a synthetic county (raw extracts + truth)",
        ),
        Stage(
            "keygen",
            "joinedup.agency_stages:keygen",
            "agency",
            "make the local demo pseudonymisation key",
        ),
        Stage(
            "pseudonymise",
            "joinedup.agency_stages:pseudonymise",
            "agency",
            "raw extracts -> pseudonymised landing files",
        ),
        Stage(
            "link_ingest",
            "warehouse.ingest:run",
            "linkage",
            "linkage unit: people files (encodings only) -> its raw layer (each file once)",
        ),
        Stage(
            "link_validate",
            "expectations.validate:run",
            "linkage",
            "linkage unit: GX suites: pass -> staging, fail -> quarantine",
        ),
        Stage(
            "link",
            "linkage.link:run",
            "linkage",
            "linkage unit: Splink linkage into child ids; hand-off token -> child id to the hub",
        ),
        Stage(
            "ingest",
            "warehouse.ingest:run",
            "hub",
            "hub: attributes and events files -> raw layer (each file once)",
        ),
        Stage(
            "validate",
            "expectations.validate:run",
            "hub",
            "GX suites: pass -> staging, fail -> quarantine",
        ),
        Stage(
            "assemble",
            "warehouse.assemble:run",
            "hub",
            "hub: the linkage unit's hand-off + attributes + events -> one picture per child",
        ),
        Stage(
            "features", "models.features:run", "hub", "point-in-time features per child and month"
        ),
        Stage(
            "train",
            "models.train:run",
            "hub",
            "train, calibrate, evaluate and register the risk model",
        ),
        Stage("score", "models.score:run", "hub", "score current children with reasons"),
        Stage(
            "forecast",
            "forecast.stage:run",
            "hub",
            "care-demand forecast (aggregates, suppressed)",
        ),
        Stage("publish", "warehouse.publish:run", "hub", "atomic snapshot for the dashboard"),
    )
}
#: the linkage unit's stages, in order
LINKAGE_STAGES: tuple[str, ...] = tuple(n for n, s in STAGES.items() if s.side == "linkage")
#: the analytics hub's stages, in order
HUB_STAGES: tuple[str, ...] = tuple(n for n, s in STAGES.items() if s.side == "hub")
#: what the DAG and `joinedup run` execute: the linkage unit, then the hub
PIPELINE_STAGES: tuple[str, ...] = LINKAGE_STAGES + HUB_STAGES


def settings_for(name: str, settings: Settings) -> Settings:
    """The settings a stage runs with: its own unit's (agency stages keep the given ones)."""
    side = STAGES[name].side
    return settings if side == "agency" else settings.for_unit(side)


def _run_by() -> str:
    try:
        return os.environ.get("JOINEDUP_RUN_BY") or getpass.getuser()
    except Exception:  # no user database entry in some containers
        return "pipeline"


def _audit(settings: Settings, sql: str, params: list) -> None:
    from warehouse.db import connect

    with connect(settings) as con:
        con.execute(sql, params)


def run_stage(name: str, settings: Settings, run_id: str | None = None, **options) -> dict:
    """Run one stage and return its figures; hub stages are recorded in audit.stage_runs."""
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    stage = STAGES[name]
    settings = settings_for(name, settings)
    settings.ensure_dirs()
    fn = stage.function()
    if stage.side == "agency":
        return fn(settings, **options)
    run_id = run_id or os.environ.get("JOINEDUP_RUN_ID") or uuid.uuid4().hex[:12]
    # an earlier attempt still 'running' never finished (the process was killed): say so
    _audit(
        settings,
        "UPDATE audit.stage_runs SET status = 'abandoned', error = 'the process ended without "
        "recording an outcome (killed or crashed); this run redoes the stage' "
        "WHERE stage = ? AND status = 'running' AND run_id <> ?",
        [name, run_id],
    )
    _audit(
        settings,
        "INSERT OR REPLACE INTO audit.stage_runs (run_id, stage, started_at, status, run_by) "
        "VALUES (?, ?, ?, 'running', ?)",
        [run_id, name, datetime.now(), _run_by()],
    )
    try:
        figures = fn(settings, **options)
    except BaseException as exc:
        _audit(
            settings,
            "UPDATE audit.stage_runs SET finished_at = ?, status = 'failed', error = ? "
            "WHERE run_id = ? AND stage = ?",
            [datetime.now(), f"{type(exc).__name__}: {exc}"[:2000], run_id, name],
        )
        raise
    _audit(
        settings,
        "UPDATE audit.stage_runs SET finished_at = ?, status = 'success', figures = ? "
        "WHERE run_id = ? AND stage = ?",
        [datetime.now(), json.dumps(figures, default=str), run_id, name],
    )
    return figures
