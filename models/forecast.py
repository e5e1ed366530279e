"""Care-demand forecast: how many children are expected to enter a child protection plan or care
in the next 12 months, county-wide, by ward, by age band and by ward x age band, with a 90%
interval, the last 12 months' observed count beside it, and an illustrative cost.

Owns `AGE_BANDS`, `UNIT_COSTS` (illustrative, not council figures), the small-number suppression
(`suppress`: primary below `settings.small_number_threshold`, then secondary by `disclosure.protect`
so no suppressed cell can be recovered from its row/column totals) and `scores.forecast` +
`outputs_dir/forecast.json`.

Expected = the sum of calibrated scores in `scores.current`; the interval is the 5th-95th
percentile of the Poisson-binomial count by simulation, so it reflects chance given the scores,
not error in the model itself.  Reads `scores.current`, `linked.children`, `linked.events`,
`reference.wards`.  Imports `joinedup`, `warehouse`.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
from scipy import sparse

import disclosure
from disclosure import TOTAL
from disclosure.protect import FORCE
from expectations.downstream import checked_transaction
from joinedup import contract
from joinedup.config import Settings
from warehouse.db import connect

#: (label, min age, max age exclusive), age in whole years at the extract date / outcome date
AGE_BANDS: tuple[tuple[str, int, int], ...] = (
    ("0-4", 0, 5),
    ("5-9", 5, 10),
    ("10-15", 10, 16),
    ("16-17", 16, 18),
)
#: ILLUSTRATIVE annual cost per child by outcome (GBP); placeholders for planning demos, not
#: council or national figures.  Replace with local unit costs before any real use.
UNIT_COSTS: dict[str, float] = {"cp_plan_start": 12_000.0, "looked_after_start": 75_000.0}
INTERVAL = (0.05, 0.95)


def age_band_sql(age_years: str) -> str:
    """CASE expression: the age band (`AGE_BANDS`) of an age in whole years, else 'unknown'."""
    parts = " ".join(
        f"WHEN {age_years} >= {lo} AND {age_years} < {hi} THEN '{label}'"
        for label, lo, hi in AGE_BANDS
    )
    return f"CASE {parts} ELSE 'unknown' END"


def _age_band_sql(age_months: str) -> str:
    parts = " ".join(
        f"WHEN {age_months} >= {lo * 12} AND {age_months} < {hi * 12} THEN '{label}'"
        for label, lo, hi in AGE_BANDS
    )
    return f"CASE {parts} END"


def additive_groups(cells: pd.DataFrame) -> list[np.ndarray]:
    """Positions of each additive group of forecast cells (columns level, ward_code, age_band): a
    margin and the cells that sum to it (total + wards, total + age bands, each ward + its
    ward-age cells, each age band + its ward-age cells)."""
    lvl = cells["level"].to_numpy()
    idx = np.arange(len(cells))
    total = idx[lvl == "total"]
    groups = [np.r_[total, idx[lvl == "ward"]], np.r_[total, idx[lvl == "age_band"]]]
    wa = lvl == "ward_age_band"
    for w in cells.loc[lvl == "ward", "ward_code"]:
        groups.append(
            np.r_[idx[(lvl == "ward") & (cells.ward_code == w)], idx[wa & (cells.ward_code == w)]]
        )
    for a in cells.loc[lvl == "age_band", "age_band"]:
        groups.append(
            np.r_[idx[(lvl == "age_band") & (cells.age_band == a)], idx[wa & (cells.age_band == a)]]
        )
    return groups


def cells_output(
    cells: pd.DataFrame, value: str, name: str, scope: dict | None = None
) -> disclosure.Output:
    """Level cells (columns level, ward_code, age_band and the count `value`; NA where already
    suppressed) as a `disclosure.Output` keyed by ward and age band, a margin at `Total`: its
    relations are the county = its wards = its age bands, each ward = its ward x age-band cells,
    each age band likewise.  A `disclosure.protect.FORCE` column is carried over."""
    level = cells["level"]
    frame = pd.DataFrame(
        {
            "ward": cells["ward_code"].where(level.isin(["ward", "ward_age_band"]), TOTAL),
            "age_band": cells["age_band"].where(level.isin(["age_band", "ward_age_band"]), TOTAL),
            "n": pd.array(cells[value], dtype="Int64"),
        }
    ).astype({"ward": str, "age_band": str})
    if FORCE in cells.columns:
        frame[FORCE] = cells[FORCE].to_numpy(dtype=bool)
    return disclosure.Output(name, frame, ("ward", "age_band"), "n", scope=dict(scope or {}))


def suppress(cells: pd.DataFrame, threshold: int) -> pd.Series:
    """Suppression flags for the forecast cells (columns level, ward_code, age_band,
    observed_last_12m, expected).  Primary: observed 1..threshold-1, or expected < threshold (a
    NaN expected, withheld, counts as not small).  Secondary: `disclosure.protect` (the cheapest
    hidden total, found by HiGHS) over the cells' relations (`cells_output`), so no hidden cell
    can be narrowed below the threshold from the others."""
    forced = cells.assign(**{FORCE: (cells["expected"] < threshold).to_numpy()})
    out = cells_output(forced, "observed_last_12m", "forecast")
    [protected] = disclosure.protect([out], threshold, cost="value")
    return pd.Series(protected["suppressed"].to_numpy(dtype=bool), index=cells.index)


#: scores.forecast's columns
FORECAST_SCHEMA = (
    "level VARCHAR, ward_code VARCHAR, ward_name VARCHAR, age_band VARCHAR, expected DOUBLE, "
    "lower DOUBLE, upper DOUBLE, observed_last_12m INTEGER, suppressed BOOLEAN, "
    "expected_cost DOUBLE, as_of DATE, model_version VARCHAR"
)


#: why the expected counts are missing when scores.current is empty
WITHHELD_REASON = (
    "no scores were published (no model has passed the deployment gate: see `joinedup models "
    "show` for its stated reasons), so the expected counts, intervals and costs, which are sums "
    "of the scores, are withheld; the observed counts do not depend on the scores and are shown"
)


def run(settings: Settings, n_sims: int = 2000, **_: object) -> dict:
    """Aggregate scores.current into the forecast; write scores.forecast and forecast.json."""
    t0 = time.perf_counter()
    outcome = ", ".join(f"'{t}'" for t in contract.OUTCOME_EVENT_TYPES)
    with connect(settings) as con:
        kids = con.execute(
            f"""
            SELECT s.child_id, s.score, s.as_of, s.model_version,
                   coalesce(c.ward_code, 'unknown') AS ward_code,
                   {_age_band_sql("greatest(0, date_diff('month', make_date(c.birth_year, 7, 1), s.as_of))")}
                       AS age_band
            FROM scores.current s
            JOIN linked.children c USING (child_id)
            """
        ).df()
        scored = not kids.empty
        as_of = (
            pd.Timestamp(kids["as_of"].iloc[0]).date()
            if scored
            else pd.Timestamp(settings.extract_date).date()
        )
        observed = con.execute(
            f"""
            WITH first AS (
                SELECT e.child_id, min(e.event_date) AS d, arg_min(e.event_type, e.event_date) AS t
                FROM linked.events e
                WHERE e.event_type IN ({outcome})
                  AND e.event_date >= ?::DATE - INTERVAL 12 MONTH AND e.event_date < ?::DATE
                GROUP BY e.child_id
            )
            SELECT f.child_id, f.t AS outcome_type,
                   coalesce(c.ward_code, 'unknown') AS ward_code,
                   {_age_band_sql("greatest(0, date_diff('month', make_date(c.birth_year, 7, 1), f.d))")}
                       AS age_band
            FROM first f JOIN linked.children c USING (child_id)
            """,
            [as_of, as_of],
        ).df()
        wards = con.execute("SELECT ward_code, ward_name FROM reference.wards").df()

    kids["age_band"] = kids["age_band"].fillna("unknown")
    observed["age_band"] = observed["age_band"].fillna("unknown")
    ward_list = sorted(set(kids.ward_code) | set(observed.ward_code))
    band_list = [b for b, _, _ in AGE_BANDS] + (
        ["unknown"] if "unknown" in set(kids.age_band) | set(observed.age_band) else []
    )
    cell_keys = (
        [("total", None, None)]
        + [("ward", w, None) for w in ward_list]
        + [("age_band", None, a) for a in band_list]
        + [("ward_age_band", w, a) for w in ward_list for a in band_list]
    )
    cells = pd.DataFrame(cell_keys, columns=["level", "ward_code", "age_band"])

    def membership(df: pd.DataFrame) -> sparse.csr_matrix:
        n = len(df)
        w = df["ward_code"].to_numpy()
        a = df["age_band"].to_numpy()
        rows, cols = [np.zeros(n, int)], [np.arange(n)]
        for i, (level, cw, ca) in enumerate(cell_keys[1:], start=1):
            m = np.ones(n, bool)
            if level in ("ward", "ward_age_band"):
                m &= w == cw
            if level in ("age_band", "ward_age_band"):
                m &= a == ca
            hit = np.flatnonzero(m)
            rows.append(np.full(len(hit), i))
            cols.append(hit)
        r, c = np.concatenate(rows), np.concatenate(cols)
        return sparse.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(cell_keys), n))

    if scored:
        M = membership(kids)
        p = kids["score"].to_numpy(dtype=np.float64)
        cells["expected"] = M @ p
        rng = np.random.default_rng(settings.seed)
        sims = np.empty((len(cell_keys), n_sims), dtype=np.float32)
        block = 250
        for s0 in range(0, n_sims, block):
            b = min(block, n_sims - s0)
            draws = (rng.random((len(p), b)) < p[:, None]).astype(np.float32)
            sims[:, s0 : s0 + b] = M @ draws
        cells["lower"] = np.quantile(sims, INTERVAL[0], axis=1)
        cells["upper"] = np.quantile(sims, INTERVAL[1], axis=1)
    else:  # no scores: the expected side is withheld, the observed side is still published
        cells["expected"] = cells["lower"] = cells["upper"] = np.nan
    cells["observed_last_12m"] = np.asarray(membership(observed).sum(axis=1)).ravel().astype(int)

    mix = observed["outcome_type"].value_counts(normalize=True).to_dict()
    if not mix:
        mix = {t: 1 / len(UNIT_COSTS) for t in UNIT_COSTS}
    blended = sum(UNIT_COSTS[t] * mix.get(t, 0.0) for t in UNIT_COSTS)
    cells["expected_cost"] = cells["expected"] * blended

    cells["suppressed"] = suppress(cells, settings.small_number_threshold)
    for c in ("expected", "lower", "upper", "observed_last_12m", "expected_cost"):
        cells[c] = cells[c].astype("float64").where(~cells["suppressed"])
    cells["expected"] = cells["expected"].round(2)
    cells["expected_cost"] = cells["expected_cost"].round(-2)
    cells = cells.merge(wards, on="ward_code", how="left")
    cells["as_of"] = as_of
    cells["model_version"] = kids["model_version"].iloc[0] if scored else None
    cells = cells[
        [
            "level",
            "ward_code",
            "ward_name",
            "age_band",
            "expected",
            "lower",
            "upper",
            "observed_last_12m",
            "suppressed",
            "expected_cost",
            "as_of",
            "model_version",
        ]
    ]
    with connect(settings) as con:
        con.register("forecast_df", cells)
        try:
            with checked_transaction(
                con, settings, ["scores.forecast"], "forecast.before_commit"
            ) as checks:
                # one definition of the columns (FORECAST_SCHEMA)
                con.execute(f"CREATE OR REPLACE TABLE scores.forecast ({FORECAST_SCHEMA})")
                con.execute("INSERT INTO scores.forecast BY NAME SELECT * FROM forecast_df")
        finally:
            con.unregister("forecast_df")

    total = cells.iloc[0]
    doc = {
        "published": True,
        "expected_published": scored,
        "expected_withheld_reason": None if scored else WITHHELD_REASON,
        "as_of": str(as_of),
        "model_version": None if not scored else str(total["model_version"]),
        "horizon_months": 12,
        "interval": "90% (5th-95th percentile of simulated counts given the scores)",
        "notes_withheld": None
        if scored
        else "expected, lower, upper and expected_cost are "
        "null in every cell: no promoted model, no scores",
        "small_number_threshold": settings.small_number_threshold,
        "unit_costs_illustrative_gbp_per_year": UNIT_COSTS,
        "outcome_mix_last_12m": {k: round(v, 3) for k, v in mix.items()},
        "notes": "Aggregates only. Cells suppressed (null) when small, and secondarily so totals "
        "cannot reveal them. Costs are illustrative placeholders, not council figures.",
        "rows": json.loads(cells.to_json(orient="records", date_format="iso")),
    }
    settings.outputs_dir.mkdir(parents=True, exist_ok=True)
    (settings.outputs_dir / "forecast.json").write_text(json.dumps(doc, indent=2))

    def _f(x):
        return None if pd.isna(x) else round(float(x), 2)

    return {
        "published": True,
        "expected_published": scored,
        "expected_withheld_reason": None if scored else WITHHELD_REASON,
        "as_of": str(as_of),
        "children_scored": int(len(kids)),
        "expected_total": _f(total["expected"]),
        "interval_90": [_f(total["lower"]), _f(total["upper"])],
        "observed_last_12m": _f(total["observed_last_12m"]),
        "expected_cost_illustrative": _f(total["expected_cost"]),
        "cells": int(len(cells)),
        "cells_suppressed": int(cells["suppressed"].sum()),
        "checks": checks,
        "seconds": round(time.perf_counter() - t0, 2),
    }
