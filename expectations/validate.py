"""The validate stage: every raw load not yet validated -> staging or quarantine, with an audit row.

Serves both units (`settings.unit`: each its own store, suites and Data Docs).  For each
`raw.loads` row with status 'loaded' and no `audit.validations` row (people or attributes loads
before events loads, oldest first), the batch is read from DuckDB into pandas (all text, empty -> None),
the derived check columns are added (`expectations.checks.derive`), and the agency/kind suite is
run once with Great Expectations (result_format COMPLETE, the frame indexed by row_number so
`unexpected_index_list` gives raw row numbers).  Then, in one transaction per batch:

- a failed **critical** expectation quarantines the whole batch: one `quarantine.files` row and
  every row in `quarantine.rows` with that rule (`raw.loads.status` is left as it is);
- failed **row** expectations send those rows to `quarantine.rows` with every rule they failed
  and a readable reason naming file, row and rule, never the value;
- every other row is typed into `staging.<kind>` (event months become the first day of the month);
- conservation (rows in = staged + quarantined = rows read = rows ingest recorded) is itself an
  expectation (the committed `conservation` suite, run with GX on the batch's counts; a failure
  rolls the batch back), and an `audit.validations` row records
  suite name and version, outcome, counts and the per-expectation results without any values.

**warning** expectations are recorded only.  Data Docs are built into
`settings.outputs_dir / "validation" / "data_docs"` from results scrubbed of every unexpected
value (the GX file context lives under `settings.home / "gx"`).  Re-running validates nothing new.

Owns: `run`, `validation_context`, `DOCS_SUBDIR`; `evaluate_load`, `conserve` and `stage_rows` are
reused by `warehouse.release` (re-releasing quarantined rows).  Imports `joinedup`,
`warehouse.db` and `expectations.checks`; Great Expectations is imported inside functions.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from expectations.checks import (
    DERIVED_COLUMNS,
    derive,
    load_named_suite,
    load_suite,
)
from joinedup import contract, faults
from joinedup.config import Settings
from warehouse.db import connect, transaction

DOCS_SUBDIR = Path("validation") / "data_docs"
SITE_NAME = "joinedup"
DATASOURCE = "joinedup_raw_batches"
#: result keys that may be kept in Data Docs and the audit: counts and aggregates, never values
_SAFE_RESULT_KEYS = frozenset(
    {
        "element_count",
        "unexpected_count",
        "unexpected_percent",
        "missing_count",
        "missing_percent",
        "unexpected_percent_total",
        "unexpected_percent_nonmissing",
    }
)
#: aggregate expectations whose observed value is a statistic or column names, safe to show
_OBSERVED_OK = frozenset(
    {
        "expect_table_columns_to_match_set",
        "expect_table_row_count_to_be_between",
        "expect_column_proportion_of_non_null_values_to_be_between",
        "expect_column_mean_to_be_between",
    }
)
LOOKS_LIKE_TOKEN = re.compile(r"[0-9a-fA-F]{16,}")
_SEVERITY_ORDER = {"critical": 0, "row": 1, "warning": 2}


class ConservationError(RuntimeError):
    """Rows in != rows staged + rows quarantined for a batch (the transaction is rolled back)."""


class ValidationCrash(RuntimeError):
    """A critical or row expectation raised instead of evaluating (a suite or code bug)."""


# ------------------------------------------------------------------ Great Expectations context
def validation_context(settings: Settings) -> Any:
    """The unit's GX file context under `settings.gx_root / "gx"`, with one Data Docs site writing
    to `settings.outputs_dir / DOCS_SUBDIR`, progress bars off and the pandas datasource added."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    settings.gx_root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(settings.gx_root))
    docs_dir = str((settings.outputs_dir / DOCS_SUBDIR).resolve())
    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": docs_dir},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    sites = dict(context.config.data_docs_sites or {})
    changed = False
    for name in list(sites):
        if name != SITE_NAME:
            context.delete_data_docs_site(name)
            changed = True
    current = sites.get(SITE_NAME)
    if current is None:
        context.add_data_docs_site(SITE_NAME, site)
        changed = True
    elif current.get("store_backend", {}).get("base_directory") != docs_dir:
        context.update_data_docs_site(SITE_NAME, site)
        changed = True
    bars = context.variables.progress_bars
    if isinstance(bars, dict):  # as read back from a moved or copied project's config file
        bars = ProgressBarsConfig(**bars)
    if bars is None or bars.globally or bars.metric_calculations:
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        changed = True
    if changed:
        context.variables.save()
    try:
        context.data_sources.get(DATASOURCE)
    except (KeyError, ValueError, LookupError):
        context.data_sources.add_pandas(DATASOURCE)
    return context


def batch_definition_for(context: Any, suite_name: str) -> Any:
    source = context.data_sources.get(DATASOURCE)
    try:
        asset = source.get_asset(suite_name)
    except LookupError:
        asset = source.add_dataframe_asset(name=suite_name)
    try:
        return asset.get_batch_definition("whole_file")
    except KeyError:
        return asset.add_batch_definition_whole_dataframe("whole_file")


def gx_suite(context: Any, suite_dict: dict) -> Any:
    import great_expectations as gx

    suite = gx.ExpectationSuite(**json.loads(json.dumps(suite_dict)))
    return context.suites.add_or_update(suite)


def _check_conservation(context: Any, counts: dict[str, int]) -> dict:
    """Run the committed `conservation` suite on one row of a batch's counts (GX, so the check
    is an expectation with its own version and result); returns success, suite@version and the
    rules that failed."""
    suite_dict = load_named_suite("conservation")
    batch = batch_definition_for(context, suite_dict["name"]).get_batch(
        batch_parameters={"dataframe": pd.DataFrame([counts])}
    )
    result = batch.validate(gx_suite(context, suite_dict))
    failed = [
        (r.expectation_config.meta or {}).get("rule", r.expectation_config.type)
        for r in result.results
        if not r.success
    ]
    return {
        "suite": f"conservation@{suite_dict['meta']['version']}",
        "success": bool(result.success),
        "evaluated": len(result.results),
        "failed": failed,
    }


# ------------------------------------------------------------------ reading a batch
def _received_columns(header: str | None, kind: str) -> list[str]:
    """The columns as received (the header), or the contract's when ingest recorded none."""
    if header is None:
        return list(contract.columns_for(kind))
    cols = [c.strip().strip('"').strip() for c in header.split(",")]
    return [c for c in cols if c]


def _read_batch(con: Any, load_id: str, kind: str, received: list[str]) -> pd.DataFrame:
    """The batch as received: the header's columns only (unknown ones all empty), text,
    empty strings as None, indexed by row_number."""
    known = set(contract.columns_for(kind))
    select = ", ".join(
        f'NULLIF("{c}", \'\') AS "{c}"' for c in contract.columns_for(kind) if c in received
    )
    sql = f"SELECT row_number{', ' + select if select else ''} FROM raw.{kind} "
    frame = con.execute(sql + "WHERE load_id = ? ORDER BY row_number", [load_id]).df()
    frame = frame.set_index("row_number")
    frame.index.name = None
    for c in received:
        if c not in known:
            frame[c] = None
    frame = frame[received] if received else frame.iloc[:, :0]
    return frame.astype(object)


def _people_load_for(con: Any, agency: str, extract_date: Any) -> str | None:
    """The agency's latest validated attributes load (not batch-quarantined) at or before an
    events load's extract date: the records an events batch may refer to."""
    row = con.execute(
        """
        SELECT l.load_id FROM raw.loads l
        JOIN audit.validations v ON v.load_id = l.load_id
        WHERE l.agency = ? AND l.kind = 'attributes' AND l.status = 'loaded'
          AND v.outcome <> 'batch_quarantined'
          AND (? IS NULL OR l.extract_date IS NULL OR l.extract_date <= ?)
        ORDER BY l.extract_date DESC NULLS LAST, l.loaded_at DESC, l.load_id DESC
        LIMIT 1
        """,
        [agency, extract_date, extract_date],
    ).fetchone()
    return row[0] if row else None


# ------------------------------------------------------------------ reasons
def _previous_batch(con: Any, load: dict) -> dict | None:
    """The agency's latest earlier batch of the same kind that was validated and not quarantined
    whole (rows, extract date): the baseline for the volume and freshness rules."""
    rows = con.execute(
        """
        SELECT l.n_rows, CAST(l.extract_date AS VARCHAR) FROM raw.loads l
        JOIN audit.validations v ON v.load_id = l.load_id
        WHERE l.agency = ? AND l.kind = ? AND l.load_id <> ?
          AND v.outcome <> 'batch_quarantined'
          AND l.loaded_at <= (SELECT loaded_at FROM raw.loads WHERE load_id = ?)
        ORDER BY l.extract_date DESC NULLS LAST, l.loaded_at DESC, l.load_id DESC
        LIMIT 1
        """,
        [load["agency"], load["kind"], load["load_id"], load["load_id"]],
    ).fetchall()
    if not rows:
        return None
    return {"rows": int(rows[0][0]), "extract_date": rows[0][1]}


def _show(values: pd.Series, column: str) -> pd.Series:
    """What a reason says of a column named in a rule's `show`: whether it was empty, never the
    value itself (reasons never quote a received value)."""
    return values.isna().map({True: f"{column} empty", False: f"{column} given"})


def row_reasons(
    frame: pd.DataFrame, failures: list[tuple[dict, str, list]], file_name: str
) -> pd.DataFrame:
    """One row per quarantined row: row_number, rules ('; '-joined tags), reason (readable)."""
    parts = []
    for order, (meta, tag, index) in enumerate(failures):
        idx = pd.Index(index)
        text = pd.Series(meta["rule"], index=idx)
        shows = [c for c in meta.get("show", []) if c in frame.columns]
        if shows:
            detail = _show(frame.loc[idx, shows[0]], shows[0])
            for c in shows[1:]:
                detail = detail + ", " + _show(frame.loc[idx, c], c)
            text = text + " (" + detail + ")"
        text = text + " [" + tag + "]"
        parts.append(pd.DataFrame({"row_number": idx, "order": order, "tag": tag, "text": text}))
    allparts = pd.concat(parts, ignore_index=True).sort_values(["row_number", "order"])
    grouped = allparts.groupby("row_number", sort=True)
    out = pd.DataFrame(
        {
            "rules": grouped["tag"].agg("; ".join),
            "text": grouped["text"].agg("; ".join),
        }
    ).reset_index()
    out["reason"] = file_name + " row " + out["row_number"].astype(str) + ": " + out["text"]
    return out[["row_number", "rules", "reason"]]


def critical_reason(file_name: str, kind: str, received: list[str], meta: dict, result: Any) -> str:
    etype = result.expectation_config.type
    if etype == "expect_table_columns_to_match_set":
        expected = list(contract.columns_for(kind))
        missing = [c for c in expected if c not in received]
        extra = [c for c in received if c not in expected]
        bits = []
        if missing:
            bits.append("missing column(s) " + ", ".join(missing))
        if extra:
            bits.append("unexpected column(s) " + ", ".join(extra))
        detail = "; ".join(bits) or "column set differs"
        return f"{file_name}: {meta['rule']}: {detail}"
    if etype == "expect_table_row_count_to_be_between":
        return f"{file_name}: {meta['rule']}: the file has no data rows"
    count = (result.result or {}).get("unexpected_count")
    rows = f" on {count} row(s)" if count else ""
    # never a received value: the agency finds the rows by number in its own extract
    return f"{file_name}: {meta['rule']}: failed{rows}"


# ------------------------------------------------------------------ results without values
def _tag(config: Any) -> str:
    column = config.kwargs.get("column")
    return f"{config.type}:{column}" if column else config.type


def result_summary(result: Any) -> dict:
    config = result.expectation_config
    meta = config.meta or {}
    res = result.result or {}
    return {
        "expectation_type": config.type,
        "column": config.kwargs.get("column"),
        "rule": meta.get("rule"),
        "severity": meta.get("severity"),
        "success": bool(result.success),
        "unexpected_count": res.get("unexpected_count"),
    }


def scrub(suite_result: Any) -> None:
    """Remove every value taken from the data (unexpected lists, index lists, queries,
    partial counts, tracebacks) so the stored result and Data Docs hold counts only."""
    for result in suite_result.results:
        res = result.result or {}
        keep = {k: v for k, v in res.items() if k in _SAFE_RESULT_KEYS}
        if result.expectation_config.type in _OBSERVED_OK and "observed_value" in res:
            keep["observed_value"] = res["observed_value"]
        if (
            "details" in res
            and result.expectation_config.type == "expect_table_columns_to_match_set"
        ):
            keep["details"] = res["details"]
        result.result = keep
        info = result.exception_info or {}
        if info.get("raised_exception"):
            result.exception_info = {
                "raised_exception": True,
                "exception_message": "expectation could not be evaluated (see the batch's "
                "critical failures in audit.validations)",
                "exception_traceback": None,
            }


def raised_instead(result: Any) -> bool:
    info = result.exception_info or {}
    if "raised_exception" in info:
        return bool(info.get("raised_exception"))
    return any(isinstance(v, dict) and v.get("raised_exception") for v in info.values())


# ------------------------------------------------------------------ one batch
@dataclass
class BatchCheck:
    """One batch run through the current committed suite, nothing written yet (validate, and
    `warehouse.release` when it re-validates quarantined rows)."""

    suite: dict
    version: str
    received: list[str]
    checked: pd.DataFrame  # the batch as received plus the derived check columns
    result: Any  # the GX suite validation result (result_format COMPLETE)
    critical: list[tuple[dict, Any]]
    row_failures: list[tuple[dict, str, list]]
    warnings: list[str]
    people_load: str | None
    read_seconds: float
    gx_seconds: float


def evaluate_load(con: Any, context: Any, load: dict) -> BatchCheck:
    """Read the load's batch, derive the check columns and run its suite with GX (no writes)."""
    started = time.perf_counter()
    load_id, agency, kind = load["load_id"], load["agency"], load["kind"]
    file_name = load["file_name"]
    suite_dict = load_suite(agency, kind)
    declared = tuple(suite_dict["meta"].get("derived_columns", ()))
    if declared != DERIVED_COLUMNS[kind]:
        raise ValueError(f"suite {suite_dict['name']}: meta.derived_columns differ from checks.py")
    version = str(suite_dict["meta"]["version"])
    received = _received_columns(load["header"], kind)
    frame = _read_batch(con, load_id, kind, received)
    file_extract = load["extract_date"].isoformat() if load["extract_date"] else None

    people_load = None
    people_tokens: list[str] = []
    if kind == "events":
        people_load = _people_load_for(con, agency, load["extract_date"])
        if people_load is not None:
            people_tokens = [
                r[0]
                for r in con.execute(
                    "SELECT DISTINCT record_token FROM staging.attributes WHERE load_id = ?",
                    [people_load],
                ).fetchall()
            ]
    previous = _previous_batch(con, load)
    scrubbed = {
        r[0]
        for r in con.execute(
            "SELECT DISTINCT row_number FROM quarantine.scrubbed WHERE load_id = ?", [load_id]
        ).fetchall()
    }
    derived = derive(frame, agency, kind, file_extract, people_tokens, previous, scrubbed)
    checked = pd.concat([frame, derived], axis=1)
    read_seconds = time.perf_counter() - started

    batch_definition = batch_definition_for(context, suite_dict["name"])
    suite = gx_suite(context, suite_dict)
    batch = batch_definition.get_batch(batch_parameters={"dataframe": checked})
    gx_started = time.perf_counter()
    suite_result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
    gx_seconds = time.perf_counter() - gx_started

    critical, row_failures, warnings, crashed = [], [], [], []
    for result in suite_result.results:
        config = result.expectation_config
        meta = config.meta or {}
        severity = meta.get("severity", "row")
        if result.success:
            continue
        if severity == "critical":
            critical.append((meta, result))
        elif severity == "warning":
            warnings.append(_tag(config))
        elif raised_instead(result):
            crashed.append(_tag(config))
        else:
            index = list((result.result or {}).get("unexpected_index_list") or [])
            row_failures.append((meta, _tag(config), index))
    if crashed and not critical:
        raise ValidationCrash(f"{file_name} ({load_id}): expectations raised: {', '.join(crashed)}")
    return BatchCheck(
        suite_dict, version, received, checked, suite_result, critical, row_failures, warnings,
        people_load, read_seconds, gx_seconds,
    )  # fmt: skip


def conserve(con: Any, context: Any, load: dict, n_read: int) -> dict:
    """Count the load's rows in raw, staging and quarantine and run the `conservation` suite on
    them: raises ConservationError (the caller's transaction rolls back) when they do not add up."""
    load_id, kind, file_name = load["load_id"], load["kind"], load["file_name"]
    n_staged = con.execute(
        f"SELECT count(*) FROM staging.{kind} WHERE load_id = ?", [load_id]
    ).fetchone()[0]
    n_quarantined = con.execute(
        "SELECT count(*) FROM quarantine.rows WHERE load_id = ?", [load_id]
    ).fetchone()[0]
    n_raw = con.execute(f"SELECT count(*) FROM raw.{kind} WHERE load_id = ?", [load_id]).fetchone()[
        0
    ]
    purged = con.execute(
        "SELECT coalesce(sum(n_rows), 0) FROM rights.purged_rows WHERE load_id = ?", [load_id]
    ).fetchone()[0]
    conservation = _check_conservation(
        context,
        {
            "rows_in": n_raw,
            "rows_staged_plus_quarantined": n_staged + n_quarantined,
            "rows_read": n_read,
            # rows an opt-out removed from the load (warehouse.rights) left it lawfully
            "rows_in_load_record": int(load["n_rows"]) - purged,
        },
    )
    if not conservation["success"]:
        raise ConservationError(
            f"{file_name} ({load_id}): rows in {n_raw} (read {n_read}, recorded "
            f"{load['n_rows']}) != staged {n_staged} + quarantined {n_quarantined} "
            f"(failed: {', '.join(conservation['failed'])})"
        )
    return {"rows_in": n_raw, "staged": n_staged, "quarantined": n_quarantined, **conservation}


def _validate_load(con: Any, context: Any, load: dict, run_by: str) -> tuple[dict, Any]:
    started = time.perf_counter()
    load_id, agency, kind = load["load_id"], load["agency"], load["kind"]
    file_name = load["file_name"]
    check = evaluate_load(con, context, load)
    suite_dict, version, received = check.suite, check.version, check.received
    checked, suite_result, critical = check.checked, check.result, check.critical
    row_failures, warnings, people_load = check.row_failures, check.warnings, check.people_load
    read_seconds, gx_seconds = check.read_seconds, check.gx_seconds

    summaries = [result_summary(r) for r in suite_result.results]
    n_rows = len(checked)
    now = datetime.now()
    with transaction(con, "validate.before_commit"):
        if critical:
            outcome = "batch_quarantined"
            reasons = [critical_reason(file_name, kind, received, m, r) for m, r in critical]
            rules = "; ".join(_tag(r.expectation_config) for _, r in critical)
            batch_reason = " | ".join(reasons)
            stored = _ingest_copy(load)
            con.execute(
                "INSERT INTO quarantine.files (file_hash, load_id, file_name, agency, kind, reason,"
                " stored_path, quarantined_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (file_hash) DO NOTHING",
                [load["file_hash"], load_id, file_name, agency, kind, batch_reason, stored, now],
            )
            con.execute(
                f"INSERT INTO quarantine.rows (load_id, row_number, agency, kind, rules, reason, "
                f"quarantined_at) SELECT load_id, row_number, ?, ?, ?, "
                f"? || ' row ' || CAST(row_number AS VARCHAR) || ': batch quarantined: ' || ?, ? "
                f"FROM raw.{kind} WHERE load_id = ?",
                [agency, kind, rules, file_name, batch_reason, now, load_id],
            )
            failed_rules = {
                _tag(r.expectation_config): r.result.get("unexpected_count") for _, r in critical
            }
        else:
            outcome = "passed"
            failed_rules = {}
            if row_failures:
                outcome = "rows_quarantined"
                failed_rules = {tag: len(index) for _, tag, index in row_failures}
                quarantined = row_reasons(checked, row_failures, file_name)
                quarantined["load_id"] = load_id
                quarantined["agency"] = agency
                quarantined["kind"] = kind
                quarantined["quarantined_at"] = now
                con.register("quarantined_rows", quarantined)
                con.execute(
                    "INSERT INTO quarantine.rows (load_id, row_number, agency, kind, rules, reason,"
                    " quarantined_at) SELECT load_id, row_number, agency, kind, rules, reason, "
                    "quarantined_at FROM quarantined_rows"
                )
                con.unregister("quarantined_rows")
            elif warnings:
                outcome = "warnings"
            stage_rows(con, load_id, kind)
        counted = conserve(con, context, load, n_rows)
        n_raw, n_staged = counted["rows_in"], counted["staged"]
        n_quarantined = counted["quarantined"]
        conservation = {k: counted[k] for k in ("suite", "success", "evaluated", "failed")}
        stats = suite_result.statistics or {}
        statistics = {
            "evaluated_expectations": stats.get("evaluated_expectations"),
            "successful_expectations": stats.get("successful_expectations"),
            "unsuccessful_expectations": stats.get("unsuccessful_expectations"),
            "success_percent": stats.get("success_percent"),
            "rows_in": n_raw,
            "rows_in_load_record": load["n_rows"],
            "rows_staged": n_staged,
            "rows_quarantined": n_quarantined,
            "conservation_ok": True,
            "conservation_expectations": conservation,
            "failed_rules": failed_rules,
            "warnings": warnings,
            "received_columns": received,
            "people_load_for_integrity": people_load,
            "seconds_read_and_derive": round(read_seconds, 3),
            "seconds_gx": round(gx_seconds, 3),
            "seconds_total": round(time.perf_counter() - started, 3),
        }
        record_validation(
            con,
            target=load_id,
            load_id=load_id,
            suite_name=suite_dict["name"],
            suite_version=version,
            success=bool(suite_result.success),
            outcome=outcome,
            n_rows=n_raw,
            n_staged=n_staged,
            n_quarantined=n_quarantined,
            statistics=statistics,
            results=summaries,
            validated_at=now,
            validated_by=run_by,
        )
    figures = {
        "load_id": load_id,
        "file": file_name,
        "suite": f"{suite_dict['name']}@{version}",
        "outcome": outcome,
        "rows": n_raw,
        "staged": n_staged,
        "quarantined": n_quarantined,
        "seconds": statistics["seconds_total"],
    }
    if critical:
        figures["reason"] = batch_reason
    return figures, suite_result


def _ingest_copy(load: dict) -> str | None:
    """Ingest keeps a copy of a file whose header differs; point at it when it exists."""
    path = load.get("quarantine_copy")
    return str(path) if path and Path(path).exists() else None


def record_validation(
    con: Any,
    *,
    target: str,
    suite_name: str,
    suite_version: str,
    success: bool,
    outcome: str,
    n_rows: int,
    statistics: dict,
    results: list,
    validated_at: datetime,
    validated_by: str,
    load_id: str | None = None,
    n_staged: int | None = None,
    n_quarantined: int | None = None,
) -> None:
    """One row of the append-only `audit.validations`: every suite run on an agency batch
    (validate), a release (warehouse.release) or a derived table (expectations.downstream)."""
    con.execute(
        "INSERT INTO audit.validations (validation_id, load_id, target, suite_name, "
        "suite_version, success, outcome, n_rows, n_staged, n_quarantined, statistics, "
        "results, validated_at, validated_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            uuid.uuid4().hex,
            load_id,
            target,
            suite_name,
            suite_version,
            success,
            outcome,
            n_rows,
            n_staged,
            n_quarantined,
            json.dumps(statistics, default=str),
            json.dumps(results, default=str),
            validated_at,
            validated_by,
        ],
    )


def stage_rows(con: Any, load_id: str, kind: str, skip_staged: bool = False) -> None:
    """Type every raw row of the load that is not quarantined into staging (`skip_staged`: and
    not staged already, for `warehouse.release`)."""
    cols = list(contract.columns_for(kind))
    typed = []
    for c in cols:
        if c == "extract_date":
            typed.append(f"CAST(NULLIF(r.{c}, '') AS DATE)")
        elif c == "event_month":
            typed.append(f"CAST(NULLIF(r.{c}, '') || '-01' AS DATE)")
        elif c == "value":
            typed.append(f"CAST(NULLIF(r.{c}, '') AS DOUBLE)")
        elif c == "birth_year":
            typed.append(f"CAST(NULLIF(r.{c}, '') AS INTEGER)")
        else:
            typed.append(f"NULLIF(r.{c}, '')")
    staged = ["event_date" if c == "event_month" else c for c in cols]
    con.execute(
        f"INSERT INTO staging.{kind} (load_id, row_number, {', '.join(staged)}) "
        f"SELECT r.load_id, r.row_number, {', '.join(typed)} FROM raw.{kind} r "
        f"WHERE r.load_id = ? AND NOT EXISTS (SELECT 1 FROM quarantine.rows q "
        f"WHERE q.load_id = r.load_id AND q.row_number = r.row_number) "
        + (
            f"AND NOT EXISTS (SELECT 1 FROM staging.{kind} s WHERE s.load_id = r.load_id "
            "AND s.row_number = r.row_number) "
            if skip_staged
            else ""
        )
        + "ORDER BY r.row_number",
        [load_id],
    )


def store_for_docs(context: Any, suite_result: Any, load_id: str, suite_name: str) -> Any:
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    scrub(suite_result)
    run_id = RunIdentifier(run_name=load_id, run_time=datetime.now(UTC))
    suite_result.meta["run_id"] = run_id
    suite_result.meta["validation_time"] = run_id.run_time
    suite_result.meta["batch_parameters"] = {"dataframe": f"raw batch {load_id}"}
    key = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite_name),
        run_id=run_id,
        batch_identifier=load_id,
    )
    context.validation_results_store.store_validation_results(
        suite_validation_result=suite_result, suite_validation_result_identifier=key
    )
    return key


# ------------------------------------------------------------------ the stage
#: the `raw.loads` columns a batch is validated with (the release path reads the same ones)
LOAD_COLUMNS: tuple[str, ...] = (
    "load_id",
    "agency",
    "kind",
    "file_name",
    "file_hash",
    "n_rows",
    "header",
    "extract_date",
)


def _pending(con: Any) -> list[dict]:
    rows = con.execute(
        f"""
        SELECT {", ".join(LOAD_COLUMNS)}
        FROM raw.loads l
        WHERE status = 'loaded'
          AND NOT EXISTS (SELECT 1 FROM audit.validations v WHERE v.load_id = l.load_id)
        ORDER BY CASE kind WHEN 'events' THEN 1 ELSE 0 END, extract_date NULLS LAST,
                 loaded_at, load_id
        """
    ).fetchall()
    return [dict(zip(LOAD_COLUMNS, r, strict=True)) for r in rows]


def run(settings: Settings) -> dict:
    """Validate every raw load of the unit not yet validated (people and attributes before
    events). Returns figures:
    batches validated, rows staged/quarantined, batches quarantined, per-load outcomes and the
    Data Docs index path."""
    started = time.perf_counter()
    run_by = os.environ.get("USER") or "pipeline"
    docs_index = settings.outputs_dir / DOCS_SUBDIR / "index.html"
    with connect(settings) as con:
        pending = _pending(con)
        loads: list[dict] = []
        if pending or not docs_index.exists():
            context = validation_context(settings)
            for load in pending:
                load["quarantine_copy"] = (
                    settings.quarantine_dir / load["file_hash"][:16] / load["file_name"]
                )
                figures, suite_result = _validate_load(con, context, load, run_by)
                store_for_docs(
                    context, suite_result, load["load_id"], f"{load['agency']}_{load['kind']}"
                )
                loads.append(figures)
                if len(loads) == 1:
                    faults.checkpoint("validate.after_first_batch")
            context.build_data_docs(site_names=[SITE_NAME])
    return {
        "batches_validated": len(loads),
        "rows_validated": sum(x["rows"] for x in loads),
        "rows_staged": sum(x["staged"] for x in loads),
        "rows_quarantined": sum(x["quarantined"] for x in loads),
        "batches_quarantined": sum(x["outcome"] == "batch_quarantined" for x in loads),
        "loads": loads,
        "data_docs": str(docs_index),
        "seconds": round(time.perf_counter() - started, 3),
    }
