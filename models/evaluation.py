"""Evaluating a fitted risk model on the held-out test rows: ROC AUC, average precision,
Brier, log loss, calibration by predicted decile and ECE, precision and recall at capacity, each
with child-level bootstrap 95% CIs (`bootstrap_weights`: one set of replicates shared with the
fairness audit), and the comparison with the synthetic oracle's probabilities when given.

Pure functions of arrays; imported by `models.train` and `models.fairness` (which used to import
them from `models.train`, a circle through the model card).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score


def _group_sums(y: np.ndarray, s: np.ndarray, W: np.ndarray, descending: bool):
    """Sort by score, group tied scores; return per-group weighted positives and negatives."""
    order = np.argsort(-s if descending else s, kind="mergesort")
    ss = s[order]
    starts = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]])
    Wo = W[order]
    pos = Wo * y[order].astype(W.dtype)[:, None]
    if len(starts) < len(ss):  # tied scores: one group per distinct score
        pos = np.add.reduceat(pos, starts, axis=0)
        Wo = np.add.reduceat(Wo, starts, axis=0)
    # bootstrap weights are whole counts, so the subtraction is exact in float32
    return pos, Wo - pos


def weighted_auc(y: np.ndarray, s: np.ndarray, W: np.ndarray) -> np.ndarray:
    """ROC AUC for each weight column of W (ties count one half)."""
    pos, neg = _group_sums(y, s, W, descending=False)
    neg_before = np.cumsum(neg, axis=0) - neg
    num = (pos * (neg_before + 0.5 * neg)).sum(axis=0)
    return num / (pos.sum(axis=0) * neg.sum(axis=0))


def weighted_ap(y: np.ndarray, s: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Average precision (sklearn's definition) for each weight column of W."""
    pos, neg = _group_sums(y, s, W, descending=True)
    tp, fp = np.cumsum(pos, axis=0), np.cumsum(neg, axis=0)
    prec = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    return (pos * prec).sum(axis=0) / pos.sum(axis=0)


def decile_bins(p: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Bin index 0..n_bins-1 by predicted-probability quantile (ties kept together)."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)[1:-1]))
    return np.searchsorted(edges, p, side="right")


def top_k_flags(p: np.ndarray, months: np.ndarray, k: int) -> np.ndarray:
    """1 for the k highest scores within each as-of month."""
    df = pd.DataFrame({"p": p, "m": months})
    rank = df.groupby("m")["p"].rank(method="first", ascending=False)
    return (rank <= k).to_numpy()


def bootstrap_weights(child: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Row weights (rows x n_boot, float32): each column resamples children with replacement."""
    codes, uniq = pd.factorize(child)
    nc = len(uniq)
    rng = np.random.default_rng(seed)
    C = np.empty((nc, n_boot), dtype=np.float32)
    for b in range(n_boot):
        C[:, b] = np.bincount(rng.integers(0, nc, nc), minlength=nc)
    return C[codes]


def ci95(values: np.ndarray) -> list[float]:
    v = values[np.isfinite(values)]
    return [round(float(x), 5) for x in np.percentile(v, [2.5, 97.5])] if len(v) else [None, None]


def calibration(
    y: np.ndarray, p: np.ndarray, W: np.ndarray
) -> tuple[list[dict], float, np.ndarray]:
    """Calibration by predicted decile: the table (observed rate vs mean predicted per bin), the
    expected calibration error (bin-size-weighted mean |observed - predicted|) and the ECE for
    each bootstrap weight column of W."""
    # bins numbered consecutively over the non-empty ones (interpolated quantile edges can
    # leave a bin empty when many scores tie)
    _, bins = np.unique(decile_bins(p), return_inverse=True)
    n_bins = int(bins.max()) + 1
    B = np.zeros((len(p), n_bins), dtype=np.float32)
    B[np.arange(len(p)), bins] = 1.0
    yf, pf = y.astype(np.float32), p.astype(np.float32)
    n_b = B.sum(axis=0)
    obs = (B.T @ yf) / n_b
    pred = (B.T @ pf) / n_b
    ece = round(float((n_b / n_b.sum() * np.abs(obs - pred)).sum()), 6)
    BW = B.T @ W  # bins x reps
    obs_b = ((B * yf[:, None]).T @ W) / np.maximum(BW, 1e-9)
    pred_b = ((B * pf[:, None]).T @ W) / np.maximum(BW, 1e-9)
    ece_reps = (BW / BW.sum(axis=0) * np.abs(obs_b - pred_b)).sum(axis=0)
    dev_b = obs_b - pred_b  # bins x reps: observed - predicted in each resample
    table = [
        {
            "bin": int(i),
            "n": int(n_b[i]),
            "positives": int(round(float(B[:, i] @ yf))),
            "mean_predicted": round(float(pred[i]), 5),
            "observed_rate": round(float(obs[i]), 5),
            "deviation": round(float(obs[i] - pred[i]), 5),
            "deviation_ci": ci95(dev_b[i]),
        }
        for i in range(n_bins)
    ]
    return table, ece, ece_reps


#: the issue's calibration target: observed within 2 percentage points of predicted in every bin
CALIBRATION_TOLERANCE = 0.02


def calibration_summary(table: list[dict], tolerance: float = CALIBRATION_TOLERANCE) -> dict:
    """The largest |observed - predicted| over the calibration bins, the bin it is in, and whether
    every bin is within `tolerance` (point estimate) -- with the bins whose 95% CI of the deviation
    does not even include a value within tolerance (those are clearly outside, not just noisy)."""
    if not table:
        return {"max_abs_deviation": None, "within_tolerance": None}
    worst = max(table, key=lambda c: abs(c["deviation"]))
    clearly_out = [
        c["bin"]
        for c in table
        if None not in (c.get("deviation_ci") or [None])
        and (c["deviation_ci"][0] > tolerance or c["deviation_ci"][1] < -tolerance)
    ]
    return {
        "tolerance": tolerance,
        "bins": len(table),
        "max_abs_deviation": round(abs(worst["deviation"]), 5),
        "max_abs_deviation_bin": worst["bin"],
        "within_tolerance": all(abs(c["deviation"]) <= tolerance for c in table),
        "bins_clearly_outside": clearly_out,
    }


def evaluate(
    y: np.ndarray,
    p: np.ndarray,
    months: np.ndarray,
    child: np.ndarray,
    capacity: int,
    n_boot: int = 200,
    seed: int = 0,
    oracle: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    observable: np.ndarray | None = None,
) -> dict:
    """Test-period figures with child-level bootstrap 95% CIs.  `oracle` (optional, same rows,
    NaN where unknown) adds the latent oracle's AUC on the rows it covers and ours/oracle;
    `observable` (the observable oracle, same rows) its AUC and the gap to ours.  `weights`
    (optional) are precomputed `bootstrap_weights(child, n_boot, seed)`, shared with the
    fairness audit so that both use the same replicates."""
    y = y.astype(np.int8)
    W = bootstrap_weights(child, n_boot, seed) if weights is None else weights
    flag = top_k_flags(p, months, capacity).astype(np.float32)
    yf = y.astype(np.float32)

    out: dict = {"rows": int(len(y)), "positives": int(y.sum()), "children": int(len(set(child)))}
    out["roc_auc"] = round(float(roc_auc_score(y, p)), 5)
    out["roc_auc_ci"] = ci95(weighted_auc(y, p, W))
    out["average_precision"] = round(float(average_precision_score(y, p)), 5)
    out["average_precision_ci"] = ci95(weighted_ap(y, p, W))
    out["prevalence"] = round(float(y.mean()), 5)
    out["brier"] = round(float(brier_score_loss(y, p)), 6)
    sq = ((p - y) ** 2).astype(np.float32)
    out["brier_ci"] = ci95((sq @ W) / W.sum(axis=0))
    out["log_loss"] = round(float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6))), 5)

    table, ece, ece_reps = calibration(y, p, W)
    out["calibration_deciles"] = table
    out["calibration"] = calibration_summary(table)
    out["ece"] = ece
    out["ece_ci"] = ci95(ece_reps)

    # precision and recall at capacity (top `capacity` per as-of month)
    hits = flag * yf
    out["capacity_per_month"] = int(capacity)
    out["flagged"] = int(flag.sum())
    out["precision_at_capacity"] = round(float(hits.sum() / flag.sum()), 5)
    out["recall_at_capacity"] = round(float(hits.sum() / max(yf.sum(), 1)), 5)
    out["precision_at_capacity_ci"] = ci95((hits @ W) / (flag @ W))
    out["recall_at_capacity_ci"] = ci95((hits @ W) / (yf @ W))

    if oracle is not None:
        ok = np.isfinite(oracle)
        out["oracle_coverage"] = round(float(ok.mean()), 5)
        if ok.sum() and 0 < y[ok].sum() < ok.sum():
            Wo = W[ok]
            ours = weighted_auc(y[ok], p[ok], Wo)
            orc = weighted_auc(y[ok], oracle[ok], Wo)
            out["oracle_roc_auc"] = round(float(roc_auc_score(y[ok], oracle[ok])), 5)
            out["oracle_roc_auc_ci"] = ci95(orc)
            out["roc_auc_same_rows"] = round(float(roc_auc_score(y[ok], p[ok])), 5)
            out["auc_ratio_to_oracle"] = round(out["roc_auc_same_rows"] / out["oracle_roc_auc"], 5)
            out["auc_ratio_to_oracle_ci"] = ci95(ours / orc)
            out["oracle_average_precision"] = round(
                float(average_precision_score(y[ok], oracle[ok])), 5
            )
            oflag = top_k_flags(oracle[ok], months[ok], capacity)
            out["oracle_precision_at_capacity"] = round(float(y[ok][oflag].mean()), 5)
    if observable is not None:
        out.update(_observable(y, p, observable, W))
    return out


def _observable(y: np.ndarray, p: np.ndarray, obs: np.ndarray, W: np.ndarray) -> dict:
    """The observable oracle beside the model on the rows it covers: its AUC and AP, ours on
    the same rows, and the gap (observable - ours) with its child-bootstrap CI."""
    ok = np.isfinite(obs)
    out: dict = {"observable_oracle_coverage": round(float(ok.mean()), 5)}
    if not (ok.sum() and 0 < y[ok].sum() < ok.sum()):
        return out
    Wo = W[ok]
    theirs = roc_auc_score(y[ok], obs[ok])
    ours = roc_auc_score(y[ok], p[ok])
    out["observable_oracle_roc_auc"] = round(float(theirs), 5)
    out["observable_oracle_roc_auc_ci"] = ci95(weighted_auc(y[ok], obs[ok], Wo))
    out["observable_oracle_average_precision"] = round(
        float(average_precision_score(y[ok], obs[ok])), 5
    )
    out["roc_auc_same_rows_as_observable"] = round(float(ours), 5)
    out["auc_gap_to_observable_oracle"] = round(float(theirs - ours), 5)
    out["auc_gap_to_observable_oracle_ci"] = ci95(
        weighted_auc(y[ok], obs[ok], Wo) - weighted_auc(y[ok], p[ok], Wo)
    )
    return out
