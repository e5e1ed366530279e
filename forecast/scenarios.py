"""Planning scenarios on the published forecast: what early help, a rise in referrals or a shift
in the placement mix would change in entries, children in care and cost, with the uncertainty
carried through to pounds.

Owns `UnitCosts` (defaults cited below), `Scenario` (the planner's levers), `Inputs` (what the
planners' read model publishes: the top-down paths, the risk curve, the stock and flows) and
`run(inputs, scenario, baseline=Scenario())` -> `Result` (baseline and scenario side by side,
paired on the same simulated paths so the difference has its own interval).

The method, so planners can check it:
* **entries**: each simulated top-down path of monthly entries (`scores.forecast_paths`) is the
  baseline.  *Referrals rise by y%*: every path is scaled by 1 + y (entries follow referrals at the
  current conversion).  *Early help reaches the top k children each month and reduces their risk
  by x%*: the children reached by month m are the top m*k by score; the expected entries averted
  in month m are x * (risk_curve(m*k)) / 12 (a 12-month probability spread evenly over the year,
  children reached earlier protected for longer); each path is thinned binomially by the share
  averted, split between outcomes as the paths are.  Without a promoted model there is no risk
  curve and this lever is unavailable (the result says so).
* **children in care**: from today's stock by placement kind, each month each child leaves with
  its kind's recent monthly exit rate (binomial), and the month's entries to care join by the
  placement mix (multinomial); *placement mix shifts* moves a share of new residential placements
  to foster care.
* **cost**: child-months in care by kind x unit cost / 12, plus new child-protection plans x
  cost per plan; unit costs drawn uniformly within their cited range per simulation, raised by
  inflation from their price year to the forecast year.

Pure numpy and pandas; the dashboard imports it (it imports nothing of the pipeline).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from forecast.stock import simulate_stock

#: the placement kinds with their own unit cost (`DEFAULT_COSTS`)
KINDS: tuple[str, ...] = ("foster", "kinship", "residential", "other")
#: the pooled kinds whose numbers are suppressed in the planners' read model, and a kind not
#: recorded: both costed as "other" (an assumption the page states)
POOLED = "small_groups"
COSTED_AS = {POOLED: "other", "unknown": "other"}


@dataclass(frozen=True)
class UnitCost:
    low: float
    high: float
    price_year: int
    source: str


#: default annual costs per child in care by placement kind, and per new CP plan (GBP)
DEFAULT_COSTS: dict[str, UnitCost] = {
    "residential": UnitCost(
        131_000,
        135_000,
        2014,
        "National Audit Office, Children in care (HC 787, 2014): £131,000-£135,000 a year for a "
        "residential placement",
    ),
    "foster": UnitCost(
        29_000,
        33_000,
        2014,
        "National Audit Office, Children in care (HC 787, 2014): about £29,000-£33,000 a year "
        "for a foster placement",
    ),
    "kinship": UnitCost(
        29_000,
        33_000,
        2014,
        "assumption: as foster care (connected-persons carers are paid fostering allowances); "
        "replace with local figures",
    ),
    "other": UnitCost(
        29_000,
        33_000,
        2014,
        "assumption: as foster care (placed with parents, independent living, placed for "
        "adoption); replace with local figures",
    ),
    "cp_plan": UnitCost(
        0,
        0,
        2014,
        "not costed by default: set the local cost of a child-protection plan",
    ),
}


@dataclass(frozen=True)
class Scenario:
    """The planner's levers (all zero = the baseline)."""

    early_help_k: int = 0  # children reached each month, top of the risk list first
    risk_reduction: float = 0.0  # x: the reached children's risk falls by this share (0-1)
    referral_rise: float = 0.0  # y: referrals, and so entries, rise by this share (-0.5-1)
    residential_to_foster: float = 0.0  # share of new residential placements made in foster care
    inflation: float = 0.02  # a year, from each cost's price year to the forecast's year
    costs: dict[str, tuple[float, float]] = field(default_factory=dict)  # overrides (low, high)

    def check(self) -> list[str]:
        """Plain reasons the levers are out of range (empty when valid)."""
        bad = []
        if self.early_help_k < 0:
            bad.append("early help: children reached a month cannot be negative")
        if not 0 <= self.risk_reduction <= 1:
            bad.append("early help: risk reduction must be between 0% and 100%")
        if not -0.5 <= self.referral_rise <= 1:
            bad.append("referrals: the change must be between -50% and +100%")
        if not 0 <= self.residential_to_foster <= 1:
            bad.append("placement mix: the share moved must be between 0% and 100%")
        if not 0 <= self.inflation <= 0.2:
            bad.append("inflation must be between 0% and 20% a year")
        for k, (lo, hi) in self.costs.items():
            if k not in DEFAULT_COSTS:
                bad.append(f"unknown cost {k}")
            elif not 0 <= lo <= hi:
                bad.append(f"cost of {k}: low must be between 0 and high")
        return bad


@dataclass
class Inputs:
    """What the planners' read model publishes for scenarios."""

    paths: dict[str, np.ndarray]  # outcome -> (sims x 12) simulated entries, top-down
    months: pd.DatetimeIndex  # the 12 forecast months
    risk_curve: pd.DataFrame | None  # top_k, expected_12m (None without a promoted model)
    stock_now: dict[str, int]  # children in care now by kind
    exit_rate: dict[str, float]  # monthly exit probability by kind
    entry_share: dict[str, float]  # placement mix of entries to care by kind


@dataclass
class Result:
    months: pd.DatetimeIndex
    entries: pd.DataFrame  # outcome, month, baseline/scenario mean and 80% interval
    stock: pd.DataFrame  # month, kind (incl. total), baseline/scenario mean and 80% interval
    cost: pd.DataFrame  # item, baseline/scenario/difference mean and 80% interval (GBP)
    notes: list[str]


def _band(x: np.ndarray) -> tuple[float, float, float]:
    return float(x.mean()), float(np.quantile(x, 0.1)), float(np.quantile(x, 0.9))


def averted_share(inputs: Inputs, s: Scenario) -> np.ndarray:
    """Per month, the expected entries averted by early help as a share of the expected entries
    (all outcomes) in that month; zeros when the lever is off or unavailable."""
    if s.early_help_k <= 0 or s.risk_reduction <= 0 or inputs.risk_curve is None:
        return np.zeros(len(inputs.months))
    curve = inputs.risk_curve.sort_values("top_k")
    ks = np.r_[0, curve["top_k"].to_numpy()]
    ev = np.r_[0.0, curve["expected_12m"].to_numpy()]
    reached = np.interp(np.arange(1, len(inputs.months) + 1) * s.early_help_k, ks, ev, right=ev[-1])
    averted = s.risk_reduction * reached / 12.0
    expected = sum(p.mean(axis=0) for p in inputs.paths.values()) * (1 + s.referral_rise)
    return np.clip(averted / np.maximum(expected, 1e-9), 0.0, 1.0)


def _entries(inputs: Inputs, s: Scenario, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each path's entries under the levers: scaled by the referral change (rounded without
    bias), then thinned binomially by the share early help averts."""
    share = averted_share(inputs, s)
    out = {}
    for outcome, p in inputs.paths.items():
        scaled = p * (1.0 + s.referral_rise)
        whole = np.floor(scaled).astype(np.int64)
        whole += rng.random(scaled.shape) < (scaled - whole)  # unbiased rounding
        out[outcome] = rng.binomial(whole, 1.0 - share[None, :])
    return out


def _cost_draws(s: Scenario, n: int, year: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    for k, c in DEFAULT_COSTS.items():
        lo, hi = s.costs.get(k, (c.low, c.high))
        out[k] = rng.uniform(lo, hi, n) * (1.0 + s.inflation) ** max(year - c.price_year, 0)
    return out


def kinds_of(inputs: Inputs) -> list[str]:
    """The placement kinds a scenario follows: those with children now or a share of entries."""
    kinds = list(dict.fromkeys([*inputs.stock_now, *inputs.entry_share]))
    return [k for k in kinds if k != "all"]


def _mix(inputs: Inputs, kinds: list[str], shift: float) -> np.ndarray:
    """Entry shares by kind (summing to 1), with `shift` of the residential share moved to
    foster care."""
    mix = {k: float(inputs.entry_share.get(k, 0.0)) for k in kinds}
    if "residential" in mix and "foster" in mix:
        moved = mix["residential"] * shift
        mix["residential"] -= moved
        mix["foster"] += moved
    p = np.array([mix[k] for k in kinds])
    return p / p.sum() if p.sum() > 0 else np.full(len(kinds), 1.0 / len(kinds))


def _simulate(inputs: Inputs, s: Scenario, seed: int) -> tuple[dict, dict]:
    """(baseline, scenario), paired.  The baseline's stock is simulated (binomial exits,
    multinomial placements); the scenario is the baseline plus, per path, the change in entries
    the levers make (by kind), each changed entry surviving at its kind's exit rate, so the
    difference carries the paths' and the costs' uncertainty and no extra simulation noise."""
    kinds = kinds_of(inputs)
    base_entries = {o: p.astype(np.int64) for o, p in inputs.paths.items()}
    entries = _entries(inputs, s, np.random.default_rng([seed, 1]))
    care_b = base_entries["looked_after_start"]
    n, months = care_b.shape
    p_base, p_scen = _mix(inputs, kinds, 0.0), _mix(inputs, kinds, s.residential_to_foster)
    stock = simulate_stock(
        {k: inputs.stock_now.get(k, 0) for k in kinds},
        {k: inputs.exit_rate.get(k, 0.0) for k in kinds},
        dict(zip(kinds, p_base, strict=True)),
        care_b,
        np.random.default_rng([seed, 2]),
    ).astype(float)  # (sims x months x kinds)
    delta_in = (
        entries["looked_after_start"][:, :, None] * p_scen[None, None, :]
        - care_b[:, :, None] * p_base[None, None, :]
    )
    keep = 1.0 - np.array([inputs.exit_rate.get(k, 0.0) for k in kinds])
    delta = np.zeros_like(delta_in)
    for t in range(months):  # survivors at the end of month t of each month's changed entries
        delta[:, t] = delta_in[:, t] + (delta[:, t - 1] * keep[None, :] if t else 0.0)
    year = int(inputs.months[len(inputs.months) // 2].year)
    unit = _cost_draws(s, n, year, np.random.default_rng([seed, 3]))
    per_kind = np.stack([unit[COSTED_AS.get(k, k)] / 12.0 for k in kinds], axis=1)  # (sims x k)

    def costs(st: np.ndarray, plans: np.ndarray) -> dict:
        return {
            "stock": st,
            "care_cost": (st.sum(axis=1) * per_kind).sum(axis=1),
            "plan_cost": plans.sum(axis=1) * unit["cp_plan"],
        }

    plans_b = base_entries.get("cp_plan_start", np.zeros_like(care_b))
    plans_x = entries.get("cp_plan_start", np.zeros_like(care_b))
    base = {"entries": base_entries, **costs(stock, plans_b)}
    scen = {"entries": entries, **costs(np.maximum(stock + delta, 0.0), plans_x)}
    return base, scen


def run(inputs: Inputs, scenario: Scenario, seed: int = 0) -> Result:
    """Baseline (no levers, the scenario's costs and inflation) and scenario, paired."""
    notes = []
    if scenario.early_help_k > 0 and inputs.risk_curve is None:
        notes.append(
            "early help is not modelled: no risk model is promoted, so there is no risk list to "
            "reach the top of"
        )
    b, x = _simulate(inputs, scenario, seed)
    entries = pd.DataFrame(
        [
            {"outcome": outcome, "month": month,
             **_pair(b["entries"][outcome][:, m], x["entries"][outcome][:, m])}
            for outcome in inputs.paths
            for m, month in enumerate(inputs.months)
        ]
    )  # fmt: skip
    kinds = [*enumerate(kinds_of(inputs)), (None, "total")]
    stock = pd.DataFrame(
        [
            {"month": month, "kind": kind,
             **_pair(*(d["stock"][:, m, :].sum(axis=1) if i is None else d["stock"][:, m, i]
                       for d in (b, x)))}
            for m, month in enumerate(inputs.months)
            for i, kind in kinds
        ]
    )  # fmt: skip
    rows = []
    for item, key in (("children in care", "care_cost"), ("child-protection plans", "plan_cost")):
        rows.append(_cost_row(item, b[key], x[key]))
    rows.append(
        _cost_row("total", b["care_cost"] + b["plan_cost"], x["care_cost"] + x["plan_cost"])
    )
    cost = pd.DataFrame(rows)
    return Result(inputs.months, entries, stock, cost, notes)


def _pair(base: np.ndarray, scen: np.ndarray) -> dict:
    """Mean and 80% interval of the baseline's and the scenario's draws."""
    out = {}
    for name, draws in (("baseline", base), ("scenario", scen)):
        m, lo, hi = _band(draws)
        out.update({name: m, f"{name}_low": lo, f"{name}_high": hi})
    return out


def _cost_row(item: str, base: np.ndarray, scen: np.ndarray) -> dict:
    dm, dl, dh = _band(scen - base)
    return {
        "item": item, **_pair(base, scen),
        "difference": dm, "difference_low": dl, "difference_high": dh,
    }  # fmt: skip
