"""What happens to each child: outcomes, the exact oracle, and every agency event, generated
vectorised over child-months from the latent process in `synth.process`.

Owns: `ChildMonths`, `child_months`, `make_outcomes`, `make_oracle`, `make_events`.
Events come back as one DataFrame (agency, child, event_date, event_type, value) with child the
0-based child index; `synth.identifiers` assigns them to agency records.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from synth import process as pr
from synth.county import County

#: term attendance is recorded on these (month, day) each year: autumn, spring, summer
TERM_DATES = ((12, 18), (3, 29), (7, 19))
FSM_CENSUS = (10, 5)  # free-school-meals eligibility recorded once a year (October census)


@dataclass
class ChildMonths:
    child: np.ndarray  # int32 child index
    t: np.ndarray  # int16 history month
    s: np.ndarray  # int8 household state in month t
    age: np.ndarray  # int16 age (birth month = 0)


def child_months(county: County) -> ChildMonths:
    kids = county.children
    first = np.maximum(pr.birth_month_index(kids.dob.to_numpy()), 0)
    counts = county.months - first
    child = np.repeat(np.arange(len(kids), dtype=np.int32), counts)
    start = np.repeat(np.cumsum(counts) - counts, counts)
    t = (first[child] + np.arange(len(child)) - start).astype(np.int16)
    hh = kids.hh.to_numpy()[child]
    s = county.states[hh, t + 1]
    age = pr.age_in_month(kids.dob.to_numpy()[child], t)
    return ChildMonths(child, t, s, age)


def _days_in(
    rng: np.random.Generator, t: np.ndarray, dob: np.ndarray, last: np.datetime64
) -> np.ndarray:
    """A uniform day of month t, on or after dob and on or before `last`."""
    lo = np.maximum(pr.month_start(t), np.asarray(dob, dtype="datetime64[D]"))
    hi = np.minimum(pr.month_start(t.astype(np.int64) + 1) - np.timedelta64(1, "D"), last)
    span = (hi - lo).astype(np.int64) + 1
    return lo + (rng.random(len(t)) * span).astype(np.int64).astype("timedelta64[D]")


def make_outcomes(
    rng: np.random.Generator, county: County, cm: ChildMonths, last: np.datetime64
) -> pd.DataFrame:
    u = county.children.u.to_numpy()[cm.child]
    h = pr.outcome_hazard(u, cm.s, cm.age)
    hit = rng.random(len(h)) < h
    child = cm.child[hit]
    dob = county.children.dob.to_numpy()[child]
    date = _days_in(rng, cm.t[hit], dob, last)
    typ = np.where(rng.random(len(child)) < pr.CP_SHARE, "cp_plan_start", "looked_after_start")
    return pd.DataFrame({"child": child, "date": date, "type": typ})


def make_oracle(county: County) -> pd.DataFrame:
    """p_true for every child-month (alive, under 18) of the window; months past the window use
    the chain's law.  The same recursion as `process.oracle_probability`, written out per state
    on 1-D arrays: children are sorted by birth month so those alive in month m are a prefix."""
    kids = county.children
    dob = kids.dob.to_numpy().astype("datetime64[D]")
    bmi = pr.birth_month_index(dob)
    order = np.argsort(bmi, kind="stable")
    bmi = bmi[order]
    late = ((dob - dob.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) > 0)[order]
    hh = kids.hh.to_numpy()[order]
    n = len(order)
    # survival 1 - h[state] as flat arrays indexed child * 19 + age (age 18 = survival 1)
    table = 1.0 - pr.hazard_table(kids.u.to_numpy()[order])  # (n, 3, 19)
    surv = [np.ascontiguousarray(table[:, j, :]).ravel() for j in range(3)]
    P = county.P[hh]
    Pc = [[np.ascontiguousarray(P[:, i, j]) for j in range(3)] for i in range(3)]
    row0 = np.arange(n, dtype=np.int64) * 19
    out_child, out_t, out_p, out_s = [], [], [], []
    for m in range(county.months):
        k_alive = int(np.searchsorted(bmi, m, side="right"))
        since = m - bmi[:k_alive] - late[:k_alive]
        under18 = np.maximum(since, 0) // 12 < 18
        s_prev = county.states[hh[:k_alive], m]  # column m = month m - 1
        v = [np.choose(s_prev, [Pc[0][j][:k_alive], Pc[1][j][:k_alive], Pc[2][j][:k_alive]])
             for j in range(3)]  # fmt: skip
        for k in range(pr.HORIZON):
            if k:
                v = [
                    v[0] * Pc[0][j][:k_alive]
                    + v[1] * Pc[1][j][:k_alive]
                    + v[2] * Pc[2][j][:k_alive]
                    for j in range(3)
                ]
            at = row0[:k_alive] + np.minimum(np.maximum(since + k, 0) // 12, 18)
            v = [v[j] * surv[j][at] for j in range(3)]
        p = 1.0 - (v[0] + v[1] + v[2])
        out_child.append(order[:k_alive][under18].astype(np.int32))
        out_t.append(np.full(int(under18.sum()), m, dtype=np.int16))
        out_p.append(p[under18].astype(np.float32))
        out_s.append(county.states[hh[:k_alive][under18], m + 1])
    return pd.DataFrame(
        {
            "child": np.concatenate(out_child),
            "t": np.concatenate(out_t),
            "p_true": np.concatenate(out_p),
            "state": np.concatenate(out_s).astype(np.int8),
        }
    )


def _frame(agency: str, child, date, typ, value=None) -> pd.DataFrame:
    n = len(child)
    return pd.DataFrame(
        {
            "agency": agency,
            "child": np.asarray(child, dtype=np.int32),
            "event_date": np.asarray(date, dtype="datetime64[D]"),
            "event_type": np.broadcast_to(np.asarray(typ, dtype=object), (n,)),
            "value": np.full(n, np.nan) if value is None else value,
        }
    )


def make_events(
    rng: np.random.Generator,
    county: County,
    cm: ChildMonths,
    outcomes: pd.DataFrame,
    extract_date: str,
) -> pd.DataFrame:
    kids = county.children
    last = np.datetime64(extract_date) - np.timedelta64(1, "D")
    window_start = pr.month_start(0)
    dob = kids.dob.to_numpy().astype("datetime64[D]")
    u_all = kids.u.to_numpy()
    male_all = (kids.sex.to_numpy() == "M").astype(float)
    hh_all = kids.hh.to_numpy()
    n = len(kids)
    frames: list[pd.DataFrame] = []

    # ---- Poisson child-month events
    u = u_all[cm.child]
    male = male_all[cm.child]
    for typ, r in pr.EVENT_RATES.items():
        sel = np.flatnonzero((cm.age >= r.age_min) & (cm.age <= r.age_max))
        lam = np.exp(pr.event_log_rate(r, u[sel], cm.s[sel], cm.age[sel], male[sel]))
        k = rng.poisson(lam)
        rows = np.repeat(sel[k > 0], k[k > 0])
        child = cm.child[rows]
        frames.append(_frame(r.agency, child, _days_in(rng, cm.t[rows], dob[child], last), typ))

    # ---- health: GP registration at birth (may predate the window) and after a house move
    reg = np.minimum(dob + rng.integers(0, 43, n).astype("timedelta64[D]"), last)
    frames.append(_frame("health", np.arange(n), reg, "gp_registration"))
    mv = kids.move_month.to_numpy()
    mv_date = pr.month_start(np.maximum(mv, 0)) + rng.integers(0, 28, n).astype("timedelta64[D]")
    moved = (mv >= 0) & (dob < mv_date)
    after = np.minimum(mv_date + rng.integers(0, 61, n).astype("timedelta64[D]"), last)
    frames.append(_frame("health", np.flatnonzero(moved), after[moved], "gp_registration"))
    # ---- education: a school move with most house moves of school-age children
    age_mv = pr.age_at(dob, mv_date)
    sm = moved & (age_mv >= 5) & (age_mv <= 16) & (rng.random(n) < 0.7)
    sm_date = np.minimum(mv_date + rng.integers(0, 45, n).astype("timedelta64[D]"), last)
    frames.append(_frame("education", np.flatnonzero(sm), sm_date[sm], "school_move"))

    # ---- education: termly attendance and yearly free school meals
    y0, y1 = int(str(window_start)[:4]), int(extract_date[:4])
    fsm = kids.fsm.to_numpy()
    for year in range(y0, y1 + 1):
        for month, day in TERM_DATES + (FSM_CENSUS,):
            when = np.datetime64(f"{year}-{month:02d}-{day:02d}")
            if when < window_start or when > last:
                continue
            t = int((when.astype("datetime64[M]") - pr.HISTORY_START).astype(int))
            age = pr.age_at(dob, when)
            s = county.states[hh_all, t + 1]
            ok = (age >= 5) & (age <= 16)
            if (month, day) == FSM_CENSUS:
                ok &= fsm | ((s == 2) & (rng.random(n) < 0.5))
                frames.append(_frame("education", np.flatnonzero(ok), when, "free_school_meals"))
            else:
                c = np.flatnonzero(ok)
                v = pr.attendance_percent(rng, u_all[c], s[c], fsm[c].astype(float))
                frames.append(_frame("education", c, when, "attendance", v))

    # ---- police: DA incidents per household-month, recorded for every child born by then
    d = county.households.d.to_numpy()
    lam = pr.DA_BASE * np.exp(pr.DA_B_S[county.states[:, 1:]] + pr.DA_B_D * d[:, None])
    k = rng.poisson(lam)
    hh_i, t_i = np.nonzero(k)
    reps = k[hh_i, t_i]
    hh_i, t_i = np.repeat(hh_i, reps), np.repeat(t_i, reps)
    inc_date = _days_in(rng, t_i, np.full(len(t_i), window_start), last)
    sizes = county.households["size"].to_numpy()
    firsts = np.cumsum(sizes) - sizes  # children are stored grouped by household
    per = sizes[hh_i]
    inc = np.repeat(np.arange(len(hh_i)), per)
    child = firsts[hh_i][inc] + (np.arange(len(inc)) - np.repeat(np.cumsum(per) - per, per))
    present = dob[child] <= inc_date[inc]
    frames.append(
        _frame("police", child[present], inc_date[inc][present], "domestic_abuse_household")
    )

    # ---- csc: the outcomes themselves
    frames.append(_frame("csc", outcomes.child.to_numpy(), outcomes.date.to_numpy(), outcomes.type))
    ev = pd.concat(frames, ignore_index=True)
    return ev
