"""The attacker's check: what the published values, together, say about each suppressed cell.

Owns `audit` (published outputs -> findings), `Finding` and `feasible_intervals`, the linear
programmes (HiGHS, through its own Python interface `highspy`, warm-started) that give each unknown cell's feasible range
``[lo, hi]`` given every published count, every relation (inside and across outputs, shared
keys being one unknown) and non-negativity.  Unknowns are split into connected components (two
unknowns are linked when a relation holds both), so each programme is small.

The rule (docs/disclosure.md): a hidden cell (suppressed, or never published, e.g. the
difference between two outputs) is protected when ``hi - lo >= protection``, or when
``lo >= threshold`` (the attacker learns only that it is not a small count), or when ``hi < 1``
(it is zero, which is shown anyway unless zeros are suppressed).  A finding
names the output, the cell key and the rule broken, never a count or a bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highspy
import numpy as np
import scipy.sparse as sp

from disclosure import primary
from disclosure.model import Problem, build
from disclosure.table import Group, Key, Output, format_key

TOL = 1e-6


@dataclass(frozen=True)
class Finding:
    """A rule broken by the published outputs: which output, which cell, which rule."""

    output: str
    key: Key
    rule: str

    def __str__(self) -> str:
        return f"{self.output} {format_key(self.key)}: {self.rule}"


@dataclass
class Interval:
    """An unknown cell's feasible range and, for cuts, the published cells its bounds rest on."""

    lo: float
    hi: float
    support: np.ndarray  # indices of known cells whose publication the bounds depend on


def components(A: sp.csr_matrix, unknown: np.ndarray) -> np.ndarray:
    """Component label per cell (-1 for known cells): unknowns linked through relations."""
    n = A.shape[1]
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for r in range(A.shape[0]):
        cols = A.indices[A.indptr[r] : A.indptr[r + 1]]
        cols = cols[unknown[cols]]
        for c in cols[1:]:
            a, b = find(int(cols[0])), find(int(c))
            if a != b:
                parent[b] = a
    return np.array([find(i) if unknown[i] else -1 for i in range(n)])


def _highs(A_eq: sp.csr_matrix, b_eq: np.ndarray) -> highspy.Highs:
    """A HiGHS model ``A_eq x = b_eq, x >= 0`` with zero cost, ready for objective changes."""
    A = sp.csc_matrix(A_eq)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = A.shape[1], A.shape[0]
    lp.col_cost_ = np.zeros(A.shape[1])
    lp.col_lower_ = np.zeros(A.shape[1])
    lp.col_upper_ = np.full(A.shape[1], highspy.kHighsInf)
    lp.row_lower_ = lp.row_upper_ = np.asarray(b_eq, dtype=float)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_ = A.indptr, A.indices
    lp.a_matrix_.value_ = A.data
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("presolve", "off")  # keep the basis between objectives (warm start)
    h.setOptionValue("solver", "simplex")
    # primal simplex: a new objective leaves the last basis primal feasible, so each re-solve
    # is a few pivots (dual simplex restarts far away: about 15x slower here)
    h.setOptionValue("simplex_strategy", 4)
    h.passModel(lp)
    return h


def feasible_intervals(
    A: sp.csr_matrix, values: np.ndarray, unknown: np.ndarray, cells: Sequence[int]
) -> dict[int, Interval | None]:
    """Feasible ``[lo, hi]`` of each of `cells` (all unknown) given the known `values`; None
    when the published values admit no table at all (inconsistent).  One HiGHS model per
    component; each cell's min and max re-solve it warm-started with a new objective."""
    A = A.tocsr()
    comp = components(A, unknown)
    known = ~unknown
    v = np.where(known, np.nan_to_num(values), 0.0)
    out: dict[int, Interval | None] = {}
    wanted: dict[int, list[int]] = {}
    for c in cells:
        wanted.setdefault(int(comp[c]), []).append(int(c))
    Acsc = A.tocsc()
    known_idx = np.flatnonzero(known)
    for label, members in wanted.items():
        cols = np.flatnonzero(comp == label)
        rows = np.unique(Acsc[:, cols].nonzero()[0])
        if len(rows) == 0:  # an unknown in no relation: unbounded above
            for c in members:
                out[c] = Interval(0.0, np.inf, np.array([], dtype=int))
            continue
        sub = A[rows]
        sub_known = sub[:, known_idx]
        b_eq = -(sub_known @ v[known_idx])
        h = _highs(sub[:, cols], b_eq)
        pos = {int(c): i for i, c in enumerate(cols)}
        for c in members:
            bounds, support, ok = [], set(), True
            for sign in (1.0, -1.0):  # min x_c, then max x_c (as min -x_c)
                h.changeColCost(pos[c], sign)
                h.run()
                status = h.getModelStatus()
                if status == highspy.HighsModelStatus.kInfeasible:
                    ok = False
                    break
                if status in (
                    highspy.HighsModelStatus.kUnbounded,
                    highspy.HighsModelStatus.kUnboundedOrInfeasible,
                ):
                    bounds.append(np.inf)
                    continue
                if status != highspy.HighsModelStatus.kOptimal:
                    raise RuntimeError(
                        f"HiGHS failed on an audit LP: {h.modelStatusToString(status)}"
                    )
                bounds.append(sign * h.getInfo().objective_function_value)
                y = np.asarray(h.getSolution().row_dual)
                used = sub_known.T @ y
                support.update(known_idx[np.flatnonzero(np.abs(used) > TOL)].tolist())
            h.changeColCost(pos[c], 0.0)
            out[c] = (
                Interval(bounds[0], bounds[1], np.array(sorted(support), dtype=int)) if ok else None
            )
    return out


def check(
    prob: Problem, unknown: np.ndarray, threshold: int, protection: float, suppress_zero: bool
) -> tuple[list[Finding], dict[int, Interval]]:
    """Findings for `prob` with `unknown` cells hidden, and the narrow cells' intervals."""
    findings: list[Finding] = []
    shown = prob.published & ~unknown
    small = primary.flags(prob.values, threshold, suppress_zero) & shown
    for i in np.flatnonzero(small):
        for oi, _ in prob.where[i]:
            findings.append(
                Finding(prob.names[oi], prob.keys[i], "primary: a small count is shown")
            )
    targets = np.flatnonzero(unknown)
    ivals = feasible_intervals(prob.A, prob.values, unknown, targets.tolist())
    narrow: dict[int, Interval] = {}
    for i in targets:
        iv = ivals[int(i)]
        if iv is None:
            rule = "inconsistent: the published counts admit no table"
        elif (
            iv.hi - iv.lo < protection - TOL
            and iv.lo < threshold - TOL
            and (suppress_zero or iv.hi >= 1 - TOL)  # pinned to 0: zeros are shown anyway
        ):
            what = "exact" if iv.hi - iv.lo < TOL else "narrow"
            how = (
                "recoverable from the published counts"
                if what == "exact"
                else f"feasible range narrower than the protection level {protection:g}"
            )
            if not prob.published[i]:
                what, how = f"differencing ({what})", f"an unpublished cell is {how}"
            rule = f"{what}: {how}"
            narrow[int(i)] = iv
        else:
            continue
        for oi, _ in prob.where[i]:
            findings.append(Finding(prob.names[oi], prob.keys[i], rule))
    return findings, narrow


def audit(
    outputs: Sequence[Output],
    threshold: int = 10,
    protection: float | None = None,
    *,
    groups: Sequence[Group] = (),
    suppress_zero: bool = False,
) -> list[Finding]:
    """Check published outputs together (values NA where suppressed; cells with the same key
    are one unknown; `groups` add relations between categories).  Returns the findings: shown
    small counts, and suppressed cells an attacker can narrow below `protection` (default:
    the threshold) while they could still be small.  Empty when the outputs are safe."""
    prob = build(outputs, groups, allow_missing=True)
    unknown = np.isnan(prob.values)
    p = float(threshold if protection is None else protection)
    findings, _ = check(prob, unknown, threshold, p, suppress_zero)
    return findings
