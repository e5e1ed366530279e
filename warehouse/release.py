"""Re-releasing quarantined data after a fix (`joinedup quarantine list | release`).

Quarantined rows (`quarantine.rows`) and batches quarantined whole by a critical rule
(`quarantine.files` with a load id) stay in the warehouse until their cause is fixed: the suite
was corrected, the agency's people file arrived so referential integrity holds, or an engineer
judged a rule wrong.  `release` then, for one load, in one transaction:

- **re-validates** the load's batch with the CURRENT committed suite, through the same Great
  Expectations path as the validate stage (`expectations.validate.evaluate_load`); selected
  quarantined rows that now pass every rule are typed into staging by validate's own `_stage`;
  rows that still fail stay quarantined with their (possibly updated) rules and reason.  If a
  critical rule still fails, nothing changes and the reasons are returned;
- or, with `force=True` and a mandatory reason (an engineer's documented decision), releases the
  named rows (or a whole batch) without re-validation;
- copies every quarantine row it releases or changes to `quarantine.row_history` first (nothing
  is deleted from history), marks a released batch in `quarantine.files`, appends one
  `audit.releases` row and one `audit.validations` row (outcome `released` or `force_released`,
  so validate's pending-load logic never re-validates the load and a released people batch
  counts for referential integrity), and checks conservation for the load with the committed
  `conservation` suite (rows in = staged + quarantined now); a failure rolls everything back.

A release that would change nothing (asked twice, or the rows still fail the same rules) writes
nothing.  Files refused at ingest never became loads and cannot be released: an unreadable file
must be delivered again, and a file refused for plaintext identifiers was deleted and nothing of
it stored.  Released rows reach linkage and features on the next pipeline run (through
`staging.current_*`).  Nothing here prints or stores a token value: listings give counts by load
and rule tag, and reasons are the validate stage's token-free reasons.

Owns: `list_quarantine`, `release`, `parse_rows`, `ReleaseRefused`.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from typing import Any

import duckdb
import pandas as pd

from expectations import validate
from expectations.checks import load_suite
from joinedup import contract
from joinedup.config import Settings
from warehouse.db import connect, transaction
from warehouse.ingest import load_id_for

_PLAINTEXT_RULE = "(rule: plaintext)"
_LOAD_COLUMNS = (*validate.LOAD_COLUMNS, "status")
_INTEGRITY_RULE = "record_token_in_attributes"
_REASONS = ("row_number", "rules", "reason")


class ReleaseRefused(ValueError):
    """The release cannot be done as asked (unknown or refused load, bad options); nothing changed."""


# ------------------------------------------------------------------ small helpers
def parse_rows(text: str) -> list[int]:
    """`3,4,10-12` -> [3, 4, 10, 11, 12] (the file's 1-based data row numbers)."""
    out: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"--rows: expected numbers like 3,4,10-12 (got {part!r})") from None
        if a < 1 or b < a:
            raise ValueError(f"--rows: {part!r} is not a range of row numbers from 1")
        out.update(range(a, b + 1))
    if not out:
        raise ValueError("--rows: no row numbers given")
    return sorted(out)


def _safe(text: str | None) -> str | None:
    """Defence in depth for anything shown: withhold token-like runs of hex."""
    return None if text is None else validate.LOOKS_LIKE_TOKEN.sub("(withheld)", text)


def _run_by() -> str:
    return os.environ.get("USER") or "unknown"


def _refused_message(file_name: str, reason: str, stored_path: str | None) -> str:
    if _PLAINTEXT_RULE in reason or stored_path is None:
        return (
            f"{file_name} was refused at ingest because it held plaintext identifiers where "
            "encodings belong: nothing of it was stored at the hub and its landing copy was "
            "deleted, so it can never be released; the agency must pseudonymise the extract and "
            "send it again"
        )
    return (
        f"{file_name} was refused at ingest (it could not be read as the contract's CSV) and "
        "never became a load, so there are no rows to release; the agency must send a corrected "
        "file (the refused copy is kept under the quarantine folder)"
    )


def _refused_files(con: Any) -> list[dict]:
    rows = con.execute(
        "SELECT file_hash, file_name, agency, kind, reason, stored_path, quarantined_at "
        "FROM quarantine.files WHERE load_id IS NULL ORDER BY quarantined_at, file_name"
    ).fetchall()
    return [
        {
            "file_id": load_id_for(h),
            "file": name,
            "agency": agency,
            "kind": kind,
            "refused": "plaintext" if _PLAINTEXT_RULE in reason or stored is None else "unreadable",
            "releasable": False,
            "reason": _safe(reason),
            "quarantined_at": str(at),
        }
        for h, name, agency, kind, reason, stored, at in rows
    ]


def _load(con: Any, load_id: str) -> dict:
    """The `raw.loads` row of a validated load, or ReleaseRefused saying why not."""
    rows = con.execute(
        f"SELECT {', '.join(_LOAD_COLUMNS)} FROM raw.loads WHERE load_id = ?", [load_id]
    ).fetchall()
    if not rows:
        for h, name, reason, stored in con.execute(
            "SELECT file_hash, file_name, reason, stored_path FROM quarantine.files "
            "WHERE load_id IS NULL"
        ).fetchall():
            if load_id_for(h) == load_id:
                raise ReleaseRefused(_refused_message(name, reason, stored))
        raise ReleaseRefused(f"no load {load_id!r}: `joinedup quarantine list` shows the loads")
    load = dict(zip(_LOAD_COLUMNS, rows[0], strict=True))
    if load["status"] != "loaded":
        raise ReleaseRefused(f"{load['file_name']} ({load_id}) is not a loaded batch")
    validated = con.execute(
        "SELECT count(*) FROM audit.validations WHERE load_id = ?", [load_id]
    ).fetchall()[0][0]
    if not validated:
        raise ReleaseRefused(
            f"{load['file_name']} ({load_id}) has not been validated yet: run `joinedup validate`"
        )
    return load


def _load_counts(con: Any, load: dict) -> dict[str, int]:
    load_id, kind = load["load_id"], load["kind"]
    staged, quarantined, rows_in = con.execute(
        f"SELECT (SELECT count(*) FROM staging.{kind} WHERE load_id = ?), "
        "(SELECT count(*) FROM quarantine.rows WHERE load_id = ?), "
        f"(SELECT count(*) FROM raw.{kind} WHERE load_id = ?)",
        [load_id, load_id, load_id],
    ).fetchall()[0]
    return {"rows_in": rows_in, "staged": staged, "quarantined": quarantined}


def _by_rule(rules: pd.Series) -> dict[str, int]:
    """Rows per rule tag (a row failing two rules counts under each)."""
    if rules.empty:
        return {}
    tags = rules.str.split("; ").explode()
    return {str(k): int(v) for k, v in tags.value_counts().sort_index().items()}


# ------------------------------------------------------------------ list
def list_quarantine(
    settings: Settings, load_id: str | None = None, rule: str | None = None
) -> dict:
    """What is quarantined now, by load and by rule tag, the batches quarantined whole and the
    files refused at ingest (never releasable).  Counts, file names and rule tags only."""
    if not settings.warehouse_path.exists():
        raise ValueError("no warehouse yet: run the pipeline (joinedup run) first")
    with connect(settings) as con:
        staged = " UNION ALL ".join(
            f"SELECT load_id, count(*) n FROM staging.{kind} GROUP BY 1"
            for kind in contract.UNIT_KINDS[settings.unit]
        )
        loads = con.execute(
            f"""
            SELECT l.load_id, l.file_name, l.agency, l.kind, l.n_rows,
                   coalesce(sp.n, 0) AS staged,
                   coalesce(q.n, 0) AS quarantined,
                   coalesce(h.n, 0) AS released,
                   f.file_hash IS NOT NULL AS batch_quarantined
            FROM raw.loads l
            LEFT JOIN ({staged}) sp USING (load_id)
            LEFT JOIN (SELECT load_id, count(*) n FROM quarantine.rows GROUP BY 1) q USING (load_id)
            LEFT JOIN (SELECT load_id, count(*) n FROM quarantine.row_history
                       WHERE action <> 'rules_updated' GROUP BY 1) h USING (load_id)
            LEFT JOIN (SELECT load_id, any_value(file_hash) AS file_hash FROM quarantine.files
                       WHERE load_id IS NOT NULL AND released_at IS NULL GROUP BY 1) f
                   USING (load_id)
            WHERE (coalesce(q.n, 0) > 0 OR coalesce(h.n, 0) > 0) AND (? IS NULL OR l.load_id = ?)
            ORDER BY l.loaded_at, l.load_id
            """,
            [load_id, load_id],
        ).df()
        tags = con.execute(
            "SELECT load_id, tag, count(*) FROM (SELECT load_id, "
            "unnest(string_split(rules, '; ')) AS tag FROM quarantine.rows "
            "WHERE ? IS NULL OR load_id = ?) GROUP BY 1, 2 ORDER BY 1, 2",
            [load_id, load_id],
        ).fetchall()
        refused = _refused_files(con) if load_id is None else []
    if load_id is not None and loads.empty:
        with connect(settings) as con:
            _load(con, load_id)  # unknown or refused: say so
    per_rule = [
        {"load_id": lid, "rule": tag, "rows": int(n)}
        for lid, tag, n in tags
        if rule is None or rule.lower() in tag.lower()
    ]
    if rule is not None:
        matched = {r["load_id"] for r in per_rule}
        loads = loads[loads["load_id"].isin(matched)]
    load_list = [
        {
            "load_id": r.load_id,
            "file": r.file_name,
            "agency": r.agency,
            "kind": r.kind,
            "rows_in": int(r.n_rows),
            "staged": int(r.staged),
            "quarantined": int(r.quarantined),
            "released_so_far": int(r.released),
            "batch_quarantined": bool(r.batch_quarantined),
        }
        for r in loads.itertuples()
    ]
    figures: dict[str, Any] = {
        "loads_with_quarantined_rows": sum(x["quarantined"] > 0 for x in load_list),
        "rows_quarantined": sum(x["quarantined"] for x in load_list),
        "rows_released_so_far": sum(x["released_so_far"] for x in load_list),
        "batches_quarantined_whole": sum(x["batch_quarantined"] for x in load_list),
        "files_refused_at_ingest": len(refused),
        "by_load": {
            x["load_id"]: f"{x['file']}: {x['quarantined']} of {x['rows_in']} rows quarantined, "
            f"{x['staged']} staged, {x['released_so_far']} released"
            + ("; quarantined whole" if x["batch_quarantined"] else "")
            for x in load_list
        },
        "by_rule": {f"{r['load_id']} {r['rule']}": r["rows"] for r in per_rule},
        "refused_at_ingest": {
            f"{f['file_id']} {f['file']}": f"refused ({f['refused']}): never releasable"
            for f in refused
        },
        "loads": load_list,
        "rules": per_rule,
        "refused_files": refused,
    }
    return figures


# ------------------------------------------------------------------ release
def release(
    settings: Settings,
    load_id: str,
    *,
    rule: str | None = None,
    rows: list[int] | None = None,
    force: bool = False,
    reason: str | None = None,
    released_by: str | None = None,
) -> dict:
    """Release one load's quarantined rows (all, or those matching `rule` and/or `rows`) after a
    fix: re-validated with the current suite, or forced with a reason.  Returns figures; raises
    ReleaseRefused (nothing changed) on a request that cannot be met."""
    reason = (reason or "").strip() or None
    if force and not reason:
        raise ReleaseRefused("--force needs --reason: why the rule does not apply (audited)")
    if reason and validate.LOOKS_LIKE_TOKEN.search(reason):
        raise ReleaseRefused("--reason must not hold token values (16+ hex characters)")
    if rule is not None and not rule.strip():
        raise ReleaseRefused("--rule is empty")
    by = released_by or _run_by()
    if not settings.warehouse_path.exists():
        raise ValueError("no warehouse yet: run the pipeline (joinedup run) first")
    with connect(settings) as con:
        load = _load(con, load_id)
        return _release(con, settings, load, rule, rows, force, reason, by)


def _release(
    con: Any,
    settings: Settings,
    load: dict,
    rule: str | None,
    rows: list[int] | None,
    force: bool,
    reason: str | None,
    by: str,
) -> dict:
    load_id, agency, kind, file_name = (load[k] for k in ("load_id", "agency", "kind", "file_name"))
    batch = bool(
        con.execute(
            "SELECT count(*) FROM quarantine.files WHERE load_id = ? AND released_at IS NULL",
            [load_id],
        ).fetchall()[0][0]
    )
    if batch and (rule or rows):
        raise ReleaseRefused(
            f"{file_name} ({load_id}) was quarantined whole by a critical rule: it is released "
            "whole (omit --rule and --rows), after its critical rules pass or with --force"
        )
    if force and not batch and not (rule or rows):
        raise ReleaseRefused("--force releases named rows only: give --rows and/or --rule")
    current = con.execute(
        "SELECT row_number, rules, reason FROM quarantine.rows WHERE load_id = ? "
        "ORDER BY row_number",
        [load_id],
    ).df()
    selected = current
    if rule:
        selected = selected[selected["rules"].str.lower().str.contains(rule.lower(), regex=False)]
    if rows:
        selected = selected[selected["row_number"].isin(rows)]
    suite = load_suite(agency, kind)
    figures: dict[str, Any] = {
        "release_id": None,
        "load_id": load_id,
        "file": file_name,
        "mode": "force" if force else "revalidate",
        "scope": "batch" if batch else "rows",
        "suite": f"{suite['name']}@{suite['meta']['version']}",
        "changed": False,
        "rows_considered": len(selected),
        "rows_released": 0,
        "rows_still_quarantined": len(selected),
        "rows_rules_updated": 0,
        "batch_released": False,
    }
    if rows:
        missing = sorted(set(rows) - set(current["row_number"].tolist()))
        if missing:
            figures["rows_not_quarantined"] = _row_list(missing)
    if selected.empty:
        figures["load"] = _load_counts(con, load)
        figures["note"] = "nothing to release: no quarantined row matches"
        return figures

    context = validate.validation_context(settings)
    check = None
    if force:
        passing = selected
        updated = selected.iloc[:0].assign(rules_now=None, reason_now=None)
        still = updated
    else:
        check = validate.evaluate_load(con, context, load)
        if check.critical:
            reasons = [
                validate.critical_reason(file_name, kind, check.received, m, r)
                for m, r in check.critical
            ]
            figures["load"] = _load_counts(con, load)
            figures["blocked_by_critical"] = _safe(" | ".join(reasons))
            figures["note"] = "a critical rule still fails: nothing was released"
            return figures
        failing = (
            validate.row_reasons(check.checked, check.row_failures, file_name)
            if check.row_failures
            else pd.DataFrame(
                {c: pd.Series(dtype="int64" if c == "row_number" else object) for c in _REASONS}
            )
        )
        failing = failing.rename(columns={"rules": "rules_now", "reason": "reason_now"})
        merged = selected.merge(failing, on="row_number", how="left")
        passing = merged[merged["rules_now"].isna()]
        still = merged[merged["rules_now"].notna()]
        updated = still[
            (still["rules"] != still["rules_now"]) | (still["reason"] != still["reason_now"])
        ]
        staged_failing = ~failing["row_number"].isin(current["row_number"])
        figures["staged_rows_now_failing"] = int(staged_failing.sum())
    figures["rows_released"] = len(passing)
    figures["rows_still_quarantined"] = len(still)
    figures["rows_rules_updated"] = len(updated)
    figures["batch_released"] = batch
    if passing.empty and updated.empty and not batch:
        figures["load"] = _load_counts(con, load)
        figures["still_quarantined_by_rule"] = _by_rule(still["rules_now"])
        figures["note"] = "nothing changed: the rows still fail the same rules"
        return figures

    release_id = "REL" + uuid.uuid4().hex[:16]
    now = datetime.now()
    history = pd.concat(
        [
            pd.DataFrame(
                {
                    "row_number": passing["row_number"].astype("int64"),
                    "action": "force_released" if force else "released",
                    "new_rules": None,
                }
            ),
            pd.DataFrame(
                {
                    "row_number": updated["row_number"].astype("int64"),
                    "action": "rules_updated",
                    "new_rules": updated["rules_now"],
                }
            ),
        ],
        ignore_index=True,
    ).astype({"new_rules": object})
    changes = updated[["row_number", "rules_now", "reason_now"]].astype({"row_number": "int64"})
    with transaction(con, "release.before_commit"):
        con.register("release_history", history)
        con.execute(
            "INSERT INTO quarantine.row_history (release_id, load_id, row_number, agency, kind, "
            "rules, reason, quarantined_at, action, new_rules, released_at, released_by) "
            "SELECT ?, q.load_id, q.row_number, q.agency, q.kind, q.rules, q.reason, "
            "q.quarantined_at, h.action, CAST(h.new_rules AS VARCHAR), ?, ? FROM quarantine.rows q "
            "JOIN release_history h ON h.row_number = q.row_number WHERE q.load_id = ?",
            [release_id, now, by, load_id],
        )
        con.execute(
            "DELETE FROM quarantine.rows WHERE load_id = ? AND row_number IN "
            "(SELECT row_number FROM release_history WHERE action <> 'rules_updated')",
            [load_id],
        )
        con.unregister("release_history")
        if not changes.empty:
            con.register("release_changes", changes)
            con.execute(
                "UPDATE quarantine.rows AS q SET rules = c.rules_now, reason = c.reason_now "
                "FROM release_changes c WHERE q.load_id = ? AND q.row_number = c.row_number",
                [load_id],
            )
            con.unregister("release_changes")
        staged_before = _load_counts(con, load)["staged"]
        try:
            validate.stage_rows(con, load_id, kind, skip_staged=True)
        except (duckdb.ConversionException, duckdb.ConstraintException):
            raise ReleaseRefused(
                f"{file_name} ({load_id}): a selected row cannot be typed into staging (a date or "
                "number does not parse, or a required field is empty): nothing was released; "
                "correct the file at the agency instead"
            ) from None
        counts = _load_counts(con, load)
        if counts["staged"] - staged_before != len(passing):
            raise validate.ConservationError(
                f"{file_name} ({load_id}): release staged {counts['staged'] - staged_before} "
                f"rows, expected {len(passing)}"
            )
        n_read = len(check.checked) if check is not None else counts["rows_in"]
        conservation = validate.conserve(con, context, load, n_read)
        if batch:
            con.execute(
                "UPDATE quarantine.files SET released_at = ?, released_by = ?, release_id = ? "
                "WHERE load_id = ? AND released_at IS NULL",
                [now, by, release_id, load_id],
            )
        still_by_rule = _by_rule(still["rules_now"]) if not still.empty else {}
        statistics = {
            "release_id": release_id,
            "mode": figures["mode"],
            "rows_in": counts["rows_in"],
            "rows_in_load_record": load["n_rows"],
            "rows_staged": counts["staged"],
            "rows_quarantined": counts["quarantined"],
            "conservation_ok": True,
            "conservation_expectations": {
                k: conservation[k] for k in ("suite", "success", "evaluated", "failed")
            },
            "failed_rules": (
                {tag: len(index) for _, tag, index in check.row_failures} if check else {}
            ),
            "still_quarantined_by_rule": still_by_rule,
            "staged_rows_now_failing": figures.get("staged_rows_now_failing"),
            "people_load_for_integrity": check.people_load if check else None,
        }
        validate.record_validation(
            con,
            target=load_id,
            load_id=load_id,
            suite_name=suite["name"],
            suite_version=str(suite["meta"]["version"]),
            success=bool(check.result.success) if check else False,
            outcome="force_released" if force else "released",
            n_rows=counts["rows_in"],
            n_staged=counts["staged"],
            n_quarantined=counts["quarantined"],
            statistics=statistics,
            results=[validate.result_summary(r) for r in check.result.results] if check else [],
            validated_at=now,
            validated_by=by,
        )
        con.execute(
            "INSERT INTO audit.releases (release_id, load_id, agency, kind, file_name, scope, "
            "mode, rule_filter, row_filter, reason, suite_name, suite_version, rows_considered, "
            "rows_released, rows_still_quarantined, rows_rules_updated, batch_released, n_rows, "
            "n_staged, n_quarantined, statistics, released_at, released_by) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                release_id,
                load_id,
                agency,
                kind,
                file_name,
                figures["scope"],
                figures["mode"],
                rule,
                _row_list(rows) if rows else None,
                reason,
                suite["name"],
                str(suite["meta"]["version"]),
                figures["rows_considered"],
                figures["rows_released"],
                figures["rows_still_quarantined"],
                figures["rows_rules_updated"],
                batch,
                counts["rows_in"],
                counts["staged"],
                counts["quarantined"],
                json.dumps(statistics),
                now,
                by,
            ],
        )
    if check is not None:  # the re-validation in Data Docs, scrubbed like validate's
        validate.store_for_docs(context, check.result, load_id, suite["name"])
        context.build_data_docs(site_names=[validate.SITE_NAME])
    figures.update(
        release_id=release_id,
        changed=True,
        load=counts,
        conservation="ok",
        still_quarantined_by_rule=still_by_rule,
    )
    if len(passing):
        figures["next"] = (
            "released rows reach linkage and features on the next pipeline run (joinedup run)"
        )
    if kind == "attributes" and len(passing):
        waiting = _events_waiting_for_people(con, agency)
        if waiting:
            figures["then_release"] = (
                f"{agency} events loads with rows quarantined for {_INTEGRITY_RULE}: "
                + ", ".join(waiting)
                + f" (joinedup quarantine release --load ID --rule {_INTEGRITY_RULE})"
            )
    return figures


def _events_waiting_for_people(con: Any, agency: str) -> list[str]:
    rows = con.execute(
        "SELECT DISTINCT load_id FROM quarantine.rows WHERE agency = ? AND kind = 'events' "
        "AND contains(rules, ?) ORDER BY load_id",
        [agency, _INTEGRITY_RULE],
    ).fetchall()
    return [r[0] for r in rows]


def _row_list(rows: list[int]) -> str:
    return ",".join(str(r) for r in rows)
