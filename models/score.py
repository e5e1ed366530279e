"""Scoring: the current registered model applied to every child at the extract-date as-of, with
plain-English reasons, written to `scores.current(child_id, as_of, score, rank, model_version,
reasons JSON)`.

Owns the reason method (`contributions`, `reasons_for`) and the factor wording (`FACTORS`).
Reasons are faithful to the model: for the logistic model a factor's contribution is the sum of
coefficient x standardised value over its features (exact decomposition of the log-odds about the
training mean); for gradient boosting and the blend of both kinds it is the change in the
model's log-odds when the factor's features are set to their training medians (a simple, faithful one-at-a-time method; factors can
interact, so contributions need not add up to the score).  A score is a prompt for professional
judgement, never a decision.

Refuses (ModelMismatchError) a model whose feature list differs from the features table, or
whose file does not match its recorded sha256.  Imports `joinedup`, `warehouse`, `models.*`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from expectations.downstream import checked_transaction
from joinedup.config import Settings
from models.features import EVENT_GROUPS, MONTHS_SINCE_CAP, WINDOWS, feature_columns
from models.fitting import logit
from models.registry import NoPromotedModelError, load_current
from warehouse.db import connect, transaction

TOP_REASONS = 3
#: contributions smaller than this (log-odds) are not worth stating
MIN_CONTRIBUTION = 0.01


class ModelMismatchError(RuntimeError):
    """The registered model cannot be applied to the current features table."""


def _factors() -> dict[str, list[str]]:
    f: dict[str, list[str]] = {}
    for g in EVENT_GROUPS:
        f[g.name] = [f"n_{g.name}_{w}m" for w in WINDOWS]
        f[g.name] += [f"n_{g.name}_ever", f"months_since_{g.name}"]
    f["attendance"] = [
        "attendance_latest",
        "attendance_trend",
        "attendance_mean_24m",
        "has_attendance",
    ]
    f["fsm"] = ["fsm"]
    f["sen"] = ["sen_support", "ehcp"]
    f["school_moves"] = ["school_moves_12m"]
    f["age"] = ["age_years", "age_under_1", "age_under_5", "age_16_plus"]
    f["sex"] = ["sex_female", "sex_unknown"]
    f["deprivation"] = ["imd_decile"]
    f["agencies"] = ["n_agencies"]
    return f


#: factor -> the feature columns it groups (every feature belongs to exactly one factor)
FACTORS: dict[str, list[str]] = _factors()
_GROUPS = {g.name: g for g in EVENT_GROUPS}


def _num(x: float) -> int:
    return int(round(float(x)))


def describe(factor: str, row: Mapping[str, Any]) -> str:
    """Plain-English statement of a factor's values for one child."""
    if factor in _GROUPS:
        g = _GROUPS[factor]
        for w in WINDOWS:
            n = _num(row[f"n_{g.name}_{w}m"])
            if n > 0:
                return f"{n} {g.noun if n == 1 else g.plural} in the last {w} months"
        since = _num(row[f"months_since_{g.name}"])
        ever = row.get(f"n_{g.name}_ever")
        if since < MONTHS_SINCE_CAP:
            extra = f" ({_num(ever)} in all)" if ever is not None and _num(ever) > 1 else ""
            return f"last {g.noun} {since} months ago{extra}"
        return f"no {g.plural} recorded"
    if factor == "attendance":
        if not row["has_attendance"] or pd.isna(row["attendance_latest"]):
            return "no school attendance recorded in the last 12 months"
        text = f"school attendance {row['attendance_latest']:.0f}% last term"
        trend = row["attendance_trend"]
        if pd.notna(trend) and abs(trend) >= 1:
            text += f", {'down' if trend < 0 else 'up'} {abs(trend):.0f} points on the term before"
        return text
    if factor == "fsm":
        return (
            "eligible for free school meals"
            if row["fsm"]
            else "not recorded as eligible for free school meals"
        )
    if factor == "sen":
        if row["ehcp"]:
            return "has an education, health and care plan"
        if row["sen_support"]:
            return "receives special educational needs support"
        return "no special educational needs recorded"
    if factor == "school_moves":
        n = _num(row["school_moves_12m"])
        if n == 0:
            return "no school moves in the last 12 months"
        return f"{n} school move{'s' if n > 1 else ''} in the last 12 months"
    if factor == "age":
        years = int(row["age_years"])
        return "aged under 1" if years < 1 else f"aged {years}"
    if factor == "sex":
        if row["sex_unknown"]:
            return "sex not recorded"
        return "female" if row["sex_female"] else "male"
    if factor == "deprivation":
        if pd.isna(row["imd_decile"]):
            return "area deprivation not known"
        return (
            f"lives in an area of deprivation decile {int(row['imd_decile'])} (1 = most deprived)"
        )
    if factor == "agencies":
        n = _num(row["n_agencies"])
        return f"known to {n} agenc{'y' if n == 1 else 'ies'}"
    raise KeyError(factor)


def contributions(bundle: dict, X: np.ndarray) -> pd.DataFrame:
    """Per-child, per-factor contribution to the (uncalibrated) log-odds; columns = FACTORS."""
    features = bundle["features"]
    base = bundle["base"]
    idx = {f: i for i, f in enumerate(features)}
    out = {}
    if bundle["kind"] == "logistic":
        Z = base[:-1].transform(X)
        C = Z * base[-1].coef_[0]
        for factor, cols in FACTORS.items():
            out[factor] = C[:, [idx[c] for c in cols]].sum(axis=1)
    else:
        f0 = logit(base.predict_proba(X)[:, 1])
        ref = bundle["reference"]
        for factor, cols in FACTORS.items():
            positions = [idx[c] for c in cols]
            values = np.array([ref[c] for c in cols], dtype=np.float64)
            # a child whose factor features already equal the reference contributes exactly 0;
            # only the others are re-predicted (most children have no events of most kinds)
            differs = ~(X[:, positions] == values).all(axis=1)
            contribution = np.zeros(len(X))
            if differs.any():
                Xr = X[differs].copy()
                Xr[:, positions] = values
                contribution[differs] = f0[differs] - logit(base.predict_proba(Xr)[:, 1])
            out[factor] = contribution
    return pd.DataFrame(out)


def reasons_for(contrib: pd.DataFrame, rows: pd.DataFrame, method: str) -> list[str]:
    """JSON reasons per child: the top factors raising and lowering the score."""
    values = contrib.to_numpy()
    names = np.array(contrib.columns)
    order = np.argsort(-values, axis=1)
    result = []
    # one dict per child (describe reads a handful of fields; .iloc per row was the bottleneck)
    for i, row in enumerate(rows.to_dict("records")):
        up, down = [], []
        for j in order[i, :TOP_REASONS]:
            if values[i, j] > MIN_CONTRIBUTION:
                up.append(
                    {
                        "factor": names[j],
                        "text": describe(names[j], row),
                        "contribution": round(float(values[i, j]), 3),
                    }
                )
        for j in order[i, ::-1][:TOP_REASONS]:
            if values[i, j] < -MIN_CONTRIBUTION:
                down.append(
                    {
                        "factor": names[j],
                        "text": describe(names[j], row),
                        "contribution": round(float(values[i, j]), 3),
                    }
                )
        result.append(json.dumps({"up": up, "down": down, "method": method}))
    return result


def check_model(bundle: dict, meta: dict, table_columns: list[str]) -> None:
    """Raise ModelMismatchError unless the model's features are exactly today's feature list and
    all present in the features table."""
    want = list(meta.get("features", []))
    if list(bundle.get("features", [])) != want:
        raise ModelMismatchError(
            f"model {meta.get('version')}: the pickled feature list differs from metadata.json"
        )
    current = feature_columns()
    missing = [c for c in want if c not in table_columns]
    extra = [c for c in current if c not in want]
    if want != current or missing:
        raise ModelMismatchError(
            f"model {meta.get('version')} was trained on a different feature list than "
            f"features.child_month (missing from table: {missing[:5]}, not in model: {extra[:5]}, "
            f"{len(want)} vs {len(current)} features); retrain with `joinedup train`"
        )


#: scores.current's columns, for the empty table left when scores are withheld
SCORES_SCHEMA = (
    "child_id VARCHAR, as_of DATE, score DOUBLE, rank INTEGER, model_version VARCHAR, "
    "reasons JSON, source_loads VARCHAR, features_built_at TIMESTAMP"
)


def withhold(settings: Settings, reason: str, t0: float) -> dict:
    """No model has passed the deployment gate: publish no scores (scores.current is emptied, so
    no stale or unpromoted score is shown) and say why.  The pipeline carries on."""
    with connect(settings) as con:
        with transaction(con, "score.before_commit"):
            con.execute(f"CREATE OR REPLACE TABLE scores.current ({SCORES_SCHEMA})")
    return {
        "published": False,
        "reason": reason,
        "children_scored": 0,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def run(settings: Settings, version: str | None = None, **_: object) -> dict:
    """Score every child at the extract-date as-of with the current model; write scores.current."""
    t0 = time.perf_counter()
    try:
        bundle, meta = load_current(settings, version)
    except NoPromotedModelError as e:
        return withhold(settings, str(e), t0)
    except RuntimeError as e:
        raise ModelMismatchError(str(e)) from e
    with connect(settings) as con:
        cols = [r[0] for r in con.execute("DESCRIBE features.child_month").fetchall()]
        check_model(bundle, meta, cols)
        features = bundle["features"]
        as_of = pd.Timestamp(settings.extract_date).date()
        rows = con.execute(
            f"SELECT child_id, as_of, source_loads, built_at, {', '.join(features)} "
            "FROM features.child_month "
            "WHERE as_of = ? ORDER BY child_id",
            [as_of],
        ).df()
        if rows.empty:
            raise RuntimeError(f"features.child_month has no rows at {as_of}: run features first")
        X = rows[features].to_numpy(dtype=np.float64)
        score = bundle["model"].predict_proba(X)[:, 1]
        contrib = contributions(bundle, X)
        reasons = reasons_for(contrib, rows, meta.get("reason_method", ""))
        rank = pd.Series(score).rank(method="first", ascending=False).astype("int64")
        out = pd.DataFrame(
            {
                "child_id": rows["child_id"],
                "as_of": as_of,
                "score": score,
                "rank": rank,
                "model_version": meta["version"],
                "reasons": reasons,
                "source_loads": rows["source_loads"],
                "features_built_at": rows["built_at"],
            }
        )
        con.register("scores_df", out)
        try:
            with checked_transaction(
                con, settings, ["scores.current"], "score.before_commit"
            ) as checks:
                # one definition of the columns (SCORES_SCHEMA), shared with withhold
                con.execute(f"CREATE OR REPLACE TABLE scores.current ({SCORES_SCHEMA})")
                con.execute(
                    "INSERT INTO scores.current BY NAME SELECT * FROM scores_df ORDER BY rank"
                )
        finally:
            con.unregister("scores_df")
    return {
        "published": True,
        "model_version": meta["version"],
        "as_of": str(as_of),
        "children_scored": int(len(out)),
        "expected_outcomes_12m": round(float(score.sum()), 2),
        "top_capacity_mean_score": round(
            float(np.sort(score)[::-1][: settings.capacity_per_month].mean()), 4
        ),
        "checks": checks,
        "seconds": round(time.perf_counter() - t0, 2),
    }
