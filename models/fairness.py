"""Fairness audit of the risk model on the held-out test period, by sex, ethnicity and
deprivation quintile.

Owns the group labels of each test row (`group_labels`: sex from the features, ethnicity from
`linked.children`, deprivation quintile from the features' IMD decile with the same bands as the
linkage quality report) and the audit (`audit`).  For every group with at least `MIN_CHILDREN`
children in the test period: rows, children, positives, prevalence, ROC AUC, average precision,
Brier score, calibration (observed rate vs mean predicted, their difference and ratio, ECE and
the table by predicted decile within the group), and at capacity -- children flagged by the
top-k per as-of month over ALL children, the same flags the model would raise, not a quota per
group -- the flag rate, true / false positive and false negative rates, precision among the
flagged and the ratio of flag rate to prevalence; and the FNR the model's own probabilities imply
(`expected_fnr`: the share of the group's expected positives left unflagged) with the excess of
the observed FNR over it (`fnr_excess`), which is ~0 in every group for calibrated scores whatever
the group's base rate.  Every figure has a 95% CI from the same
child-level bootstrap weights as the overall test metrics (`models.evaluation.bootstrap_weights`).
Groups with fewer children are listed as too few to report, never dropped silently.  Gaps:
max - min of each figure across the reported groups, with the groups at each end and a
bootstrap CI (the max - min of noisy estimates is biased upwards; read it with the CI).

Imports `models.train` (metrics machinery) and, lazily, `linkage.evaluate` (deprivation bands).
"""

from __future__ import annotations

import math
import warnings

import duckdb
import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    precision_score,
    recall_score,
    roc_auc_score,
)

from models.evaluation import calibration, ci95, top_k_flags, weighted_ap, weighted_auc

DIMENSIONS: tuple[str, ...] = ("sex", "ethnicity", "deprivation")
#: groups with fewer children in the test period are listed as too few to report
MIN_CHILDREN = 50
ETHNICITY_LABELS = {
    "WHITE": "White",
    "MIXED": "Mixed",
    "ASIAN": "Asian",
    "BLACK": "Black",
    "OTHER": "Other",
    "UNK": "not recorded",
}
#: per-group figures whose gap (max - min across reported groups) is reported
GAP_FIGURES: tuple[str, ...] = (
    "prevalence",
    "roc_auc",
    "average_precision",
    "brier",
    "calibration_difference",
    "observed_to_expected",
    "ece",
    "flag_rate",
    "tpr",
    "fpr",
    "fnr",
    "expected_fnr",
    "fnr_excess",
    "precision_flagged",
    "flag_to_prevalence",
)


def ethnicity_by_child(con) -> pd.Series:
    """Ethnicity code per child_id from linked.children (empty when there is none)."""
    try:
        eth = con.execute("SELECT child_id, ethnicity FROM linked.children").df()
    except duckdb.Error:  # no linked.children: ethnicity not known
        return pd.Series(dtype=str)
    eth = eth.drop_duplicates("child_id")
    return pd.Series(eth["ethnicity"].to_numpy(), index=eth["child_id"].to_numpy(), dtype=object)


def group_labels(con, rows: pd.DataFrame) -> pd.DataFrame:
    """Sex, ethnicity and deprivation band of each row of `rows(child_id, sex_female,
    sex_unknown, imd_decile)` (same order and length)."""
    from linkage.evaluate import deprivation_band

    sex = np.where(
        rows["sex_unknown"].to_numpy() == 1,
        "not recorded",
        np.where(rows["sex_female"].to_numpy() == 1, "female", "male"),
    )
    eth = ethnicity_by_child(con).rename("ethnicity").rename_axis("child_id").reset_index()
    e = rows[["child_id"]].merge(eth, on="child_id", how="left")["ethnicity"]
    e = e.fillna("UNK").replace("", "UNK").astype(str)
    return pd.DataFrame(
        {
            "sex": sex,
            "ethnicity": e.map(lambda v: ETHNICITY_LABELS.get(v, v)).to_numpy(),
            "deprivation": deprivation_band(rows["imd_decile"]).to_numpy(),
        }
    )


def _r(x, digits: int = 5):
    """Rounded float, or None for a figure that is not defined (NaN, inf)."""
    if x is None:
        return None
    x = float(x)
    return round(x, digits) if math.isfinite(x) else None


def group_figures(
    y: np.ndarray, p: np.ndarray, flag: np.ndarray, W: np.ndarray
) -> tuple[dict, dict[str, np.ndarray]]:
    """Figures for one group's rows (point values with sklearn, CIs from the bootstrap weight
    columns of W) and the per-replicate values used for the gap CIs."""
    y = y.astype(np.int8)
    flag = flag.astype(np.int8)
    yf, pf, ff = y.astype(np.float32), p.astype(np.float32), flag.astype(np.float32)
    n, pos = len(y), int(y.sum())
    tn, fp, fn, tp = confusion_matrix(y, flag, labels=[0, 1]).ravel()
    point = {
        "prevalence": y.mean(),
        "mean_predicted": p.mean(),
        "roc_auc": roc_auc_score(y, p) if 0 < pos < n else None,
        "average_precision": average_precision_score(y, p) if pos else None,
        "brier": brier_score_loss(y, p, labels=[0, 1]),
        "flag_rate": flag.mean(),
        "tpr": recall_score(y, flag, zero_division=np.nan),
        "fpr": fp / (fp + tn) if fp + tn else None,
        "fnr": fn / (fn + tp) if fn + tp else None,
        "precision_flagged": precision_score(y, flag, zero_division=np.nan),
    }
    point["calibration_difference"] = point["prevalence"] - point["mean_predicted"]
    # the share of the group's positives the model's own probabilities say it leaves unflagged,
    # and how many more it actually misses: ~0 in every group for calibrated scores, whatever
    # the group's base rate (the FNR itself is not: see `fnr_excess` in docs/risk-model.md)
    point["expected_fnr"] = float(p[flag == 0].sum() / p.sum()) if p.sum() > 0 else None
    point["fnr_excess"] = (
        point["fnr"] - point["expected_fnr"]
        if point["fnr"] is not None and point["expected_fnr"] is not None
        else None
    )
    point["observed_to_expected"] = point["prevalence"] / point["mean_predicted"]
    point["flag_to_prevalence"] = point["flag_rate"] / point["prevalence"] if pos else None
    table, ece, ece_reps = calibration(y, p, W)
    point["ece"] = ece

    den = W.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rep = {
            "prevalence": (yf @ W) / den,
            "mean_predicted": (pf @ W) / den,
            "brier": (((pf - yf) ** 2) @ W) / den,
            "flag_rate": (ff @ W) / den,
            "ece": ece_reps,
        }
        tp_w, fp_w = (ff * yf) @ W, (ff * (1 - yf)) @ W
        rep["tpr"] = tp_w / (yf @ W)
        rep["fnr"] = 1 - rep["tpr"]
        rep["fpr"] = fp_w / ((1 - yf) @ W)
        rep["precision_flagged"] = tp_w / (ff @ W)
        rep["calibration_difference"] = rep["prevalence"] - rep["mean_predicted"]
        rep["expected_fnr"] = ((pf * (1 - ff)) @ W) / (pf @ W)
        rep["fnr_excess"] = rep["fnr"] - rep["expected_fnr"]
        rep["observed_to_expected"] = rep["prevalence"] / rep["mean_predicted"]
        rep["flag_to_prevalence"] = rep["flag_rate"] / rep["prevalence"]
        if point["roc_auc"] is not None:
            rep["roc_auc"] = weighted_auc(y, p, W)
        if point["average_precision"] is not None:
            rep["average_precision"] = weighted_ap(y, p, W)

    figures: dict = {"rows": n, "positives": pos, "flagged": int(flag.sum())}
    for k, v in point.items():
        figures[k] = _r(v, 6 if k in ("brier", "ece") else 5)
        if k in rep and figures[k] is not None:
            figures[f"{k}_ci"] = ci95(rep[k])
    figures["calibration_deciles"] = table
    return figures, rep


def _gap(groups: list[dict], reps: dict[str, dict], figure: str) -> dict:
    vals = [(g["group"], g[figure]) for g in groups if g.get(figure) is not None]
    if len(vals) < 2:
        return {"gap": None, "groups_compared": len(vals)}
    hi = max(vals, key=lambda v: v[1])
    lo = min(vals, key=lambda v: v[1])
    R = np.vstack([reps[name][figure] for name, _ in vals])
    with warnings.catch_warnings():  # replicates where every group's figure is undefined
        warnings.simplefilter("ignore", RuntimeWarning)
        gap_reps = np.nanmax(R, axis=0) - np.nanmin(R, axis=0)
    return {
        "gap": round(hi[1] - lo[1], 5),
        "gap_ci": ci95(gap_reps),
        "highest": hi[0],
        "lowest": lo[0],
        "groups_compared": len(vals),
    }


def audit(
    y: np.ndarray,
    p: np.ndarray,
    months: np.ndarray,
    child: np.ndarray,
    groups: pd.DataFrame,
    capacity: int,
    weights: np.ndarray,
    min_children: int = MIN_CHILDREN,
    summary_only: bool = False,
) -> dict:
    """The fairness audit of test rows (y, p, as-of month, child) grouped by each column of
    `groups`; `weights` = `models.evaluation.bootstrap_weights(child, ...)` for the same rows.
    `summary_only` leaves out each group's calibration table (for the oracle's audit, kept only
    for its gaps)."""
    flag = top_k_flags(p, months, capacity)
    out: dict = {
        "population": "test-period child-months",
        "min_children": min_children,
        "capacity_per_month": int(capacity),
        "flag_rule": f"top {capacity} scores per as-of month over all children (not per group)",
        "rows": int(len(y)),
        "children": int(len(pd.unique(child))),
        "dimensions": {},
    }
    for dim in groups.columns:
        labels = groups[dim].astype(str).to_numpy()
        reported, too_few, reps = [], [], {}
        for g in sorted(pd.unique(labels)):
            idx = np.flatnonzero(labels == g)
            n_children = int(len(pd.unique(child[idx])))
            if n_children < min_children:
                too_few.append(
                    {
                        "group": g,
                        "children": f"fewer than {min_children}",
                        "reason": "too few to report",
                    }
                )
                continue
            figures, rep = group_figures(y[idx], p[idx], flag[idx], weights[idx])
            if summary_only:
                figures.pop("calibration_deciles", None)
            reported.append({"group": g, "children": n_children, **figures})
            reps[g] = rep
        if dim != "deprivation":  # deprivation bands stay in order, most deprived first
            reported.sort(key=lambda r: (-r["children"], r["group"]))
        out["dimensions"][dim] = {
            "groups": reported,
            "too_few_to_report": too_few,
            "gaps": {f: _gap(reported, reps, f) for f in GAP_FIGURES},
        }
    return out
