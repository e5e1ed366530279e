"""The bottom-up view: monthly entries expected from the calibrated probabilities of the children
scored now.

Owns `month_shares` (how a child's 12-month probability spreads over the months: a constant
monthly hazard), `simulate` (seeded draws of the month of each child's first entry and its kind,
so every interval is a count interval of a Poisson-binomial, with the same `count_interval` rule as
the top-down view) and `table` (mean and intervals per outcome and month, county-wide and by a
grouping column).

What the bottom-up view counts, and why it is lower than the top-down view: a score is the
probability that *this* child, known now and not in care now, has a first entry (either outcome)
within 12 months.  Children not yet known to any agency (babies not yet born, families moving
in), children already in care and second entries are outside it; the top-down view counts all of
them.  `forecast.stage` measures that gap on the held-out months and publishes it with the views.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecast.topdown import LEVELS, count_interval

HORIZON = 12


def month_shares(p12: np.ndarray, horizon: int = HORIZON) -> np.ndarray:
    """(children x horizon) probability that a child's first entry falls in month m = 1..horizon,
    given its probability `p12` of an entry within 12 months and a constant monthly hazard."""
    p = np.clip(np.asarray(p12, dtype=float), 0.0, 1.0 - 1e-12)
    m = np.arange(horizon + 1)
    survive = (1.0 - p)[:, None] ** (m[None, :] / 12.0)
    return survive[:, :-1] - survive[:, 1:]


def simulate(
    p12: np.ndarray,
    groups: np.ndarray,
    shares: dict[str, float],
    n_sims: int,
    seed: int,
    horizon: int = HORIZON,
) -> tuple[np.ndarray, list[str], list]:
    """Draws (n_sims x outcomes x groups x horizon) of the number of children whose first entry
    falls in each month, by outcome (split by `shares`, which sum to 1) and group.  Returns the
    draws, the outcome names and the group labels (sorted).  Seeded by `seed` only."""
    rng = np.random.default_rng(seed)
    p = np.clip(np.asarray(p12, dtype=float), 1e-12, 1.0 - 1e-12)
    labels = sorted(pd.unique(groups).tolist(), key=str)
    gi = pd.Categorical(groups, categories=labels).codes
    outcomes = list(shares)
    cum = np.cumsum([shares[o] for o in outcomes])
    out = np.zeros((n_sims, len(outcomes), len(labels), horizon), dtype=np.int32)
    log_q = np.log1p(-p)
    for s in range(n_sims):
        u = rng.random(len(p))
        hit = u < 1.0 - (1.0 - p) ** (horizon / 12.0)
        # month of the first entry: the inverse of the constant-hazard survival
        month = np.ceil(12.0 * np.log1p(-u[hit]) / log_q[hit]).astype(int)
        month = np.clip(month, 1, horizon) - 1
        kind = np.searchsorted(cum, rng.random(int(hit.sum())) * cum[-1], side="right")
        np.add.at(out[s], (kind, gi[hit], month), 1)
    return out, outcomes, labels


def table(
    p12: np.ndarray,
    groups: np.ndarray,
    shares: dict[str, float],
    start: pd.Timestamp,
    n_sims: int = 1000,
    seed: int = 0,
    horizon: int = HORIZON,
) -> pd.DataFrame:
    """One row per (outcome, group, month): the expected count (exact: the sum of the month
    shares) and the central intervals (LEVELS) of the simulated count; group 'total' is the sum
    over groups.  `start` is the first forecast month."""
    draws, outcomes, labels = simulate(p12, groups, shares, n_sims, seed, horizon)
    m = month_shares(p12, horizon)
    months = pd.date_range(pd.Timestamp(start), periods=horizon, freq="MS")
    gi = pd.Categorical(groups, categories=labels).codes
    rows = []
    for oi, outcome in enumerate(outcomes):
        for gname, sel, d in [("total", slice(None), draws[:, oi].sum(axis=1))] + [
            (g, gi == k, draws[:, oi, k]) for k, g in enumerate(labels)
        ]:
            expected = m[sel].sum(axis=0) * shares[outcome]
            for h in range(horizon):
                row = {
                    "outcome": outcome,
                    "group": gname,
                    "month": months[h],
                    "horizon": h + 1,
                    "mean": float(expected[h]),
                }
                for level in LEVELS:
                    lo, hi = count_interval(d[:, h], level)
                    row[f"lower_{int(level * 100)}"] = min(lo, float(expected[h]))
                    row[f"upper_{int(level * 100)}"] = max(hi, float(expected[h]))
                rows.append(row)
    return pd.DataFrame(rows)
