"""Data-subject rights: an agency's opt-out list, and subject-access requests (docs/privacy.md,
"Data-subject rights").

**Opt-out** (`apply_optouts`): an agency sends a CSV of `agency,record_token` (header required,
every token TOKEN_HEX_LENGTH lowercase hex).  The list is checked whole first (a bad row refuses
it, naming file, row and rule, never the value; nothing is applied).  Then, in each unit's own
store and in one transaction there, the records are added to the append-only register
`rights.optouts` and every row keyed by them is removed: raw and staging rows of the unit's file
kinds, their `quarantine.rows` / `quarantine.scrubbed` / `quarantine.row_history` rows; at the hub
`linked.mapping`, `linked.records` and `linked.events` (then `linked.children` is rebuilt from
what remains, and children left with no record leave `features.child_month` and
`scores.current`); at the linkage unit `linked.records`, `linked.pairs`, `linked.review_queue` and
`linked.review_decisions` (either side); and any other table of the store keyed by
(agency, record_token) (`warehouse.rights_purge`).  Raw rows removed are counted per load in `rights.purged_rows`, which
validation's conservation subtracts from the rows the load recorded.  After COMMIT the hand-off
file (`child_mapping.csv`: the linkage unit's outbox, the hub's inbox) is rewritten without them
(and its `review_queue.csv` without their children's pairs),
and at the hub the published snapshots, if any, are rebuilt (`publish`).

**Enforcement** (`enforce`, called by `warehouse.ingest.run`): rows of registered records in
loads not yet validated are removed the same way, so a later extract that still holds an
opted-out record never reaches staging, linkage, scoring or an output.

**Subject access** (`subject_access`): what each unit holds about one record
(`warehouse.rights_access`), written as JSON (mode 0600) to `<unit outputs>/rights/<request>.json`.

Both commands act on both units here (the embedded default: each unit in its own store, via
`settings.for_unit`); in a deployment each unit runs them on the list or request it receives
(`units=`).  `audit.rights_requests` records every request with counts only.  Nothing here logs,
prints or stores in an audit row a record token.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from joinedup import contract
from joinedup.config import UNITS, Settings
from warehouse.db import connect, transaction
from warehouse.rights_purge import KEYS, count, purge, purge_layers

OPTOUT_COLUMNS: tuple[str, ...] = ("agency", "record_token")
_TOKEN = re.compile(rf"[0-9a-f]{{{contract.TOKEN_HEX_LENGTH}}}")


class RightsError(ValueError):
    """A malformed opt-out list or request: file, row and rule, never a value."""


# ------------------------------------------------------------------ checking input
def read_optout_list(path: Path) -> pd.DataFrame:
    """The opt-out list, checked whole: (agency, record_token), one row per record.  Raises
    RightsError naming the file, the first bad row (1-based data row; the header is row 0) and
    the rule."""
    name = Path(path).name
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise RightsError(f"{name}: no such opt-out list (rule: file)") from None
    except UnicodeDecodeError:
        raise RightsError(f"{name}: not UTF-8 text (rule: encoding)") from None
    try:
        rows = list(csv.reader(io.StringIO(text), strict=True))
    except csv.Error:
        raise RightsError(f"{name}: not valid CSV (rule: csv)") from None
    if not rows or [h.strip() for h in rows[0]] != list(OPTOUT_COLUMNS):
        raise RightsError(
            f"{name} row 0: the header must be exactly {','.join(OPTOUT_COLUMNS)} (rule: header)"
        )
    records: list[tuple[str, str]] = []
    for i, row in enumerate(rows[1:], start=1):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # a blank line
        if len(row) != len(OPTOUT_COLUMNS):
            raise RightsError(
                f"{name} row {i}: {len(row)} field(s), expected {len(OPTOUT_COLUMNS)} "
                "(rule: columns)"
            )
        agency, token = row[0].strip(), row[1].strip()
        if agency not in contract.AGENCIES:
            raise RightsError(
                f"{name} row {i}: agency must be one of {', '.join(contract.AGENCIES)} "
                "(rule: agency)"
            )
        if not _TOKEN.fullmatch(token):
            raise RightsError(
                f"{name} row {i}: record_token must be {contract.TOKEN_HEX_LENGTH} lowercase "
                "hex characters (rule: record_token)"
            )
        records.append((agency, token))
    if not records:
        raise RightsError(f"{name}: no records listed (rule: rows)")
    return pd.DataFrame(records, columns=list(OPTOUT_COLUMNS)).drop_duplicates(ignore_index=True)


def check_record(agency: str, record_token: str) -> None:
    """A subject-access request names one well-formed record (the value is never quoted)."""
    if agency not in contract.AGENCIES:
        raise RightsError(f"agency must be one of {', '.join(contract.AGENCIES)} (rule: agency)")
    if not _TOKEN.fullmatch(record_token or ""):
        raise RightsError(
            f"record token must be {contract.TOKEN_HEX_LENGTH} lowercase hex characters "
            "(rule: record_token)"
        )


def _who(requested_by: str | None) -> str:
    who = (requested_by or "").strip()
    if not who:
        raise RightsError("who makes the request is required (--by) (rule: requested_by)")
    return who


def new_request_id() -> str:
    return "DSR-" + uuid.uuid4().hex[:12]


def _units(units: tuple[str, ...] | None) -> tuple[str, ...]:
    chosen = tuple(units or UNITS)
    for u in chosen:
        if u not in UNITS:
            raise RightsError(f"unknown unit {u!r}; expected one of {', '.join(UNITS)}")
    return chosen


# ------------------------------------------------------------------ opt-out
def _audit(
    con: duckdb.DuckDBPyConnection,
    request_id: str,
    kind: str,
    agency: str | None,
    n_records: int,
    rows_removed: dict | None,
    at: datetime,
    by: str,
    note: str,
) -> None:
    con.execute(
        "INSERT INTO audit.rights_requests (request_id, kind, agency, n_records, rows_removed, "
        "requested_at, requested_by, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            request_id,
            kind,
            agency,
            n_records,
            json.dumps(rows_removed) if rows_removed is not None else None,
            at,
            by,
            note,
        ],
    )


def _apply_unit(
    settings: Settings, records: pd.DataFrame, request_id: str, by: str, note: str
) -> dict:
    unit = settings.unit
    now = datetime.now()
    keys = records.assign(request_id=request_id)
    with connect(settings) as con:
        con.register("_rights_list", keys)
        try:
            with transaction(con):
                con.execute(
                    "INSERT INTO rights.optouts (agency, record_token, request_id, received_at, "
                    "applied_by) SELECT agency, record_token, request_id, ?, ? FROM _rights_list",
                    [now, by],
                )
                con.execute(f"CREATE OR REPLACE TEMP TABLE {KEYS} AS SELECT * FROM _rights_list")
                removed = purge(con, unit)
                con.execute(f"DROP TABLE {KEYS}")
                agencies = ",".join(sorted(records["agency"].unique()))
                rows_removed = {k: v for k, v in removed.items() if k != "children_to_rescore"}
                _audit(
                    con, request_id, "optout", agencies, len(records), rows_removed, now, by, note
                )
        finally:
            con.unregister("_rights_list")
    figures: dict[str, Any] = {"rows_removed": rows_removed}
    if unit == "hub":
        figures["children_to_rescore"] = removed.get("children_to_rescore", 0)
    figures["handoff_rows_removed"] = _purge_handoff(settings, records)
    if unit == "hub":
        figures["snapshots"] = _republish(settings)
    return figures


def apply_optouts(
    settings: Settings,
    file_path: Path | str,
    requested_by: str,
    units: tuple[str, ...] | None = None,
    republish: bool = True,
) -> dict:
    """Apply an agency's opt-out list in each unit's own store (default: both units, the
    embedded default; in a deployment each unit applies the list it receives).  Figures: the
    request id, records, and per unit the rows removed per table (counts only)."""
    by = _who(requested_by)
    chosen = _units(units)
    records = read_optout_list(Path(file_path))  # checked whole before anything is applied
    request_id = new_request_id()
    note = f"opt-out list {Path(file_path).name}"
    out: dict[str, Any] = {"request_id": request_id, "records": int(len(records)), "units": {}}
    for unit in chosen:
        unit_settings = settings.for_unit(unit)
        unit_settings.ensure_dirs()
        figures = _apply_unit(unit_settings, records, request_id, by, note)
        if unit == "hub" and not republish:
            figures["snapshots"] = "not rebuilt (republish=False): run `joinedup publish`"
        out["units"][unit] = figures
    return out


def _rewrite(path: Path, frame: pd.DataFrame) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            frame.to_csv(f, index=False, lineterminator="\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _purge_review_queue_file(folder: Path, children: set[str]) -> None:
    """Rewrite the hand-off review queue in `folder` without any pair of `children` (the queue
    names children, not records; the next hand-off brings back the pairs still queued)."""
    from linkage.handoff import REVIEW_QUEUE_FILE

    path = folder / REVIEW_QUEUE_FILE
    if not children or not path.is_file():
        return
    queue = pd.read_csv(path, dtype=str, keep_default_na=False)
    if not {"child_id_l", "child_id_r"} <= set(queue.columns):
        return
    drop = queue["child_id_l"].isin(children) | queue["child_id_r"].isin(children)
    if drop.any():
        _rewrite(path, queue[~drop])


def _purge_handoff(settings: Settings, records: pd.DataFrame) -> int:
    """Rewrite this unit's copy of the hand-off mapping (linkage unit: outbox; hub: inbox)
    without the records, and its review queue without their children's pairs, atomically.
    Returns the mapping rows removed."""
    from linkage.handoff import MAPPING_FILE

    folder = settings.handoff_outbox if settings.unit == "linkage" else settings.handoff_inbox
    path = folder / MAPPING_FILE
    if not path.is_file():
        return 0
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if not set(OPTOUT_COLUMNS) <= set(frame.columns):
        return 0
    drop = frame.set_index(list(OPTOUT_COLUMNS)).index.isin(
        records.set_index(list(OPTOUT_COLUMNS)).index
    )
    if not drop.any():
        return 0
    if "child_id" in frame.columns:
        _purge_review_queue_file(folder, set(frame.loc[drop, "child_id"]) - {""})
    _rewrite(path, frame[~drop])
    return int(drop.sum())


def _republish(settings: Settings) -> str:
    """Rebuild the hub's published snapshots when there are any (so no output still shows the
    removed records); a failure is reported, never hidden."""
    from warehouse.read_models.builder import snapshot_paths

    if not any(p.exists() for p in snapshot_paths(settings).values()):
        return "none published"
    from joinedup.stages import run_stage

    try:
        run_stage("publish", settings)
    except Exception as exc:  # the purge is committed; say loudly that the snapshots are stale
        return f"STALE: republish failed ({type(exc).__name__}); run `joinedup publish`"
    return "republished"


# ------------------------------------------------------------------ enforcement at ingest
def enforce(con: duckdb.DuckDBPyConnection, settings: Settings) -> int:
    """Withhold registered opted-out records from loads not yet validated (called by
    `warehouse.ingest.run` inside its connection, after loading).  Returns raw rows removed."""
    if not count(con, "SELECT count(*) FROM rights.optouts"):
        return 0
    with transaction(con):
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {KEYS} AS SELECT agency, record_token, "
            "min(request_id) AS request_id FROM rights.optouts GROUP BY agency, record_token"
        )
        removed = purge_layers(con, settings.unit, new_loads_only=True)
        con.execute(f"DROP TABLE {KEYS}")
    return sum(n for t, n in removed.items() if t.startswith("raw."))


# ------------------------------------------------------------------ subject access
def subject_access(
    settings: Settings,
    agency: str,
    record_token: str,
    requested_by: str,
    units: tuple[str, ...] | None = None,
    request_id: str | None = None,
) -> dict:
    """What each unit holds about one record (default: both units), audited in each unit's store.
    Returns {request_id, units: {unit: answer}}; `write_access_reports` writes the files."""
    from warehouse import rights_access

    by = _who(requested_by)
    check_record(agency, record_token)
    chosen = _units(units)
    request_id = request_id or new_request_id()
    out: dict[str, Any] = {"request_id": request_id, "agency": agency, "units": {}}
    for unit in chosen:
        unit_settings = settings.for_unit(unit)
        unit_settings.ensure_dirs()
        now = datetime.now()
        with connect(unit_settings) as con:
            answer = rights_access.answer(con, unit, agency, record_token)
            with transaction(con):
                _audit(
                    con,
                    request_id,
                    "access",
                    agency,
                    1,
                    None,
                    now,
                    by,
                    f"subject access at the {unit}; record held: {answer['record_held']}",
                )
        out["units"][unit] = answer
    return out


def write_access_reports(settings: Settings, result: dict) -> dict[str, str]:
    """Each unit's answer as JSON, mode 0600, at `<unit outputs>/rights/<request_id>.json`."""
    paths: dict[str, str] = {}
    for unit, answer in result["units"].items():
        folder = settings.for_unit(unit).outputs_dir / "rights"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{result['request_id']}.json"
        body = {
            "request_id": result["request_id"],
            "agency": result["agency"],
            "unit": unit,
            **answer,
        }
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(body, f, indent=2, default=str)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        paths[unit] = str(path)
    return paths
