"""What the engineers' pages read from their read model (pipeline health; never a child id).

Owns the queries for recent runs and their stages, validation results, quarantine contents and
reasons, linkage quality and the model registry as engineers see it.
"""

from __future__ import annotations

import json
from typing import Any

from dashboard import readmodels as rm

A = "engineers"


def _json(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def runs(limit: int = 20) -> list[dict]:
    """The latest runs, newest first, each with its stages in the order they started."""
    rows = rm.query(
        A,
        "SELECT run_id, stage, CAST(started_at AS VARCHAR) AS started_at, "
        "CAST(finished_at AS VARCHAR) AS finished_at, seconds, status, error, run_by "
        "FROM stage_runs WHERE run_id IN (SELECT run_id FROM stage_runs GROUP BY run_id "
        "ORDER BY max(started_at) DESC LIMIT ?) ORDER BY started_at",
        [limit],
    )
    out: dict[str, dict] = {}
    for r in rows:
        run = out.setdefault(
            r["run_id"],
            {
                "run_id": r["run_id"],
                "stages": [],
                "status": "success",
                "started_at": r["started_at"],
            },
        )
        run["stages"].append(r)
        if r["status"] in ("failed", "abandoned"):
            run["status"] = "failed"
        elif r["status"] == "running" and run["status"] != "failed":
            run["status"] = "running"
        run["seconds"] = round(sum(float(s["seconds"] or 0) for s in run["stages"]), 1)
    return sorted(out.values(), key=lambda r: r["started_at"], reverse=True)


def stage_trend(limit: int = 30) -> list[dict]:
    """Seconds per successful run, for the trend chart (oldest first)."""
    return rm.query(
        A,
        "SELECT run_id, min(started_at) AS started, sum(seconds) AS seconds FROM stage_runs "
        "WHERE status = 'success' GROUP BY run_id ORDER BY started DESC LIMIT ?",
        [limit],
    )[::-1]


def validations(failed_only: bool = False, limit: int = 200) -> list[dict]:
    where = "WHERE outcome <> 'passed'" if failed_only else ""
    rows = rm.query(
        A,
        "SELECT validation_id, load_id, target, suite_name, suite_version, success, outcome, "
        "n_rows, n_staged, n_quarantined, CAST(validated_at AS VARCHAR) AS validated_at, "
        f"validated_by FROM validations {where} ORDER BY validated_at DESC LIMIT ?",
        [limit],
    )
    return rows


def validation(validation_id: Any) -> dict | None:
    r = rm.one(
        A,
        "SELECT * FROM validations WHERE CAST(validation_id AS VARCHAR) = ?",
        [str(validation_id)],
    )
    if r is not None:
        r["results"] = _json(r.get("results")) or []
        for e in r["results"]:  # agency and derived-table suites name the expectation apart
            e["label"] = e.get("type") or e.get("expectation") or e.get("expectation_type", "")
        r["statistics"] = _json(r.get("statistics")) or {}
    return r


def quarantine() -> dict[str, list[dict]]:
    rows = rm.query(
        A,
        "SELECT load_id, agency, kind, rules, count(*) AS n_rows, min(row_number) AS first_row, "
        "any_value(reason) AS example_reason FROM quarantined_rows "
        "GROUP BY load_id, agency, kind, rules ORDER BY n_rows DESC, load_id",
    )
    files = rm.query(
        A,
        "SELECT load_id, file_name, agency, kind, reason, kept_copy, "
        "CAST(quarantined_at AS VARCHAR) AS quarantined_at, "
        "CAST(released_at AS VARCHAR) AS released_at FROM quarantined_files "
        "ORDER BY quarantined_at DESC",
    )
    releases = rm.query(
        A,
        "SELECT release_id, load_id, agency, kind, scope, mode, rows_released, "
        "rows_still_quarantined, batch_released, CAST(released_at AS VARCHAR) AS released_at, "
        "released_by FROM releases ORDER BY released_at DESC",
    )
    return {"rows": rows, "files": files, "releases": releases}


def quarantined_rows(load_id: str, limit: int = 500) -> list[dict]:
    return rm.query(
        A,
        "SELECT row_number, agency, kind, rules, reason FROM quarantined_rows WHERE load_id = ? "
        "ORDER BY row_number LIMIT ?",
        [load_id, limit],
    )


def loads() -> list[dict]:
    return rm.query(
        A,
        "SELECT load_id, agency, kind, file_name, n_rows, extract_date, status, "
        "CAST(loaded_at AS VARCHAR) AS loaded_at FROM loads ORDER BY loaded_at DESC",
    )


def linkage_quality() -> dict[str, Any]:
    rows = rm.query(A, "SELECT metric, value, text FROM linkage_quality ORDER BY metric")
    return {r["metric"]: (r["value"] if r["value"] is not None else r["text"]) for r in rows}


def models() -> list[dict]:
    rows = rm.query(A, "SELECT * FROM models ORDER BY created_at DESC")
    for r in rows:
        r["gate_reasons"] = _json(r.get("gate_reasons")) or []
    return rows
