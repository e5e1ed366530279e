"""The top-down view: a count model of a monthly history, forecasting the next months.

Owns `TopDown` (fit on a monthly series, `forecast(h)` -> mean and interval per month) and
`seasonal_naive` (the baseline: the same month a year earlier, with an interval from the
history's own year-on-year changes).

The model: a count regression (statsmodels; negative binomial NB2 when the counts are overdispersed
and it fits better, else Poisson) of the monthly count on a level and, chosen by AIC at each fit,
a linear trend and one pair of yearly Fourier terms, fitted on the last `window` months.  Each
interval is the narrowest central one holding at least its level of the simulated probability
(`count_interval`).  Intervals come from simulation:
coefficients drawn from their estimated sampling distribution, then counts from the negative
binomial, so they carry both chance and estimation error.  Nothing here reads the risk model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: central intervals reported: 80% (planning) and 95%
LEVELS: tuple[float, ...] = (0.8, 0.95)
#: simulated monthly means are capped at this multiple of (the window's largest count + 1)
CAP_FACTOR = 3.0
#: the term sets the model chooses among by AIC: level only, trend, yearly season, both
TERM_SETS: tuple[tuple[str, ...], ...] = ((), ("trend",), ("season",), ("trend", "season"))


def _design(t: np.ndarray, month: np.ndarray, n_train: int, terms: tuple[str, ...]) -> np.ndarray:
    cols = [np.ones_like(t)]
    if "trend" in terms:
        cols.append(t / max(n_train, 1))
    if "season" in terms:
        angle = 2 * np.pi * (month - 1) / 12
        cols += [np.sin(angle), np.cos(angle)]
    return np.column_stack(cols)


@dataclass
class TopDown:
    """Fit with `TopDown(window=48).fit(series)`; then `forecast(12)`."""

    window: int = 48
    #: the terms to choose from by AIC at each fit (None: choose among all four sets)
    terms: tuple[str, ...] | None = None
    n_sims: int = 4000
    seed: int = 0
    params_: np.ndarray | None = field(default=None, repr=False)
    cov_: np.ndarray | None = field(default=None, repr=False)
    alpha_: float = 0.0
    family_: str = ""
    terms_: tuple[str, ...] = ()
    aic_: float = float("nan")
    last_: pd.Timestamp | None = None
    n_: int = 0
    cap_: float = np.inf

    def fit(self, y: pd.Series) -> TopDown:
        y = y.iloc[-self.window :]
        self.n_ = len(y)
        if self.n_ < 12:
            raise ValueError(
                f"the top-down view needs at least 12 months of history (got {self.n_})"
            )
        candidates = [self.terms] if self.terms is not None else TERM_SETS
        fits = [self._fit_terms(y, terms) for terms in candidates]
        best = min(fits, key=lambda f: f["aic"])
        self.terms_ = best["terms"]
        self.params_, self.cov_ = best["params"], best["cov"]
        self.alpha_, self.family_, self.aic_ = best["alpha"], best["family"], best["aic"]
        self.last_ = y.index[-1]
        self.cap_ = CAP_FACTOR * (float(y.max()) + 1.0)
        return self

    def _fit_terms(self, y: pd.Series, terms: tuple[str, ...]) -> dict:
        import warnings

        import statsmodels.api as sm
        from statsmodels.discrete.discrete_model import NegativeBinomial

        t = np.arange(self.n_, dtype=float)
        X = _design(t, y.index.month.to_numpy(), self.n_, terms)
        endog = y.to_numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            poisson = sm.GLM(endog, X, family=sm.families.Poisson()).fit()
            best = {
                "terms": terms, "params": np.asarray(poisson.params),
                "cov": np.asarray(poisson.cov_params()), "alpha": 0.0, "family": "poisson",
                "aic": float(poisson.aic),
            }  # fmt: skip
            dispersion = float(poisson.pearson_chi2 / max(poisson.df_resid, 1))
            if dispersion > 1.05:
                try:
                    nb = NegativeBinomial(endog, X, loglike_method="nb2").fit(
                        disp=0, maxiter=200, start_params=np.append(poisson.params, 0.1)
                    )
                    alpha = float(nb.params[-1])
                    cov = np.asarray(nb.cov_params())[:-1, :-1]
                    ok = nb.mle_retvals.get("converged", False) and 0 < alpha < 10
                    if ok and np.all(np.isfinite(cov)) and float(nb.aic) < best["aic"]:
                        best.update(
                            params=np.asarray(nb.params[:-1]), cov=cov, alpha=alpha,
                            family="negative_binomial", aic=float(nb.aic),
                        )  # fmt: skip
                except (np.linalg.LinAlgError, ValueError):
                    pass
        return best

    def months(self, h: int = 12) -> pd.DatetimeIndex:
        """The `h` months after the last month fitted."""
        if self.last_ is None:
            raise RuntimeError("fit first")
        return pd.date_range(self.last_ + pd.offsets.MonthBegin(1), periods=h, freq="MS")

    def simulate(self, h: int = 12) -> np.ndarray:
        """(n_sims x h) simulated counts of the next `h` months (sample paths: one coefficient
        draw per path, so the months of a path move together as estimation error makes them)."""
        if self.params_ is None:
            raise RuntimeError("fit first")
        months = self.months(h)
        t = np.arange(self.n_, self.n_ + h, dtype=float)
        X = _design(t, months.month.to_numpy(), self.n_, self.terms_)
        rng = np.random.default_rng(self.seed)
        betas = rng.multivariate_normal(
            self.params_, self.cov_, size=self.n_sims, method="cholesky"
        )
        # a coefficient draw far in the tail of a sparse series would extrapolate to
        # hundreds a month: the mean is capped at CAP_FACTOR x the window's largest count
        mu = np.minimum(np.exp(np.clip(betas @ X.T, -20, 20)), self.cap_)  # (sims, h)
        if self.alpha_ > 0:
            shape = 1 / self.alpha_
            lam = rng.gamma(shape, mu / shape)
        else:
            lam = mu
        return rng.poisson(lam)

    def forecast(self, h: int = 12) -> pd.DataFrame:
        """Mean and central intervals (LEVELS) of the count in each of the next `h` months."""
        return summarise(self.simulate(h), self.months(h))


def summarise(draws: np.ndarray, months: pd.DatetimeIndex) -> pd.DataFrame:
    """Mean and central count intervals (LEVELS) per month of (sims x months) draws."""
    h = draws.shape[1]
    out = pd.DataFrame({"month": months, "horizon": np.arange(1, h + 1)})
    out["mean"] = draws.mean(axis=0)
    for level in LEVELS:
        bounds = [count_interval(draws[:, k], level) for k in range(h)]
        out[f"lower_{int(level * 100)}"] = [b[0] for b in bounds]
        out[f"upper_{int(level * 100)}"] = [b[1] for b in bounds]
    return out


def count_interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    """The narrowest central interval of a simulated count that holds at least `level` of its
    probability.  The plain (1-level)/2 and (1+level)/2 quantiles include their end values whole,
    so with counts of four or ten a month they hold 85-95% instead of 80%; this moves both tails
    inwards together while the interval still holds `level`.  It uses the predictive draws only."""
    base = (1 - level) / 2
    best = (
        float(np.quantile(draws, base, method="inverted_cdf")),
        float(np.quantile(draws, 1 - base, method="inverted_cdf")),
    )
    for tail in np.linspace(base, min(0.5, base + 0.15), 31)[1:]:
        lo = float(np.quantile(draws, tail, method="inverted_cdf"))
        hi = float(np.quantile(draws, 1 - tail, method="inverted_cdf"))
        if float(np.mean((draws >= lo) & (draws <= hi))) < level:
            break
        best = (lo, hi)
    return best


def seasonal_naive(y: pd.Series, h: int = 12) -> pd.DataFrame:
    """The same month a year earlier; intervals from the empirical quantiles of the history's
    year-on-year changes, centred on the point (floored at 0)."""
    if len(y) < 13:
        raise ValueError("the seasonal-naive baseline needs at least 13 months of history")
    months = pd.date_range(y.index[-1] + pd.offsets.MonthBegin(1), periods=h, freq="MS")
    values = y.to_numpy()
    point = np.array([values[len(values) - 12 + ((k - 1) % 12)] for k in range(1, h + 1)])
    changes = values[12:] - values[:-12]
    changes = changes - changes.mean()  # the spread of year-on-year changes, around the point
    out = pd.DataFrame({"month": months, "horizon": np.arange(1, h + 1), "mean": point})
    for level in LEVELS:
        lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
        out[f"lower_{int(level * 100)}"] = np.maximum(point + np.quantile(changes, lo), 0)
        out[f"upper_{int(level * 100)}"] = np.maximum(point + np.quantile(changes, hi), 0)
    return out
