"""The latent process: the history calendar, each household's 3-state monthly Markov chain, the
outcome hazard, the exact oracle, and the event-rate table.

Owns every numeric parameter of the process (documented with the formulas in synth/README.md):
`HISTORY_START`, `transition_matrices`, `stationary`, `simulate_states`, `outcome_hazard`,
`OUTCOME_A`, `OUTCOME_C`, `oracle_probability`, `EVENT_RATES`, `event_log_rate`, `age_at`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HISTORY_START = np.datetime64("2019-01", "M")
HORIZON = 12  # months the outcome window covers

# ----------------------------------------------------------------- calendar and ages


def n_months(extract_date: str) -> int:
    """History months 2019-01 .. the month before the extract date."""
    return int(np.datetime64(extract_date[:7], "M") - HISTORY_START)


def month_start(t: np.ndarray | int) -> np.ndarray:
    """First day (datetime64[D]) of history month index t (0 = 2019-01; may exceed the window)."""
    return (HISTORY_START + np.asarray(t, dtype="int64")).astype("datetime64[D]")


def ymd(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = np.asarray(d, dtype="datetime64[D]")
    y = d.astype("datetime64[Y]").astype(int) + 1970
    m = d.astype("datetime64[M]").astype(int) % 12 + 1
    day = (d - d.astype("datetime64[M]").astype("datetime64[D]")).astype(int) + 1
    return y, m, day


def age_at(dob: np.ndarray, when: np.ndarray) -> np.ndarray:
    """Completed years of age on date `when` (exact calendar arithmetic, broadcasting)."""
    by, bm, bd = ymd(dob)
    wy, wm, wd = ymd(when)
    before = (wm < bm) | ((wm == bm) & (wd < bd))
    return (wy - by - before.astype(int)).astype(np.int16)


def birth_month_index(dob: np.ndarray) -> np.ndarray:
    """History month index of each date of birth (negative before 2019-01)."""
    return (np.asarray(dob, dtype="datetime64[D]").astype("datetime64[M]") - HISTORY_START).astype(
        np.int64
    )


def age_in_month(dob: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Age in whole years at the first day of history month t, broadcasting; the birth month
    counts as age 0 and months before it as -1 (not born)."""
    dob = np.asarray(dob, dtype="datetime64[D]")
    bmi = birth_month_index(dob)
    late = (dob - dob.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) > 0
    since = np.asarray(t) - bmi
    age = (since - late) // 12
    return np.where(since < 0, -1, np.maximum(age, 0)).astype(np.int16)


# ----------------------------------------------------------------- household Markov chain


def deprivation(imd_decile: np.ndarray) -> np.ndarray:
    """d in [-1, 1]: +1 for IMD decile 1 (most deprived), -1 for decile 10."""
    return (5.5 - np.asarray(imd_decile, dtype=float)) / 4.5


def transition_matrices(d: np.ndarray) -> np.ndarray:
    """(n, 3, 3) monthly transition matrices P[from, to] for deprivation scores d (see README)."""
    d = np.asarray(d, dtype=float)
    p01 = 0.009 * np.exp(0.9 * d)
    p02 = 0.001 * np.exp(0.9 * d)
    p10 = 0.09 * np.exp(-0.3 * d)
    p12 = 0.035 * np.exp(0.5 * d)
    p20 = 0.05 + 0 * d
    p21 = 0.15 + 0 * d
    P = np.empty(d.shape + (3, 3))
    P[..., 0, 1], P[..., 0, 2] = p01, p02
    P[..., 0, 0] = 1 - p01 - p02
    P[..., 1, 0], P[..., 1, 2] = p10, p12
    P[..., 1, 1] = 1 - p10 - p12
    P[..., 2, 0], P[..., 2, 1] = p20, p21
    P[..., 2, 2] = 1 - p20 - p21
    return P


def stationary(P: np.ndarray) -> np.ndarray:
    """Stationary distributions of (n, 3, 3) transition matrices, shape (n, 3): solves
    pi (P - I) = 0 with sum(pi) = 1."""
    A = np.swapaxes(P, -1, -2) - np.eye(3)
    A[..., 2, :] = 1.0
    b = np.zeros(P.shape[:-1])
    b[..., 2] = 1.0
    return np.linalg.solve(A, b[..., None])[..., 0]


def draw_next(rng: np.random.Generator, s: np.ndarray, P: np.ndarray) -> np.ndarray:
    """One step of the chain for each row: s (n,) current states, P (n, 3, 3)."""
    rows = P[np.arange(len(s)), s]  # (n, 3)
    cum = np.cumsum(rows, axis=1)
    r = rng.random(len(s))[:, None]
    return (r > cum[:, :2]).sum(axis=1).astype(np.int8)


def simulate_states(rng: np.random.Generator, P: np.ndarray, months: int) -> np.ndarray:
    """States (n, months + 1) for n households: column 0 is month -1 (2018-12), drawn from the
    stationary law; column t + 1 is history month t."""
    n = P.shape[0]
    pi = stationary(P)
    s = np.empty((n, months + 1), dtype=np.int8)
    cum = np.cumsum(pi, axis=1)
    s[:, 0] = (rng.random(n)[:, None] > cum[:, :2]).sum(axis=1)
    for t in range(months):
        s[:, t + 1] = draw_next(rng, s[:, t], P)
    return s


# ----------------------------------------------------------------- outcome hazard and oracle

#: intercept, calibrated so ~1% of children have an outcome in any 12 months (see README)
OUTCOME_A = -8.6
OUTCOME_B_U = 0.9
#: state effects c[s] for s = stable, stressed, crisis
OUTCOME_C = np.array([0.0, 1.7, 3.4])
#: share of outcomes that are cp_plan_start (the rest looked_after_start)
CP_SHARE = 0.7


def outcome_age_term(age: np.ndarray) -> np.ndarray:
    """g(age): infants highest, then under-5s; 16-17 lowest; 0 hazard from 18 handled by caller."""
    age = np.asarray(age)
    return np.select(
        [age < 1, age < 5, age < 10, age < 16],
        [1.0, 0.35, 0.0, 0.15],
        -0.4,
    )


def outcome_hazard(u: np.ndarray, state: np.ndarray, age: np.ndarray) -> np.ndarray:
    """h = sigmoid(a + 0.9 u + c[s] + g(age)), and 0 when age >= 18 or age < 0 (not yet born)."""
    x = OUTCOME_A + OUTCOME_B_U * u + OUTCOME_C[state] + outcome_age_term(age)
    h = 1.0 / (1.0 + np.exp(-x))
    return np.where((age >= 0) & (age < 18), h, 0.0)


def hazard_table(u: np.ndarray) -> np.ndarray:
    """(n, 3, 19) hazards h[i, s, age] for ages 0..17 and a zero column for age 18 and over."""
    ages = np.arange(19)
    return outcome_hazard(u[:, None, None], np.arange(3)[None, :, None], ages[None, None, :])


def oracle_probability(
    s_prev: np.ndarray, u: np.ndarray, ages: np.ndarray, P: np.ndarray
) -> np.ndarray:
    """P(at least one outcome in the next `ages.shape[1]` months | s_{m-1}, u, ages), exactly.

    s_prev (n,) state in the month before m; u (n,); ages (n, H) age in each month m..m+H-1;
    P (n, 3, 3).  Forward recursion: v_0(j) = P[s_prev, j] (1 - h_0(j)),
    v_k(j) = sum_i v_{k-1}(i) P[i, j] (1 - h_k(j)); result 1 - sum_j v_{H-1}(j)."""
    n = len(s_prev)
    states = np.arange(3)
    v = P[np.arange(n), s_prev]  # (n, 3) law of s_m
    for k in range(ages.shape[1]):
        if k:
            v = np.einsum("ni,nij->nj", v, P)
        h = outcome_hazard(u[:, None], states[None, :], ages[:, k : k + 1])
        v = v * (1.0 - h)
    return 1.0 - v.sum(axis=1)


# ----------------------------------------------------------------- events


@dataclass(frozen=True)
class Rate:
    """Monthly Poisson rate base * exp(b_u u + b_s[s] + b_male [male] + age_term(age)) on
    ages [age_min, age_max]; `infant_crisis` is added when age < 2 and s = crisis."""

    agency: str
    base: float
    b_u: float
    b_s: tuple[float, float, float]
    age_min: int = 0
    age_max: int = 17
    b_male: float = 0.0
    teen: float = 0.0  # added when age >= 13
    infant: float = 0.0  # added when age < 1
    infant_crisis: float = 0.0


#: per child-month Poisson event types (gp_registration, attendance, free_school_meals,
#: domestic_abuse_household, school moves at house moves and the outcomes are made elsewhere)
EVENT_RATES: dict[str, Rate] = {
    "ae_attendance": Rate("health", 0.020, 0.2, (0.0, 0.3, 0.6), infant=0.6, teen=0.2),
    "ae_injury": Rate("health", 0.004, 0.3, (0.0, 0.5, 1.2), infant_crisis=1.5),
    "teen_parent": Rate("health", 0.0006, 0.5, (0.0, 0.4, 0.9), 14, 17, b_male=-1.5),
    "mental_health_referral": Rate("health", 0.003, 0.4, (0.0, 0.6, 1.1), 12, 17),
    "missing_episode": Rate("police", 0.0015, 0.6, (0.0, 0.8, 1.5), 10, 17, teen=0.5),
    "arrest": Rate("police", 0.0012, 0.7, (0.0, 0.5, 1.0), 10, 17, b_male=0.8, teen=0.6),
    "asb": Rate("police", 0.0015, 0.6, (0.0, 0.4, 0.8), 8, 17, b_male=0.5, teen=0.4),
    "sen_support": Rate("education", 0.0025, 0.5, (0.0, 0.2, 0.4), 5, 16, b_male=0.4),
    "ehcp": Rate("education", 0.0004, 0.6, (0.0, 0.1, 0.2), 5, 16, b_male=0.4),
    "suspension": Rate("education", 0.0025, 0.7, (0.0, 0.6, 1.2), 5, 16, b_male=0.6, teen=0.8),
    "exclusion": Rate("education", 0.0002, 0.8, (0.0, 0.7, 1.4), 5, 16, b_male=0.6, teen=0.8),
    "school_move": Rate("education", 0.003, 0.2, (0.0, 0.3, 0.6), 5, 16),
    "contact": Rate("csc", 0.0016, 0.3, (0.0, 1.6, 3.0), infant=0.5),
    "referral": Rate("csc", 0.0008, 0.3, (0.0, 1.6, 3.0), infant=0.5),
    "assessment": Rate("csc", 0.0006, 0.3, (0.0, 1.6, 3.0), infant=0.5),
    "child_in_need": Rate("csc", 0.00025, 0.3, (0.0, 1.5, 3.0)),
}

#: household-month rate of police DA incidents: DA_BASE * exp(DA_B_S[s] + DA_B_D * d)
DA_BASE = 0.0012
DA_B_S = np.array([0.0, 1.5, 2.8])
DA_B_D = 0.3


def event_log_rate(
    r: Rate, u: np.ndarray, s: np.ndarray, age: np.ndarray, male: np.ndarray
) -> np.ndarray:
    """log of the monthly rate; -inf outside the type's age limits."""
    x = np.log(r.base) + r.b_u * u + np.asarray(r.b_s)[s] + r.b_male * male
    if r.teen:
        x = x + r.teen * (age >= 13)
    if r.infant:
        x = x + r.infant * (age < 1)
    if r.infant_crisis:
        x = x + r.infant_crisis * ((age < 2) & (s == 2))
    return np.where((age >= r.age_min) & (age <= r.age_max), x, -np.inf)


def attendance_percent(
    rng: np.random.Generator, u: np.ndarray, s: np.ndarray, fsm: np.ndarray
) -> np.ndarray:
    """Term attendance % = 100 sigmoid(3.3 - 0.35 u - 0.2 fsm - [0, 0.6, 1.4][s] + N(0, 0.45^2)),
    one decimal."""
    x = 3.3 - 0.35 * u - 0.2 * fsm - np.array([0.0, 0.6, 1.4])[s] + rng.normal(0, 0.45, len(u))
    return np.round(100.0 / (1.0 + np.exp(-x)), 1)
