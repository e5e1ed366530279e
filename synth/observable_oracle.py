"""The observable oracle: the Bayes posterior probability of an outcome in the next 12 months
given everything the hub could observe before the as-of month, computed from the generator's own
parameters (synthetic evaluation only; never used by the pipeline).

Where `events.make_oracle` conditions on the latent household state s_{m-1} and the child's trait
u (which no model can see), `observable_probability` conditions only on the event history in
months < m: it forward-filters the household's 3-state Markov chain (`process.transition_matrices`)
jointly with the static latents -- each child's u on a grid (prior N(0.4 d, 1), siblings
correlated through the household effect, corr `RHO`) and the household's FSM eligibility -- with
these monthly emissions, all exact:

- the 16 Poisson child-month event types of `process.EVENT_RATES` (age, sex, teen, infant and
  infant-in-crisis terms); school moves are left out in a moved household's move month and the two
  after it (the move-triggered school move cannot be told apart from the Poisson ones);
- outcomes (a cp_plan_start / looked_after_start in the month: Bernoulli with the outcome hazard);
- term attendance: logit(value / 100) ~ N(3.3 - 0.35 u - 0.2 fsm - [0, 0.6, 1.4][s], 0.45^2)
  (the 0.1-point rounding of the value is ignored);
- the October free-school-meals record: certain when the household is eligible, else probability
  0.5 when in crisis, 0 otherwise;
- household domestic-abuse incidents: Poisson(DA rate x share of the month after the first-born
  observed child's birth), counted once per household.

Left out (no information about s or u): GP registrations, move-triggered school moves.
With `household=True` the siblings' events enter too (the filter runs over the household's joint
grid); with `household=False` each child is filtered on its own record only (what a model built on
one child's linked timeline could use).  The prediction is exact given the filtered posterior:
p = 1 - sum_{s, u} post(s_{m-1}, u) Q(s, u), Q the 12-month no-outcome probability of the latent
oracle on the same grid.  Accuracy is limited only by the u grid (`GRID_SIZES`).

Owns: `observable_probability`, `RHO`, `GRID_SIZES`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from synth import process as pr
from synth.county import County
from synth.events import FSM_CENSUS

#: correlation of siblings' traits: 0.55^2 / (0.55^2 + 0.8^2) (see synth/README.md, Trait)
RHO = 0.55**2 / (0.55**2 + 0.8**2)
#: grid points for each child's standardised trait z = u - 0.4 d, by household size (in the
#: household filter the grid is the product over the household's children)
GRID_SIZES: dict[int, int] = {1: 41, 2: 25, 3: 13, 4: 9}
Z_MAX = 4.0
ATT_C = np.array([0.0, 0.6, 1.4])
ATT_SD = 0.45
OUTCOME_TYPES = ("cp_plan_start", "looked_after_start")
_TYPES = tuple(pr.EVENT_RATES)
_NEG = -1e30  # log of an impossible observation (kept finite so 0 * _NEG stays 0)


# ----------------------------------------------------------------- observations
class _Obs:
    """Monthly observations per child, dense (months, children) arrays."""

    def __init__(self, county: County, events: pd.DataFrame):
        kids = county.children
        T, n = county.months, len(kids)
        self.T, self.n = T, n
        self.dob = kids.dob.to_numpy().astype("datetime64[D]")
        self.bmi = pr.birth_month_index(self.dob)
        self.male = (kids.sex.to_numpy() == "M").astype(float)
        self.hh = kids.hh.to_numpy()
        self.d = county.households.d.to_numpy()[self.hh]
        ev = events[["child", "event_date", "event_type", "value"]]
        t = (ev.event_date.to_numpy().astype("datetime64[M]") - pr.HISTORY_START).astype(np.int64)
        ok = (t >= 0) & (t < T)
        child, t = ev.child.to_numpy()[ok].astype(np.int64), t[ok]
        typ, val = ev.event_type.to_numpy()[ok], ev.value.to_numpy()[ok]
        self.K = np.zeros((T, n, len(_TYPES)), dtype=np.float32)
        for r, name in enumerate(_TYPES):
            s = typ == name
            np.add.at(self.K[:, :, r], (t[s], child[s]), 1)
        mv = kids.move_month.to_numpy()
        sm = _TYPES.index("school_move")
        self.no_school = np.zeros((T, n), dtype=bool)  # months where school moves are ignored
        for k in range(3):
            tt = mv + k
            w = (mv >= 0) & (tt < T)
            self.no_school[tt[w], np.flatnonzero(w)] = True
        self.K[self.no_school, sm] = 0
        s = np.isin(typ, OUTCOME_TYPES)
        self.y = np.zeros((T, n), dtype=bool)
        self.y[t[s], child[s]] = True
        s = typ == "domestic_abuse_household"
        self.da = np.zeros((T, n), dtype=np.float32)
        np.add.at(self.da, (t[s], child[s]), 1)
        # share of each month on/after the birth (DA incidents are recorded from the birth on)
        months = pr.month_start(np.arange(T + 1))
        start = np.maximum(months[:-1, None], self.dob[None, :])
        span = (months[1:, None] - start).astype(np.float64)
        self.frac = np.clip(span / (months[1:] - months[:-1]).astype(np.float64)[:, None], 0, 1)
        s = typ == "attendance"
        self.att = np.full((T, n), np.nan)
        v = np.clip(val[s].astype(float), 0.05, 99.95) / 100
        self.att[t[s], child[s]] = np.log(v / (1 - v))
        # October census: eligible (aged 5-16 on the day) and recorded or not
        self.fsm_elig = np.zeros((T, n), dtype=bool)
        self.fsm_rec = np.zeros((T, n), dtype=bool)
        y0 = int(str(pr.HISTORY_START)[:4])
        for year in range(y0, y0 + T // 12 + 2):
            when = np.datetime64(f"{year}-{FSM_CENSUS[0]:02d}-{FSM_CENSUS[1]:02d}")
            tm = int((when.astype("datetime64[M]") - pr.HISTORY_START).astype(int))
            if not 0 <= tm < T:
                continue
            age = pr.age_at(self.dob, when)
            self.fsm_elig[tm] = (age >= 5) & (age <= 16)
        s = typ == "free_school_meals"
        self.fsm_rec[t[s], child[s]] = True


# ----------------------------------------------------------------- emissions
def _child_loglik(o: _Obs, t: int, idx: np.ndarray, z: np.ndarray) -> np.ndarray:
    """log p(month-t observations of children idx | s, fsm, z), shape (len(idx), 3, 2, G);
    domestic abuse excluded (household-level)."""
    m = len(idx)
    G = len(z)
    age = pr.age_in_month(o.dob[idx], t).astype(np.int64)
    alive = age >= 0
    male = o.male[idx]
    u = 0.4 * o.d[idx][:, None] + z[None, :]  # (m, G)
    K = o.K[t, idx].astype(np.float64)  # (m, R)
    out = np.zeros((m, 3, G))
    for r, name in enumerate(_TYPES):
        rate = pr.EVENT_RATES[name]
        inrange = (age >= rate.age_min) & (age <= rate.age_max)
        if name == "school_move":
            inrange &= ~o.no_school[t, idx]
        if not inrange.any():
            continue
        x0 = np.log(rate.base) + rate.b_male * male
        x0 = x0 + rate.teen * (age >= 13) + rate.infant * (age < 1)
        A = np.where(inrange, np.exp(x0), 0.0)  # (m,)
        eu = np.exp(rate.b_u * u)  # (m, G)
        bs = np.asarray(rate.b_s)
        for s in range(3):
            x_s = bs[s]
            if rate.infant_crisis and s == 2:
                x_s = x_s + rate.infant_crisis * (age < 2)  # (m,)
            lam = (A * np.exp(x_s))[:, None] * eu
            out[:, s, :] += K[:, r, None] * (rate.b_u * u + np.broadcast_to(x_s, (m,))[:, None])
            out[:, s, :] -= lam
    # outcomes
    xo = pr.OUTCOME_A + pr.OUTCOME_B_U * u  # (m, G)
    g_age = pr.outcome_age_term(age)
    y = o.y[t, idx][:, None]
    for s in range(3):
        x = xo + pr.OUTCOME_C[s] + g_age[:, None]
        # log sigmoid(x) and log(1 - sigmoid(x)), stable
        out[:, s, :] += np.where(y, -np.logaddexp(0, -x), -np.logaddexp(0, x))
    out[~alive] = 0.0
    out = np.repeat(out[:, :, None, :], 2, axis=2)  # (m, 3, 2, G)
    # attendance
    a = o.att[t, idx]
    has = np.isfinite(a)
    if has.any():
        f = np.array([0.0, 1.0])
        mu = 3.3 - 0.35 * u[:, None, None, :] - 0.2 * f[None, None, :, None]
        mu = mu - ATT_C[None, :, None, None]  # (m, 3, 2, G)
        q = -0.5 * ((np.where(has, a, 0.0)[:, None, None, None] - mu) / ATT_SD) ** 2
        out += np.where(has[:, None, None, None], q, 0.0)
    # free school meals census
    el = o.fsm_elig[t, idx]
    if el.any():
        rec = o.fsm_rec[t, idx]
        lf = np.zeros((m, 3, 2))
        crisis = np.array([0.0, 0.0, 1.0])
        # fsm = 1: recorded for sure
        lf[:, :, 1] = np.where(rec, 0.0, _NEG)[:, None]
        # fsm = 0: recorded with probability 0.5 in crisis, never otherwise
        p0 = 0.5 * crisis[None, :]
        lf[:, :, 0] = np.where(
            rec[:, None],
            np.log(np.where(p0 > 0, p0, 1.0)) + np.where(p0 > 0, 0.0, _NEG),
            np.log1p(-p0),
        )
        out += np.where(el[:, None, None], lf, 0.0)[..., None]
    return out


def _da_loglik(o: _Obs, t: int, first: np.ndarray, d: np.ndarray) -> np.ndarray:
    """(n_units, 3) log-likelihood of the DA incidents seen on each unit's first-born child."""
    lam = pr.DA_BASE * np.exp(pr.DA_B_S[None, :] + pr.DA_B_D * d[:, None])
    k = o.da[t, first].astype(np.float64)[:, None]
    return k * np.log(lam) - lam * o.frac[t, first][:, None]


# ----------------------------------------------------------------- 12-month survival table
def _survival_table(d_values: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Q[k, a, r-1, s_prev, g] = P(no outcome in 12 months | s_{m-1} = s_prev, u = 0.4 d_k + z_g)
    for a child aged a in the first r months and a + 1 after (age 18+: no hazard)."""
    P = pr.transition_matrices(d_values)  # (D, 3, 3)
    u = 0.4 * d_values[:, None] + z[None, :]  # (D, G)
    ages = np.arange(19)
    h = pr.outcome_hazard(u[:, None, :, None], np.arange(3)[None, :, None, None], ages)
    surv = 1.0 - h  # (D, 3 state, G, 19 age)
    a = np.arange(18)[:, None]
    r = np.arange(1, 13)[None, :]
    # v[D, a, r, s_prev, j, G]
    v = None
    for k in range(pr.HORIZON):
        age_k = np.where(k < r, a, a + 1)  # (18, 12)
        sv = surv[:, :, :, age_k]  # (D, 3, G, 18, 12)
        sv = np.moveaxis(sv, (3, 4), (1, 2))  # (D, 18, 12, 3 j, G)
        if v is None:
            v = P[:, None, None, :, :, None] * sv[:, :, :, None, :, :]
        else:
            v = np.einsum("darsix,dij->darsjx", v, P) * sv[:, :, :, None, :, :]
    return v.sum(axis=4)  # (D, 18, 12, 3, G)


# ----------------------------------------------------------------- the filter
def _grid(G: int) -> tuple[np.ndarray, np.ndarray]:
    z = np.linspace(-Z_MAX, Z_MAX, G)
    return z, z[1] - z[0]


def _prior(k: int, z: np.ndarray) -> np.ndarray:
    """Prior weights on the product grid z^k for k siblings, flattened (G^k,), sum 1."""
    G = len(z)
    cov = (1 - RHO) * np.eye(k) + RHO * np.ones((k, k))
    prec = np.linalg.inv(cov)
    mesh = np.stack(np.meshgrid(*([z] * k), indexing="ij"), axis=-1).reshape(-1, k)
    logw = -0.5 * np.einsum("ni,ij,nj->n", mesh, prec, mesh)
    w = np.exp(logw - logw.max())
    assert w.shape == (G**k,)
    return w / w.sum()


def _run_units(
    o: _Obs,
    county: County,
    members: np.ndarray,
    G: int,
    out_p: np.ndarray,
    chunk: int,
) -> None:
    """Filter units (households, or single children) of equal size k = members.shape[1], members
    sorted by date of birth; writes p_obs into out_p[t, child]."""
    n_units, k = members.shape
    z, _ = _grid(G)
    hh = o.hh[members[:, 0]]
    d = county.households.d.to_numpy()[hh]
    d_values, d_code = np.unique(d, return_inverse=True)
    Q = _survival_table(d_values, z)  # (D, 18, 12, 3, G)
    prior_z = _prior(k, z)
    fsm1 = 1.0 / (1.0 + np.exp(-(-1.4 + 1.8 * d)))
    for lo in range(0, n_units, chunk):
        sl = slice(lo, min(lo + chunk, n_units))
        mem, dc, dd = members[sl], d_code[sl], d[sl]
        nu = len(mem)
        P = county.P[hh[sl]]  # (nu, 3, 3)
        pi = pr.stationary(P)  # law of s_{-1}
        pf = np.stack([1 - fsm1[sl], fsm1[sl]], axis=1)  # (nu, 2)
        alpha = pi[:, :, None, None] * pf[:, None, :, None] * prior_z[None, None, None, :]
        first = mem[:, 0]
        for t in range(o.T):
            # prediction for month t from the posterior of s_{t-1}
            a4 = alpha.reshape((nu, 3, 2) + (G,) * k)
            for j in range(k):
                c = mem[:, j]
                alive = o.bmi[c] <= t
                if not alive.any():
                    continue
                axes = (2,) + tuple(3 + i for i in range(k) if i != j)
                marg = a4.sum(axis=axes)  # (nu, 3, G)
                age = pr.age_in_month(o.dob[c], t).astype(np.int64)
                late = (o.dob[c] - o.dob[c].astype("datetime64[M]").astype("datetime64[D]")).astype(
                    np.int64
                ) > 0
                r = np.clip(o.bmi[c] + late + 12 * (age + 1) - t, 1, 12)
                q = Q[dc, np.clip(age, 0, 17), r - 1]  # (nu, 3, G)
                p = 1.0 - (marg * q).sum(axis=(1, 2))
                out_p[t, c[alive]] = p[alive]
            # step the chain to s_t and weigh by month t's observations
            alpha = np.einsum("nsx,nsj->njx", alpha.reshape(nu, 3, -1), P).reshape(alpha.shape)
            L = np.zeros((nu, 3, 2) + (G,) * k)
            for j in range(k):
                lj = _child_loglik(o, t, mem[:, j], z)  # (nu, 3, 2, G)
                shape = [nu, 3, 2] + [1] * k
                shape[3 + j] = G
                L = L + lj.reshape(shape)
            L = L + _da_loglik(o, t, first, dd)[:, :, None].reshape((nu, 3) + (1,) * (k + 1))
            L = L.reshape(nu, 3, 2, -1)
            L = L - L.max(axis=(1, 2, 3), keepdims=True)
            alpha = alpha * np.exp(L)
            alpha = alpha / alpha.sum(axis=(1, 2, 3), keepdims=True)


def observable_probability(
    county: County,
    events: pd.DataFrame,
    household: bool = True,
    grid_sizes: dict[int, int] | None = None,
    chunk_cells: int = 20_000_000,
) -> pd.DataFrame:
    """p_obs for every child-month (born by the month, under 18) of the window, the same rows as
    `events.make_oracle`: `child, t, p_obs` (float64).  `events` is `events.make_events`'s frame
    (outcomes included); with `household=False` each child is filtered on its own events only."""
    sizes = {**GRID_SIZES, **(grid_sizes or {})}
    o = _Obs(county, events)
    out_p = np.full((o.T, o.n), np.nan)
    if household:
        order = np.lexsort((o.dob, o.hh))
        hh_sorted = o.hh[order]
        starts = np.flatnonzero(np.r_[True, hh_sorted[1:] != hh_sorted[:-1]])
        counts = np.diff(np.r_[starts, len(order)])
        for k in np.unique(counts):
            st = starts[counts == k]
            members = order[st[:, None] + np.arange(k)[None, :]]
            G = sizes[int(k)]
            chunk = max(1, chunk_cells // (6 * G**k))
            _run_units(o, county, members, G, out_p, chunk)
    else:
        members = np.arange(o.n)[:, None]
        G = sizes[1]
        _run_units(o, county, members, G, out_p, max(1, chunk_cells // (6 * G)))
    t, child = np.nonzero(np.isfinite(out_p))
    age = pr.age_in_month(o.dob[child], t)
    keep = age < 18
    return pd.DataFrame(
        {
            "child": child[keep].astype(np.int32),
            "t": t[keep].astype(np.int16),
            "p_obs": out_p[t[keep], child[keep]],
        }
    ).sort_values(["t", "child"], ignore_index=True)
