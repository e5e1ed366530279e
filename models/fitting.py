"""Fitting the risk model's candidates: the candidate configurations, the estimators they
become (`make_model`), fitting them on the training rows (`fit_candidates`), the log-odds blend
of the best two kinds (`LogitBlend`, `blend_of`) and the rank-preserving calibration wrapper.

Owns no data access and no registry: `models.train.run` passes arrays in.  The classes here are
pickled inside registered models (`model.joblib`); `models.train` re-exports them so models
registered before this module existed still load.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from models.features import count_columns

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


#: gradient boosting stops once the validation children's log loss has not improved for this
#: many iterations (`max_iter` is then a cap); overridable per candidate with "n_iter_no_change"
EARLY_STOPPING_ROUNDS = 25


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


def _predict(model, X: np.ndarray) -> np.ndarray:
    return model.predict_proba(X)[:, 1]
