"""Great Expectations checks on the tables the pipeline derives: linked, features, scores, forecasts.

Each derived table has a committed suite (`expectations/suites/<suite>.json`, versioned like the
agency suites) and a `Target` here that reads the table into a pandas frame with only the columns
the suite needs plus derived check columns computed in DuckDB (referential integrity, lineage,
privacy rules).  Suites use GX *expectation parameters* (`{"$PARAMETER": name}`) for figures known
only at run time: row counts of the upstream layer (conservation across stages) and the previous
accepted run's distribution (drift).

The stage that writes a table calls `checked_transaction(con, settings, [table], checkpoint)`
instead of `warehouse.db.transaction`: the suites run after the writes and before COMMIT, so

- a failed **critical** expectation rolls the stage's writes back (readers keep the previous,
  valid table) and raises `DownstreamCheckFailed` naming the table and rules; the outcome is still
  recorded in `audit.validations` (in its own transaction, after the rollback);
- failed **warning** expectations (distribution drift, implausible rates) are recorded only;
- the audit row (target = table name, suite and version, outcome, statistics) is written inside
  the stage's transaction when it commits.

Results are scrubbed of values (`expectations.validate.scrub`) except aggregate statistics of
non-identifying numeric columns, stored in the GX results store, and built into Data Docs by the
publish stage (`build_docs`).

Owns: `Target`, `TARGETS`, `check`, `checked_transaction`, `build_docs`, `DownstreamCheckFailed`.
Imports `joinedup`, `warehouse.db` and `expectations.validate`/`checks`; GX lazily.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from expectations.checks import load_named_suite
from joinedup.config import Settings
from warehouse.db import transaction

#: a drift bound: the new run's statistic may be this factor below or above the previous run's
DRIFT_FACTOR = 1.5
#: aggregate expectations whose observed value is a statistic and may be kept in results
_AGGREGATES = frozenset(
    {
        "expect_table_row_count_to_equal",
        "expect_table_row_count_to_be_between",
        "expect_column_mean_to_be_between",
        "expect_column_median_to_be_between",
        "expect_column_max_to_be_between",
        "expect_column_min_to_be_between",
        "expect_column_sum_to_be_between",
        "expect_column_quantile_values_to_be_between",
        "expect_column_kl_divergence_to_be_less_than",
        "expect_column_proportion_of_unique_values_to_be_between",
    }
)
#: columns whose values identify someone: no aggregate over them is ever kept
_IDENTIFYING = frozenset({"child_id", "record_token", "event_token", "source_loads", "load_id"})


class DownstreamCheckFailed(RuntimeError):
    """A critical expectation failed on a derived table; the stage's writes were rolled back."""

    def __init__(self, table: str, rules: list[str]):
        self.table, self.rules = table, rules
        super().__init__(
            f"{table}: critical expectation(s) failed, the table was not replaced: "
            + "; ".join(rules)
        )


@dataclass(frozen=True)
class Target:
    """A derived table, its suite, how to read it for checking, and its run-time parameters."""

    table: str
    suite: str
    frame: Callable[[Any, Settings], pd.DataFrame]
    parameters: Callable[[Any, Settings, dict | None], dict]
    #: statistics of this run kept in audit.validations, the next run's drift baseline
    baseline: Callable[[pd.DataFrame], dict]


def _count(con: Any, sql: str, params: list | None = None) -> int:
    return int(con.execute(sql, params or []).fetchall()[0][0])


# ------------------------------------------------------------------ linked.records
def _record_kind(settings: Settings) -> str:
    """The staged table a unit's linked.records rows trace to: the linkage unit's people
    encodings, the hub's attributes."""
    return "people" if settings.unit == "linkage" else "attributes"


def _records_frame(con: Any, settings: Settings) -> pd.DataFrame:
    return con.execute(
        "SELECT r.agency, r.record_token, r.child_id, r.match_probability_max, "
        "(p.load_id IS NOT NULL) AS traced_to_staged_row "
        f"FROM linked.records r LEFT JOIN staging.{_record_kind(settings)} p "
        "ON p.load_id = r.load_id AND p.row_number = r.row_number"
    ).df()


def _records_parameters(con: Any, settings: Settings, previous: dict | None) -> dict:
    if settings.unit == "linkage":
        return {"people_records": _count(con, "SELECT count(*) FROM staging.current_people")}
    # the hub: every current attributes record the linkage unit gave a child
    return {
        "people_records": _count(
            con,
            "SELECT count(*) FROM staging.current_attributes a "
            "JOIN linked.mapping m USING (agency, record_token)",
        )
    }


# ------------------------------------------------------------------ linked.children
def _children_frame(con: Any, settings: Settings) -> pd.DataFrame:
    return con.execute(
        "SELECT child_id, sex, imd_decile, n_records, (n_records = 1)::INTEGER AS singleton "
        "FROM linked.children"
    ).df()


def _children_parameters(con: Any, settings: Settings, previous: dict | None) -> dict:
    mean = (previous or {}).get("mean_records_per_child")
    return {
        "linked_records": _count(con, "SELECT count(*) FROM linked.records"),
        "records_per_child_low": 0.8 * mean if mean else 1.0,
        "records_per_child_high": 1.25 * mean if mean else 20.0,
    }


def _children_baseline(frame: pd.DataFrame) -> dict:
    return {"mean_records_per_child": float(frame["n_records"].mean()) if len(frame) else None}


# ------------------------------------------------------------------ linked.events
def _events_frame(con: Any, settings: Settings) -> pd.DataFrame:
    return con.execute(
        "SELECT child_id, agency, event_token, event_date, "
        "(load_id IS NOT NULL AND row_number IS NOT NULL) AS traced_to_load "
        "FROM linked.events"
    ).df()


def _events_parameters(con: Any, settings: Settings, previous: dict | None) -> dict:
    return {"current_events": _count(con, "SELECT count(*) FROM staging.current_events")}


# ------------------------------------------------------------------ features.child_month
def _features_frame(con: Any, settings: Settings) -> pd.DataFrame:
    return con.execute(
        "SELECT f.child_id, f.as_of, f.label, f.age_years, f.imd_decile, f.attendance_latest, "
        "f.n_events_used, f.n_domestic_abuse_12m, f.n_ae_injury_12m, f.n_contact_12m, "
        "(f.label IS NULL) = (f.as_of = ?) AS label_only_where_observable, "
        "(f.n_events_used = 0 OR f.source_loads IS NOT NULL) AS traced_to_loads, "
        "(c.child_id IS NOT NULL) AS child_in_linked "
        "FROM features.child_month f LEFT JOIN linked.children c USING (child_id)",
        [pd.Timestamp(settings.extract_date).date()],
    ).df()


def _features_parameters(con: Any, settings: Settings, previous: dict | None) -> dict:
    rate = (previous or {}).get("label_rate")
    return {
        "label_rate_low": 0.5 * rate if rate else 0.0005,
        "label_rate_high": 2.0 * rate if rate else 0.1,
    }


def _features_baseline(frame: pd.DataFrame) -> dict:
    labels = frame["label"].dropna()
    return {"label_rate": float(labels.mean()) if len(labels) else None}


# ------------------------------------------------------------------ scores.current
def _scores_frame(con: Any, settings: Settings) -> pd.DataFrame:
    return con.execute(
        "SELECT s.child_id, s.score, s.rank, s.model_version, "
        "coalesce(json_type(s.reasons) = 'OBJECT', false) AS has_reasons, "
        "(c.child_id IS NOT NULL) AS child_in_linked, "
        "(f.child_id IS NOT NULL) AS features_row_exists, "
        "(f.n_events_used = 0 OR s.source_loads IS NOT NULL) AS traced_to_loads "
        "FROM scores.current s LEFT JOIN linked.children c USING (child_id) "
        "LEFT JOIN features.child_month f ON f.child_id = s.child_id AND f.as_of = s.as_of"
    ).df()


def _scores_parameters(con: Any, settings: Settings, previous: dict | None) -> dict:
    prev = previous or {}
    out = {
        "scored_children": _count(
            con,
            "SELECT count(*) FROM features.child_month WHERE as_of = ?",
            [pd.Timestamp(settings.extract_date).date()],
        )
    }
    for stat in ("mean", "median"):
        value = prev.get(f"score_{stat}")
        # first run: nothing to compare with, so the bounds are the whole [0, 1]
        out[f"score_{stat}_low"] = value / DRIFT_FACTOR if value else 0.0
        out[f"score_{stat}_high"] = value * DRIFT_FACTOR if value else 1.0
    return out


def _scores_baseline(frame: pd.DataFrame) -> dict:
    if not len(frame):
        return {}
    return {
        "score_mean": float(frame["score"].mean()),
        "score_median": float(frame["score"].median()),
    }


# ------------------------------------------------------------------ scores.forecast
def _forecast_frame(con: Any, settings: Settings) -> pd.DataFrame:
    cells = con.execute(
        "SELECT level, ward_code, age_band, expected, lower, upper, observed_last_12m, "
        "suppressed, expected_cost FROM scores.forecast"
    ).df()
    t = settings.small_number_threshold
    blank = cells[["expected", "lower", "upper", "observed_last_12m", "expected_cost"]].isna()
    shown = ~cells["suppressed"].astype(bool)
    obs = cells["observed_last_12m"]
    # expected is null in every cell when no scores were published (withheld, not small)
    withheld = cells["expected"].isna().all()
    exp_ok = cells["expected"].isna() if withheld else cells["expected"] >= t
    cells["suppressed_cell_is_blank"] = ~shown & blank.all(axis=1) | shown
    cells["shown_cell_not_small"] = ~shown | (((obs == 0) | (obs >= t)) & exp_ok)
    cells["interval_ordered"] = ~shown | (
        (cells["lower"] <= cells["expected"]) & (cells["expected"] <= cells["upper"])
    )
    if withheld:
        cells["interval_ordered"] = ~shown | blank[["lower", "upper", "expected_cost"]].all(axis=1)
    cells["not_recoverable_by_subtraction"] = _secondary_ok(cells)
    return cells


def _secondary_ok(cells: pd.DataFrame) -> pd.Series:
    """False on the members of any additive group (`models.forecast.additive_groups`) that has
    exactly one suppressed member, which could be recovered by subtraction."""
    from models.forecast import additive_groups

    suppressed = cells["suppressed"].astype(bool).to_numpy()
    ok = np.ones(len(cells), dtype=bool)
    for g in additive_groups(cells):
        if len(g) > 1 and suppressed[g].sum() == 1:
            ok[g] = False
    return pd.Series(ok, index=cells.index)


# ------------------------------------------------------------------ scores.forecast_monthly
def _monthly_frame(con: Any, settings: Settings) -> pd.DataFrame:
    """One row per forecast row, with the checks: intervals nested and ordered around the mean,
    no negative count, 12 months per (view, outcome, level, age band), and the age bands' means
    adding up to the county's (top-down reconciled, bottom-up by construction)."""
    f = con.execute(
        "SELECT view, outcome, level, age_band, month, horizon, mean, lower_80, upper_80, "
        "lower_95, upper_95 FROM scores.forecast_monthly"
    ).df()
    # nested, and the mean within a count of the 95% interval: a count interval holds whole
    # numbers, so for a small count it may end below the mean (mean 0.04, 95% interval 0 to 0)
    f["interval_ordered"] = (
        (f["lower_95"] <= f["lower_80"] + 1e-9)
        & (f["lower_80"] <= f["upper_80"] + 1e-9)
        & (f["upper_80"] <= f["upper_95"] + 1e-9)
        & (f["lower_95"] <= f["mean"] + 1e-9)
        & (f["mean"] <= f["upper_95"] + 1)
    )
    f["lowest"] = f[["mean", "lower_80", "lower_95"]].min(axis=1)
    keys = ["view", "outcome", "level", f["age_band"].fillna("")]
    f["months_in_series"] = f.groupby(keys)["horizon"].transform("nunique")
    bands = f[f["level"] == "age_band"].groupby(["view", "outcome", "horizon"])["mean"].sum()
    total = f[f["level"] == "total"].set_index(["view", "outcome", "horizon"])["mean"]
    diff = (total - bands.reindex(total.index)).abs()
    ok = (diff <= 0.01 + 0.001 * total) | bands.reindex(total.index).isna()
    idx = pd.MultiIndex.from_frame(f[["view", "outcome", "horizon"]])
    f["bands_add_up_to_total"] = ok.reindex(idx).fillna(True).to_numpy()
    return f


# ------------------------------------------------------------------ scores.forecast_backtest
def _backtest_frame(con: Any, settings: Settings) -> pd.DataFrame:
    f = con.execute(
        "SELECT view, outcome, horizon, forecasts, mae, mase, coverage_80 "
        "FROM scores.forecast_backtest"
    ).df()
    f["horizons"] = f.groupby(["view", "outcome"])["horizon"].transform("nunique")
    return f


def _forecast_parameters(con: Any, settings: Settings, previous: dict | None) -> dict:
    return {}


def _no_baseline(frame: pd.DataFrame) -> dict:
    return {}


TARGETS: dict[str, Target] = {
    t.table: t
    for t in (
        Target(
            "linked.records", "linked_records", _records_frame, _records_parameters, _no_baseline
        ),
        Target(
            "linked.children",
            "linked_children",
            _children_frame,
            _children_parameters,
            _children_baseline,
        ),
        Target("linked.events", "linked_events", _events_frame, _events_parameters, _no_baseline),
        Target(
            "features.child_month",
            "features",
            _features_frame,
            _features_parameters,
            _features_baseline,
        ),
        Target("scores.current", "scores", _scores_frame, _scores_parameters, _scores_baseline),
        Target("scores.forecast", "forecasts", _forecast_frame, _forecast_parameters, _no_baseline),
        Target(
            "scores.forecast_monthly",
            "forecasts_monthly",
            _monthly_frame,
            _forecast_parameters,
            _no_baseline,
        ),
        Target(
            "scores.forecast_backtest",
            "forecasts_backtest",
            _backtest_frame,
            _forecast_parameters,
            _no_baseline,
        ),
    )
}

# ------------------------------------------------------------------ running the suites
_CONTEXTS: dict[str, Any] = {}


def _context(settings: Settings) -> Any:
    """The project's GX file context, opened once per process and home."""
    from expectations.validate import validation_context

    key = str(settings.gx_root)
    if key not in _CONTEXTS:
        _CONTEXTS[key] = validation_context(settings)
    return _CONTEXTS[key]


def _previous_baseline(con: Any, table: str) -> dict | None:
    rows = con.execute(
        "SELECT statistics FROM audit.validations WHERE target = ? AND load_id IS NULL "
        "AND outcome IN ('passed', 'warnings') ORDER BY validated_at DESC LIMIT 1",
        [table],
    ).fetchall()
    if not rows or rows[0][0] is None:
        return None
    stats = json.loads(rows[0][0]) if isinstance(rows[0][0], str) else rows[0][0]
    return stats.get("baseline") or None


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as plain Python values (for JSON)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _keep_aggregates(suite_result: Any) -> dict[int, Any]:
    """Observed statistics of aggregate expectations on non-identifying columns, by position."""
    kept: dict[int, Any] = {}
    for i, result in enumerate(suite_result.results):
        config = result.expectation_config
        if config.type in _AGGREGATES and config.kwargs.get("column") not in _IDENTIFYING:
            observed = (result.result or {}).get("observed_value")
            if observed is not None:
                kept[i] = json.loads(json.dumps(observed, default=_plain))
    return kept


def _resolve_for_docs(suite_result: Any, parameters: dict) -> None:
    """Write the run-time parameter values into each result's expectation kwargs (Data Docs then
    shows the bounds actually used, and can render them) and make every success a plain bool."""
    for result in suite_result.results:
        result.success = bool(result.success)
        kwargs = result.expectation_config.kwargs
        for key, value in list(kwargs.items()):
            if isinstance(value, dict) and set(value) == {"$PARAMETER"}:
                kwargs[key] = parameters.get(value["$PARAMETER"])
    suite_result.success = bool(suite_result.success)


def check(
    con: Any,
    settings: Settings,
    table: str,
    run_by: str | None = None,
    target: Target | None = None,
) -> dict:
    """Run `table`'s suite on the table as it stands in `con` (typically inside the writing
    transaction).  Returns the outcome; writes nothing.  `record` stores it.  `target` checks a
    `Target` not in `TARGETS` (the published read models, `warehouse.read_models.checks`)."""
    from expectations.validate import (
        batch_definition_for,
        gx_suite,
        raised_instead,
        result_summary,
        scrub,
    )

    started = time.perf_counter()
    target = target or TARGETS[table]
    suite_dict = load_named_suite(target.suite)
    previous = _previous_baseline(con, table)
    frame = target.frame(con, settings)
    parameters = target.parameters(con, settings, previous)
    opened = time.perf_counter()
    context = _context(settings)
    startup = time.perf_counter() - opened
    batch = batch_definition_for(context, suite_dict["name"]).get_batch(
        batch_parameters={"dataframe": frame}
    )
    suite_result = batch.validate(
        gx_suite(context, suite_dict),
        result_format={"result_format": "SUMMARY"},
        expectation_parameters=parameters,
    )
    critical, warnings = [], []
    for result in suite_result.results:
        meta = result.expectation_config.meta or {}
        if result.success:
            continue
        rule = meta.get("rule") or result.expectation_config.type
        if raised_instead(result):
            rule += " (could not be evaluated)"
        (warnings if meta.get("severity") == "warning" else critical).append(rule)
    observed = _keep_aggregates(suite_result)
    summaries = [result_summary(r) for r in suite_result.results]
    for i, value in observed.items():
        summaries[i]["observed_value"] = value
    scrub(suite_result)
    for i, value in observed.items():
        suite_result.results[i].result["observed_value"] = value
    _resolve_for_docs(suite_result, parameters)
    outcome = "failed" if critical else "warnings" if warnings else "passed"
    return {
        "table": table,
        "suite_name": suite_dict["name"],
        "suite_version": str(suite_dict["meta"]["version"]),
        "outcome": outcome,
        "success": not critical,
        "critical": critical,
        "warnings": warnings,
        "n_rows": int(len(frame)),
        "statistics": {
            "evaluated_expectations": len(suite_result.results),
            "failed_expectations": len(critical) + len(warnings),
            "parameters": {k: v for k, v in parameters.items() if not isinstance(v, dict)},
            "baseline_from_previous_run": previous is not None,
            "baseline": target.baseline(frame),
            # the check itself, and GX's import + context start-up (first check in a process)
            "seconds": round(time.perf_counter() - started - startup, 3),
            "seconds_gx_startup": round(startup, 3),
        },
        "results": summaries,
        "run_by": run_by
        or os.environ.get("JOINEDUP_RUN_BY")
        or os.environ.get("USER")
        or "pipeline",
        "_suite_result": suite_result,
    }


def record(con: Any, settings: Settings, outcome: dict) -> None:
    """Store one outcome in `audit.validations` and the GX results store (for Data Docs)."""
    from expectations.validate import record_validation, store_for_docs

    record_validation(
        con,
        target=outcome["table"],
        suite_name=outcome["suite_name"],
        suite_version=outcome["suite_version"],
        success=outcome["success"],
        outcome=outcome["outcome"],
        n_rows=outcome["n_rows"],
        statistics=outcome["statistics"],
        results=outcome["results"],
        validated_at=datetime.now(),
        validated_by=outcome["run_by"],
    )
    suite_result = outcome.get("_suite_result")
    if suite_result is not None:
        batch_id = f"{outcome['table']} {datetime.now(UTC):%Y%m%dT%H%M%S%f}"
        store_for_docs(_context(settings), suite_result, batch_id, outcome["suite_name"])


def public(outcome: dict) -> dict:
    """The figures a stage returns about its checks (no GX objects)."""
    return {
        "suite": f"{outcome['suite_name']}@{outcome['suite_version']}",
        "outcome": outcome["outcome"],
        "warnings": outcome["warnings"],
    }


@contextmanager
def checked_transaction(
    con: Any, settings: Settings | None, tables: list[str], checkpoint: str | None = None
) -> Iterator[dict[str, dict]]:
    """`with checked_transaction(con, settings, ["features.child_month"], "features.before_commit")
    as checks:` -- the stage's writes, then each table's suite, then COMMIT.  A critical failure
    rolls everything back, records the outcome and raises `DownstreamCheckFailed`.  `checks` is
    filled with each table's public outcome after the block.  Without `settings` (a scratch
    table, a test) it is a plain `transaction` and checks nothing."""
    checks: dict[str, dict] = {}
    if settings is None:
        tables = []
    failed: dict | None = None
    try:
        with transaction(con, checkpoint):
            yield checks
            for table in tables:
                outcome = check(con, settings, table)
                if not outcome["success"]:
                    failed = outcome
                    raise DownstreamCheckFailed(table, outcome["critical"])
                record(con, settings, outcome)
                checks[table] = public(outcome)
    except DownstreamCheckFailed:
        if failed is not None:
            with transaction(con):
                record(con, settings, failed)
        raise


def latest_check(con: Any, table: str) -> dict:
    """The latest recorded outcome for `table` (suite@version, outcome, warnings), or {}."""
    rows = con.execute(
        "SELECT suite_name, suite_version, outcome, results FROM audit.validations "
        "WHERE target = ? AND load_id IS NULL ORDER BY validated_at DESC LIMIT 1",
        [table],
    ).fetchall()
    if not rows:
        return {}
    name, version, outcome, results = rows[0]
    results = json.loads(results) if isinstance(results, str) else results or []
    warnings = [r.get("rule") for r in results if not r.get("success")]
    return {"suite": f"{name}@{version}", "outcome": outcome, "warnings": warnings}


def build_docs(settings: Settings) -> str:
    """Rebuild the Data Docs site (agency batches and derived tables); returns the index path."""
    from expectations.validate import DOCS_SUBDIR, SITE_NAME

    _context(settings).build_data_docs(site_names=[SITE_NAME])
    return str(settings.outputs_dir / DOCS_SUBDIR / "index.html")
