"""Training, calibration, evaluation and the model registry for the risk model.

Owns: the temporal split (`split_months`), the candidate models, the choice between them (on the
validation rows only: held-out children), calibration (fitted on the validation rows), the held-out test metrics
with child-level bootstrap CIs (`evaluate`), the comparison with the synthetic oracle, and the
registry under `settings.models_dir` (`<version>/model.joblib`, `metadata.json`, `metrics.json`,
the model card, and a `current` pointer file).  The version is a hash of the labelled feature
data and the training configuration, so training twice on the same features reuses the same
version.  Every trained model is registered; `current` moves to it only when it passes the
pre-registered deployment gate (`models.gate`), so `current` only ever names a promoted model,
and `load_current` refuses any other.  The fairness audit (`models.fairness`) and the gate
outcome are stored in metrics.json.

Reads `features.child_month` (and `linked.children` for ethnicity); writes only the registry
(and copies of the metrics and model card under `settings.outputs_dir`).  Imports `joinedup`,
`warehouse`, `models.features`, and lazily `models.fairness`, `models.gate`, `models.card` and
`linkage.truth` (evaluation against synthetic truth only).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from joinedup import faults
from joinedup.config import Settings
from models.features import count_columns, feature_columns
from warehouse.db import connect

MODEL_FILE = "model.joblib"
CURRENT_FILE = "current"
#: bump when training code changes in a way that should make a new version on the same data
TRAINING_CODE_VERSION = "4"
#: gradient boosting stops once the validation children's log loss has not improved for this
#: many iterations (`max_iter` is then a cap); overridable per candidate with "n_iter_no_change"
EARLY_STOPPING_ROUNDS = 25

DEFAULT_CANDIDATES: tuple[dict, ...] = (
    {"kind": "logistic", "C": 0.001},
    {"kind": "logistic", "C": 0.003},
    {"kind": "logistic", "C": 0.01},
    {"kind": "logistic", "C": 0.1},
    {
        "kind": "hgb",
        "learning_rate": 0.03,
        "max_leaf_nodes": 7,
        "max_iter": 300,
        "min_samples_leaf": 200,
        "l2_regularization": 1.0,
    },
    {
        "kind": "hgb",
        "learning_rate": 0.05,
        "max_leaf_nodes": 15,
        "max_iter": 300,
        "min_samples_leaf": 100,
        "l2_regularization": 1.0,
    },
)


class Log1pColumns(BaseEstimator, TransformerMixin):
    """log1p on the given column positions (counts); other columns pass through, order kept."""

    def __init__(self, columns: tuple[int, ...] = ()):
        self.columns = columns

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        X = np.array(X, dtype=np.float64, copy=True)
        cols = list(self.columns)
        X[:, cols] = np.log1p(np.clip(X[:, cols], 0, None))
        return X


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds of probabilities, clipped away from 0 and 1 (also used by the reasons)."""
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def mean_logit_probability(probabilities: list[np.ndarray]) -> np.ndarray:
    """The probability whose log-odds is the mean of the given probabilities' log-odds."""
    return 1.0 / (1.0 + np.exp(-np.mean([logit(p) for p in probabilities], axis=0)))


class LogitBlend(ClassifierMixin, BaseEstimator):
    """The equal-weight mean, on the log-odds scale, of already fitted models: the best logistic
    regression and the best gradient boosting on validation, offered as one more candidate.

    Nothing is fitted here (the parts were fitted on the training rows; the blend has no weights
    to learn), so it is compared on validation like every other candidate.  Why: with about 1%
    positives the validation AUCs of the two kinds differ by less than their noise, so the
    choice between them flipped from run to run (on one 20,000-child county: validation AUC
    logistic 0.7467 vs boosting 0.7381 chose logistic, test AUC 0.7255, where boosting had 0.7451);
    the blend had validation 0.7469 and test 0.7458 there, and was best on validation and
    test on a second county too (0.7583 / 0.7412)."""

    def __init__(self, parts: tuple = ()):
        self.parts = parts

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def fit(self, X=None, y=None) -> LogitBlend:
        """Nothing to learn: the parts arrive fitted (sklearn's calibration wraps the blend in a
        FrozenEstimator, which never calls this)."""
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[(self.decision_function(X) > 0).astype(int)]

    @property
    def classes_(self) -> np.ndarray:
        return self.parts[0].classes_

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return np.mean([logit(m.predict_proba(X)[:, 1]) for m in self.parts], axis=0)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = mean_logit_probability([m.predict_proba(X)[:, 1] for m in self.parts])
        return np.column_stack([1.0 - p, p])


def blend_of(tried: list[dict], fitted: dict[int, object], val_p: dict[int, np.ndarray]):
    """The blend candidate of the best logistic and the best gradient boosting in `tried` (by
    validation AUC, then log loss): (candidate dict, LogitBlend, validation probabilities), or
    None when one kind is missing."""
    idx = []
    for kind in ("logistic", "hgb"):
        of_kind = [i for i, t in enumerate(tried) if t["kind"] == kind]
        if not of_kind:
            return None
        idx.append(
            max(of_kind, key=lambda i: (tried[i]["validation_roc_auc"],
                                        -tried[i]["validation_log_loss"]))
        )  # fmt: skip
    model = LogitBlend(tuple(fitted[i] for i in idx))
    pv = mean_logit_probability([val_p[i] for i in idx])
    parts = [{k: v for k, v in tried[i].items() if not k.startswith("validation_")} for i in idx]
    return {"kind": "blend", "of": parts}, model, pv


class RankPreservingCalibration:
    """A fitted calibration (`CalibratedClassifierCV` over the frozen chosen model) that keeps the
    chosen model's ranking of children.

    Isotonic calibration is a step function: every child in a step gets the same probability, so
    the calibrated scores tie where the model had told the children apart, and ROC AUC, the
    ranked list and the top k per month lose that information (on the 20,000-child county: test
    AUC 0.7255 before calibration, 0.718 after).  Here the model's own probability b is mixed
    into the calibrated p with weight e = TIE_BREAK, q = (1 - e) p + e b: within a step children
    are ordered as the model orders them, and across steps nothing changes (e is far below any
    step), so the result is an increasing function of the model's score -- strictly, wherever
    two scores differ by more than rounding (about 1e-9), so the same ranking and AUC as the
    model -- and no probability moves by more than TIE_BREAK."""

    TIE_BREAK = 1e-6

    def __init__(self, calibrated: CalibratedClassifierCV, base) -> None:
        self.calibrated = calibrated
        self.base = base
        self.classes_ = calibrated.classes_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = self.calibrated.predict_proba(X)[:, 1]
        # a convex mix, so q stays in [0, 1] without clipping (which would tie again at 1)
        q = (1.0 - self.TIE_BREAK) * p + self.TIE_BREAK * self.base.predict_proba(X)[:, 1]
        return np.column_stack([1.0 - q, q])


def make_model(candidate: dict, features: list[str], seed: int = 0):
    """An unfitted sklearn estimator for one candidate configuration."""
    params = {k: v for k, v in candidate.items() if k != "kind"}
    if candidate["kind"] == "logistic":
        counts = set(count_columns())
        cols = tuple(i for i, f in enumerate(features) if f in counts)
        return Pipeline(
            [
                ("log1p", Log1pColumns(cols)),
                ("impute", SimpleImputer(strategy="median")),
                ("scale", StandardScaler()),
                ("clf", LogisticRegression(max_iter=3000, **params)),
            ]
        )
    if candidate["kind"] == "hgb":
        params.setdefault("n_iter_no_change", EARLY_STOPPING_ROUNDS)
        return HistGradientBoostingClassifier(
            early_stopping=True, scoring="loss", random_state=seed, **params
        )
    raise ValueError(f"unknown candidate kind {candidate['kind']!r}")


def fit_candidates(
    candidates: tuple[dict, ...],
    features: list[str],
    seed: int,
    Xtr: np.ndarray,
    ytr: np.ndarray,
    Xva: np.ndarray,
    yva: np.ndarray,
):
    """Fit each candidate on the training rows; yield (index, fitted model, validation
    probabilities, seconds).  The logistic candidates share one fitted preprocessing (log1p,
    median imputation, scaling: it does not depend on C), so it is fitted once; gradient
    boosting stops early on the validation children's log loss (`X_val`), which is also where
    the candidates are compared, so the number of trees is chosen like any other setting."""
    prep = None
    for i, cand in enumerate(candidates):
        t = time.perf_counter()
        model = make_model(cand, features, seed=seed)
        if cand["kind"] == "logistic":
            if prep is None:
                prep = Pipeline(model.steps[:-1]).fit(Xtr)
                Ztr, Zva = prep.transform(Xtr), prep.transform(Xva)
            clf = model.steps[-1][1].fit(Ztr, ytr)
            model = Pipeline([*prep.steps, ("clf", clf)])
            pv = clf.predict_proba(Zva)[:, 1]
        else:
            model.fit(Xtr, ytr, X_val=Xva, y_val=yva)
            pv = _predict(model, Xva)
        yield i, model, pv, time.perf_counter() - t


# ------------------------------------------------------------------ data and split
def load_features(con, labelled: bool = True) -> pd.DataFrame:
    """Rows of features.child_month: the labelled ones (training) or the unlabelled (scoring)."""
    cols = ", ".join(["child_id", "as_of", *feature_columns(), "label"])
    where = "label IS NOT NULL" if labelled else "label IS NULL"
    df = con.execute(
        f"SELECT {cols} FROM features.child_month WHERE {where} ORDER BY as_of, child_id"
    ).df()
    df["as_of"] = pd.to_datetime(df["as_of"])
    return df


def feature_data_hash(df: pd.DataFrame) -> str:
    """sha256 of the labelled feature rows (ids, features, label) in table order."""
    cols = ["child_id", "as_of", *feature_columns(), "label"]
    h = pd.util.hash_pandas_object(df[cols], index=False).to_numpy()
    return hashlib.sha256(h.tobytes()).hexdigest()


def split_months(
    months: list, n_test: int = 6, n_val: int = 0, embargo_months: int = 12
) -> dict[str, list]:
    """Temporal split of the labelled as-of months: test = the last `n_test`; the embargo drops
    the `embargo_months - 1` months before the test so that no training or validation label window
    (12 months) reaches past the first test as-of.  With `n_val` = 0 (the default) training and
    validation share all the months left and `run` separates them by child; with `n_val` > 0 the
    last `n_val` of those months are validation only (and still held-out children)."""
    months = sorted(months)
    test = months[-n_test:]
    rest = months[:-n_test]
    if embargo_months > 0:
        first_test = pd.Timestamp(test[0])
        cut = first_test - pd.DateOffset(months=embargo_months)
        rest = [m for m in rest if pd.Timestamp(m) <= cut]
    val = rest[-n_val:] if n_val > 0 else list(rest)
    train = rest[:-n_val] if n_val > 0 else list(rest)
    if not train or not val or not test:
        raise ValueError(
            f"not enough labelled months ({len(months)}) for a split with {n_test} test, "
            f"{n_val} validation and a {embargo_months}-month embargo"
        )
    return {"train": train, "validation": val, "test": test}


def child_holdout(child_id: pd.Series, fraction: float, seed: int) -> np.ndarray:
    """A stable pseudo-random `fraction` of children (by hash of id and seed): True = held out."""
    h = pd.util.hash_pandas_object(child_id.astype(str) + f"|{seed}", index=False).to_numpy()
    return (h % 10_000) < int(round(fraction * 10_000))


# ------------------------------------------------------------------ metrics
def _group_sums(y: np.ndarray, s: np.ndarray, W: np.ndarray, descending: bool):
    """Sort by score, group tied scores; return per-group weighted positives and negatives."""
    order = np.argsort(-s if descending else s, kind="mergesort")
    ss = s[order]
    starts = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]])
    Wo = W[order]
    yo = y[order].astype(W.dtype)[:, None]
    pos = np.add.reduceat(Wo * yo, starts, axis=0)
    neg = np.add.reduceat(Wo * (1 - yo), starts, axis=0)
    return pos, neg


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
) -> dict:
    """Test-period figures with child-level bootstrap 95% CIs.  `oracle` (optional, same rows,
    NaN where unknown) adds the oracle's AUC on the rows it covers and ours/oracle.  `weights`
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
    return out


def calibration_warnings(calibrated: CalibratedClassifierCV, validation_auc: float) -> list[str]:
    """Plain-words warnings when the validation slice cannot support the model: a chosen model
    that ranks validation children no better than chance, or a Platt fit whose slope would invert
    the model's ranking (it happens with a handful of validation positives)."""
    out = []
    if not validation_auc > 0.5:
        out.append(
            f"the chosen model ranks validation children no better than chance "
            f"(validation ROC AUC {validation_auc:.3f})"
        )
    for cc in calibrated.calibrated_classifiers_:
        for cal in cc.calibrators:
            if hasattr(cal, "a_") and cal.a_ >= 0:
                out.append(
                    "the sigmoid calibration fitted on validation has a non-negative slope "
                    f"({cal.a_:.3g}) and reverses or flattens the model's ranking"
                )
    return out


# ------------------------------------------------------------------ oracle (synthetic truth)
def _child_truth(settings: Settings, con, child_ids: np.ndarray) -> tuple[pd.DataFrame, str]:
    """child_id -> person_id: linkage's truth map when it can be built, else identity (the
    fixture's linked tables use person_id as child_id; elsewhere identity simply matches nothing
    and the oracle figures are left out)."""
    identity = pd.DataFrame({"child_id": child_ids, "person_id": child_ids})
    try:
        from linkage.truth import child_truth
    except ImportError:
        return identity, "identity"
    try:
        m = child_truth(settings, con)
    except duckdb.Error:  # no raw/linked.records layer (fixture warehouse)
        return identity, "identity"
    if m.empty:
        return identity, "identity"
    return m[["child_id", "person_id"]].drop_duplicates("child_id"), "linkage.truth"


def oracle_for_rows(settings: Settings, con, rows: pd.DataFrame) -> np.ndarray | None:
    """The oracle's p_true for each (child_id, as_of) row, NaN where unknown; None without truth."""
    path = settings.truth_dir / "oracle.parquet"
    if not path.exists():
        return None
    orc = pd.read_parquet(path, columns=["person_id", "month", "p_true"])
    orc["month"] = pd.to_datetime(orc["month"].astype(str).str[:7] + "-01")
    m, _how = _child_truth(settings, con, rows["child_id"].unique())
    keyed = rows[["child_id", "as_of"]].merge(m, on="child_id", how="left")
    keyed["month"] = keyed["as_of"].dt.to_period("M").dt.to_timestamp()
    keyed = keyed.merge(
        orc.drop_duplicates(["person_id", "month"]), on=["person_id", "month"], how="left"
    )
    return keyed["p_true"].to_numpy(dtype=np.float64)


# ------------------------------------------------------------------ registry
class NoPromotedModelError(RuntimeError):
    """No model has passed the deployment gate: there is nothing to score with."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def current_version(settings: Settings) -> str | None:
    p = settings.models_dir / CURRENT_FILE
    return p.read_text().strip() if p.exists() else None


def _set_current(settings: Settings, version: str) -> None:
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    tmp = settings.models_dir / f".{CURRENT_FILE}.tmp"
    tmp.write_text(version + "\n")
    os.replace(tmp, settings.models_dir / CURRENT_FILE)


def read_metrics(settings: Settings, version: str) -> dict:
    """metrics.json of a registered version ({} when it has none)."""
    path = settings.models_dir / version / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


def gate_outcome(settings: Settings, version: str) -> dict | None:
    """The deployment gate outcome recorded in a version's metrics.json (None: never gated)."""
    return read_metrics(settings, version).get("gate")


def is_promoted(settings: Settings, version: str) -> bool:
    return bool((gate_outcome(settings, version) or {}).get("promoted"))


def registered_versions(settings: Settings) -> list[dict]:
    """Every registered version, oldest first: created_at, kind, test AUC, gate outcome and
    whether it is current."""
    if not settings.models_dir.exists():
        return []
    current = current_version(settings)
    out = []
    for folder in settings.models_dir.iterdir():
        meta_path = folder / "metadata.json"
        if not folder.is_dir() or folder.name.startswith(".") or not meta_path.exists():
            continue
        meta = json.loads(meta_path.read_text())
        metrics = read_metrics(settings, folder.name)
        gate = metrics.get("gate")
        out.append(
            {
                "version": folder.name,
                "created_at": meta.get("created_at"),
                "model_kind": meta.get("model_kind"),
                "test_roc_auc": metrics.get("roc_auc"),
                "test_precision_at_capacity": metrics.get("precision_at_capacity"),
                "promoted": None if gate is None else bool(gate.get("promoted")),
                "gate_version": None if gate is None else gate.get("gate", {}).get("version"),
                "gate_reasons": [] if gate is None else list(gate.get("reasons", [])),
                "current": folder.name == current,
            }
        )
    return sorted(out, key=lambda r: (str(r["created_at"]), r["version"]))


def no_promoted_reason(settings: Settings) -> str:
    versions = registered_versions(settings)
    if not versions:
        return f"no model registered in {settings.models_dir}: run `joinedup train` first"
    latest = versions[-1]
    why = "; ".join(latest["gate_reasons"]) or "it has no deployment gate outcome"
    return (
        f"no model has passed the deployment gate, so no scores can be published; the latest "
        f"model {latest['version']} was registered but not promoted: {why}"
    )


def load_current(
    settings: Settings, version: str | None = None, allow_unpromoted: bool = False
) -> tuple[dict, dict]:
    """(model bundle, metadata) of the current (or given) version, after checking the model
    file's sha256 against its metadata and that the version passed the deployment gate
    (`allow_unpromoted` skips that check, for inspection only -- never for publishing scores).
    Raises NoPromotedModelError when there is no current model, RuntimeError otherwise."""
    version = version or current_version(settings)
    if not version:
        raise NoPromotedModelError(no_promoted_reason(settings))
    folder = settings.models_dir / version
    meta_path, model_path = folder / "metadata.json", folder / MODEL_FILE
    if not meta_path.exists() or not model_path.exists():
        raise RuntimeError(f"model version {version} is incomplete in {folder}")
    meta = json.loads(meta_path.read_text())
    digest = _sha256(model_path)
    if digest != meta.get("model_sha256"):
        raise RuntimeError(
            f"model version {version}: {model_path} sha256 {digest[:12]}... does not match "
            f"metadata.json ({str(meta.get('model_sha256'))[:12]}...); refusing to load it"
        )
    if not allow_unpromoted and not is_promoted(settings, version):
        reasons = (gate_outcome(settings, version) or {}).get("reasons") or [
            "it has no deployment gate outcome"
        ]
        raise RuntimeError(
            f"model version {version} did not pass the deployment gate; refusing to use it: "
            + "; ".join(reasons)
        )
    return joblib.load(model_path), meta


def _promote(settings: Settings, version: str, outcome: dict) -> bool:
    """Point `current` at `version` if it passed the gate.  Otherwise leave the previous promoted
    model current -- or remove a pointer at a model that was never promoted (an old registry)."""
    faults.checkpoint("train.before_current")
    if outcome["promoted"]:
        _set_current(settings, version)
        return True
    current = current_version(settings)
    if current and not is_promoted(settings, current):
        (settings.models_dir / CURRENT_FILE).unlink(missing_ok=True)
    return False


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def _publish_outputs(settings: Settings, version: str, metrics: dict) -> dict:
    """The model card beside metrics.json and in outputs; the metrics of the model just trained
    in `outputs/risk_model_metrics.json`, saying whether it is the current one."""
    from models import card

    paths = card.write(settings, version)
    settings.outputs_dir.mkdir(parents=True, exist_ok=True)
    current = current_version(settings)
    _write_json(
        settings.outputs_dir / "risk_model_metrics.json",
        {"version": version, "is_current": current == version, "current_version": current,
         **metrics},
    )  # fmt: skip
    return paths


def _regate(settings: Settings, version: str, gate) -> dict:
    """A registered version's metrics with the gate outcome under `gate` (re-checked when the
    recorded outcome came from another gate file; the earlier outcome is kept in
    `gate_history`)."""
    from models import gate as gates

    folder = settings.models_dir / version
    metrics = json.loads((folder / "metrics.json").read_text())
    old = metrics.get("gate")
    if old is None or old.get("gate") != gate.provenance():
        metrics["gate"] = gates.check(metrics, metrics.get("fairness"), gate)
        if old is not None:
            metrics.setdefault("gate_history", []).append(old)
        _write_json(folder / "metrics.json", metrics)
    return metrics


# ------------------------------------------------------------------ the stage
def _predict(model, X: np.ndarray) -> np.ndarray:
    return model.predict_proba(X)[:, 1]


def run(
    settings: Settings,
    n_test_months: int = 6,
    n_val_months: int = 0,
    embargo_months: int = 12,
    n_boot: int = 200,
    candidates: tuple[dict, ...] | None = None,
    calibration: str = "auto",
    val_child_fraction: float = 0.3,
    blend: bool = True,
    gate=None,
    **_: object,
) -> dict:
    """Train the candidates, choose and calibrate on validation, evaluate on test (overall and
    by group), register, and promote to `current` only if the deployment gate passes.

    `blend`: also offer the log-odds mean of the best logistic and the best gradient boosting
    (`LogitBlend`) as a candidate.  `gate`: a `models.gate.Gate`, or the path of a gate file;
    default the committed `models/gate.toml`."""
    from models import fairness
    from models import gate as gates

    t0 = time.perf_counter()
    gate = gate if isinstance(gate, gates.Gate) else gates.load(gate)
    candidates = tuple(candidates or DEFAULT_CANDIDATES)
    features = feature_columns()
    config = {
        "n_test_months": n_test_months,
        "n_val_months": n_val_months,
        "embargo_months": embargo_months,
        "n_boot": n_boot,
        "candidates": list(candidates),
        "calibration": calibration,
        "val_child_fraction": val_child_fraction,
        "blend": blend,
        "capacity_per_month": settings.capacity_per_month,
        "seed": settings.seed,
        "features": features,
        "sklearn": sklearn.__version__,
        "code": TRAINING_CODE_VERSION,
    }
    with connect(settings) as con:
        df = load_features(con, labelled=True)
        if df.empty:
            raise RuntimeError("features.child_month has no labelled rows: run `joinedup features`")
        data_hash = feature_data_hash(df)
        version = hashlib.sha256(
            (data_hash + json.dumps(config, sort_keys=True)).encode()
        ).hexdigest()[:16]
        folder = settings.models_dir / version
        reuse = (folder / "metadata.json").exists() and (folder / "metrics.json").exists()
        if not reuse:
            split = split_months(
                sorted(df["as_of"].unique()), n_test_months, n_val_months, embargo_months
            )
            part = {k: df["as_of"].isin(v).to_numpy() for k, v in split.items()}
            # validation children are disjoint from training children: the same child's
            # overlapping label windows would otherwise let a flexible model memorise them and
            # flatter validation
            val_child = child_holdout(df["child_id"], val_child_fraction, settings.seed)
            part["train"] &= ~val_child
            part["validation"] &= val_child
            test_rows = df.loc[
                part["test"], ["child_id", "as_of", "sex_female", "sex_unknown", "imd_decile"]
            ].reset_index(drop=True)
            oracle = oracle_for_rows(settings, con, test_rows)
            groups = fairness.group_labels(con, test_rows)
    if reuse:
        metrics = _regate(settings, version, gate)
        promoted = _promote(settings, version, metrics["gate"])
        card = _publish_outputs(settings, version, metrics)
        return _figures(settings, version, True, metrics, promoted, card)
    # the warehouse is closed while fitting (DuckDB has one writer at a time)
    X = df[features].to_numpy(dtype=np.float64)
    y = df["label"].to_numpy(dtype=np.int8)
    Xtr, ytr = X[part["train"]], y[part["train"]]
    Xva, yva = X[part["validation"]], y[part["validation"]]

    tried: list[dict] = []
    fitted: dict[int, object] = {}
    val_p: dict[int, np.ndarray] = {}
    best, best_key = None, None

    def consider(i: int, cand: dict, model, pv: np.ndarray, extra: dict) -> None:
        nonlocal best, best_key, best_i, chosen
        ap = float(average_precision_score(yva, pv))
        auc = float(roc_auc_score(yva, pv))
        ll = float(log_loss(yva, np.clip(pv, 1e-6, 1 - 1e-6)))
        tried.append(
            {
                **cand,
                "validation_average_precision": round(ap, 5),
                "validation_log_loss": round(ll, 5),
                "validation_roc_auc": round(auc, 5),
                **extra,
            }
        )
        # chosen on the gate's primary metric (ROC AUC; ties at 3 decimals by log loss): with ~1%
        # positives validation AP differences of 0.001 are noise and picked weak candidates
        key = (round(auc, 3), -ll)
        if best_key is None or key > best_key:
            best, best_key, best_i, chosen = model, key, i, cand

    best_i, chosen = -1, {}
    for i, model, pv, seconds in fit_candidates(
        candidates, features, settings.seed, Xtr, ytr, Xva, yva
    ):
        extra: dict = {"fit_seconds": round(seconds, 2)}
        if candidates[i]["kind"] == "hgb":
            extra["iterations"] = int(model.n_iter_)
        fitted[i], val_p[i] = model, pv
        consider(i, candidates[i], model, pv, extra)
    if blend and (b := blend_of(tried, fitted, val_p)) is not None:
        consider(len(tried), b[0], b[1], b[2], {"fit_seconds": 0.0})
    del fitted, val_p

    method = calibration
    if method == "auto":
        method = "isotonic" if yva.sum() >= 500 else "sigmoid"
    calibrator = CalibratedClassifierCV(FrozenEstimator(best), method=method).fit(Xva, yva)
    warnings = calibration_warnings(calibrator, tried[best_i]["validation_roc_auc"])
    calibrated = RankPreservingCalibration(calibrator, best)

    pt = _predict(calibrated, X[part["test"]])

    # the chosen model only: one set of child-level bootstrap weights for all test figures
    yt, months_t = y[part["test"]], test_rows["as_of"].to_numpy()
    child_t = test_rows["child_id"].to_numpy()
    W = bootstrap_weights(child_t, n_boot, settings.seed)
    metrics = evaluate(
        yt,
        pt,
        months_t,
        child_t,
        settings.capacity_per_month,
        n_boot=n_boot,
        seed=settings.seed,
        oracle=oracle,
        weights=W,
    )
    metrics["fairness"] = fairness.audit(
        yt, pt, months_t, child_t, groups, settings.capacity_per_month, W
    )
    if oracle is not None and np.isfinite(oracle).any():
        # the same audit of the oracle's true probabilities: the chance level of each gap
        ok = np.isfinite(oracle)
        metrics["oracle_fairness"] = fairness.audit(
            yt[ok], oracle[ok], months_t[ok], child_t[ok],
            groups.loc[ok].reset_index(drop=True), settings.capacity_per_month, W[ok],
            summary_only=True,
        )  # fmt: skip
    del W
    metrics["gate"] = gates.check(metrics, metrics["fairness"], gate)
    metrics["validation"] = {
        "rows": int(part["validation"].sum()),
        "positives": int(yva.sum()),
        "roc_auc_uncalibrated": tried[best_i]["validation_roc_auc"],
    }
    metrics["warnings"] = warnings
    metrics["candidates"] = tried

    # reference values for reasons: training medians (counts -> 0 when the median is 0)
    ref = np.nanmedian(Xtr, axis=0)
    reference = {f: (0.0 if np.isnan(v) else float(v)) for f, v in zip(features, ref, strict=True)}
    bundle = {
        "version": version,
        "kind": chosen["kind"],
        "features": features,
        "model": calibrated,
        "base": best,
        "reference": reference,
    }
    dtypes = {c: str(df[c].dtype) for c in features}
    months = {k: [str(pd.Timestamp(m).date()) for m in v] for k, v in split.items()}
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=settings.models_dir))
    try:
        joblib.dump(bundle, tmp / MODEL_FILE)
        meta = {
            "version": version,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "model_kind": chosen["kind"],
            "hyper_parameters": (
                {**chosen, "iterations": int(best.n_iter_)} if chosen["kind"] == "hgb" else chosen
            ),  # a blend's parts carry their own iterations
            "calibration": method,
            "training_window": {
                "train": [months["train"][0], months["train"][-1]],
                "validation": [months["validation"][0], months["validation"][-1]],
                "test": [months["test"][0], months["test"][-1]],
                "embargo_months": embargo_months,
                "validation_child_fraction": val_child_fraction,
                "label_months": 12,
                "rows": {k: int(v.sum()) for k, v in part.items()},
                "positives": {k: int(y[v].sum()) for k, v in part.items()},
            },
            "features": features,
            "feature_dtypes": dtypes,
            "feature_data_sha256": data_hash,
            "config": config,
            "model_file": MODEL_FILE,
            "model_sha256": _sha256(tmp / MODEL_FILE),
            "sklearn_version": sklearn.__version__,
            "reason_method": (
                "coefficient x standardised value"
                if chosen["kind"] == "logistic"
                else "change in log-odds when a factor's features are set to training medians"
            ),
        }
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=2))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
        if folder.exists():  # an incomplete earlier attempt
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    promoted = _promote(settings, version, metrics["gate"])
    card = _publish_outputs(settings, version, metrics)
    figures = _figures(settings, version, False, metrics, promoted, card)
    figures.update(model_kind=chosen["kind"], calibration=method)
    figures["seconds"] = round(time.perf_counter() - t0, 2)
    return figures


def _figures(
    settings: Settings, version: str, reused: bool, metrics: dict, promoted: bool, card: dict
) -> dict:
    gate = metrics.get("gate") or {}
    return {
        "version": version,
        "reused": reused,
        "promoted": promoted,
        "current_version": current_version(settings),
        "gate_version": (gate.get("gate") or {}).get("version"),
        "gate_reasons": list(gate.get("reasons", [])),
        **_summary(metrics),
        "model_card": card.get("outputs_markdown"),
    }


def _summary(metrics: dict) -> dict:
    keys = (
        "rows",
        "positives",
        "roc_auc",
        "roc_auc_ci",
        "average_precision",
        "average_precision_ci",
        "brier",
        "ece",
        "precision_at_capacity",
        "precision_at_capacity_ci",
        "recall_at_capacity",
        "recall_at_capacity_ci",
        "oracle_roc_auc",
        "auc_ratio_to_oracle",
        "warnings",
    )
    out = {f"test_{k}": metrics[k] for k in keys if k in metrics}
    cal = metrics.get("calibration") or {}
    if cal.get("max_abs_deviation") is not None:
        out["test_calibration_max_abs_deviation"] = cal["max_abs_deviation"]
        out["test_calibration_within_2pp"] = cal["within_tolerance"]
    return out
