"""Secondary suppression: the cheapest extra cells to hide so no hidden small count is narrowed.

Owns `solve_suppression`, a cut loop between a master MILP (HiGHS through
`scipy.optimize.milp`) and the LP audit (`disclosure.attacker.check`):

1. Master: binary s_i per cell (1 = hidden).  Primary cells and unpublished cells are fixed at
   1 (protected: the primary cells and every unpublished small cell, whose value must not come
   out of the difference of two outputs); minimise the cost (`cost="cells"`: number of hidden cells, ties broken by the smaller
   total count; `cost="value"`: total hidden count, ties broken by fewer cells).  Constraints,
   for every protected cell p and every relation r holding p (each necessary for protection,
   so never cutting off a feasible answer): another cell of r is hidden; and when p is a part
   of r, ``sum(min(v_j, P) s_j for other parts j) + P s_total >= P - v_p`` (with r's total
   shown, p can rise only as far as the other hidden parts can fall).
2. Audit: the attacker's LP range of every hidden shown cell in the full system.
3. Each cell the audit finds narrow gets a cut: at least one of the shown cells its LP bounds
   rest on (the support of the LP duals) must be hidden.  This is valid: if none of them is
   hidden the same dual certificates bound the cell as tightly, and hiding more never
   narrows a range.  A narrow secondary cell joins the protected set.  Repeat to a clean audit.

The answer is optimal for the master's last cut set when HiGHS proves optimality within the
time limit (`Solution.optimal`); the loop stops after `max_rounds` with an error rather than
publish an unsafe table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from disclosure.attacker import check
from disclosure.model import Problem


@dataclass
class Solution:
    """The hidden cells and how the search went (figures only, no counts)."""

    hidden: np.ndarray  # bool per cell of the problem (includes unpublished cells)
    primary: np.ndarray  # bool per cell
    rounds: int
    cuts: int
    optimal: bool
    seconds: float

    @property
    def secondary(self) -> np.ndarray:
        return self.hidden & ~self.primary


def costs(values: np.ndarray, published: np.ndarray, cost: str) -> np.ndarray:
    """The master's objective per cell (unpublished cells cost nothing: always hidden)."""
    v = np.where(published, values, 0.0)
    if cost == "cells":
        c = 1.0 + v / (v.sum() + 1.0)
    elif cost == "value":
        c = v + 1.0 / (len(v) + 1.0)
    else:
        raise ValueError("cost must be 'cells' or 'value'")
    return np.where(published, c, 0.0)


def local_rows(
    A: sp.csr_matrix, values: np.ndarray, protected: np.ndarray, P: float
) -> tuple[list[np.ndarray], list[np.ndarray], list[float]]:
    """(columns, coefficients, lower bound) of the single-relation constraints of the master."""
    cols_out, coef_out, lb_out = [], [], []
    for r in range(A.shape[0]):
        cols = A.indices[A.indptr[r] : A.indptr[r + 1]]
        sign = A.data[A.indptr[r] : A.indptr[r + 1]]
        for k, p in enumerate(cols):
            if not protected[p]:
                continue
            others = np.delete(cols, k)
            cols_out.append(others)
            coef_out.append(np.ones(len(others)))
            lb_out.append(1.0)
            need = P - values[p]
            if sign[k] < 0 and need > 0:  # p is a part of relation r
                osign = np.delete(sign, k)
                coef = np.where(osign > 0, P, np.minimum(values[others], P))
                cols_out.append(others)
                coef_out.append(coef)
                lb_out.append(need)
    return cols_out, coef_out, lb_out


def _master(
    c: np.ndarray, fixed: np.ndarray, rows: list[tuple[np.ndarray, np.ndarray, float]], limit: float
) -> tuple[np.ndarray, bool]:
    n = len(c)
    cons = []
    if rows:
        ri, ci, dat, lb = [], [], [], []
        for r, (cols, coef, lo) in enumerate(rows):
            ri.extend([r] * len(cols))
            ci.extend(cols.tolist())
            dat.extend(coef.tolist())
            lb.append(lo)
        M = sp.csr_matrix((dat, (ri, ci)), shape=(len(rows), n))
        cons.append(LinearConstraint(M, np.array(lb), np.inf))
    lower = np.where(fixed, 1.0, 0.0)
    res = milp(
        c,
        constraints=cons,
        integrality=np.ones(n),
        bounds=Bounds(lower, np.ones(n)),
        options={"time_limit": limit, "disp": False},
    )
    if res.x is None:
        raise RuntimeError(f"HiGHS found no suppression pattern: {res.message}")
    return res.x > 0.5, res.status == 0


def solve_suppression(
    prob: Problem,
    values: np.ndarray,
    primary_cells: np.ndarray,
    small: np.ndarray,
    *,
    threshold: int,
    protection: float,
    cost: str = "cells",
    suppress_zero: bool = False,
    time_limit: float = 60.0,
    max_rounds: int = 50,
) -> Solution:
    """Hide the primary cells and the cheapest secondary set that passes the audit; `small`
    also marks unpublished cells that must not be narrowed (differencing)."""
    t0 = time.perf_counter()
    c = costs(values, prob.published, cost)
    always = primary_cells | ~prob.published
    protected = primary_cells | small
    cuts: list[tuple[np.ndarray, np.ndarray, float]] = []
    optimal = True
    truth = prob.__class__(**{**prob.__dict__, "values": values})
    for rounds in range(1, max_rounds + 1):
        local = list(zip(*local_rows(prob.A, values, protected, protection), strict=True))
        hidden, opt = _master(c, always, local + cuts, time_limit)
        optimal = optimal and opt
        audit_values = np.where(hidden, np.nan, values)
        shown = prob.__class__(**{**truth.__dict__, "values": audit_values})
        _, narrow = check(shown, hidden, threshold, protection, suppress_zero)
        if not narrow:
            return Solution(
                hidden, primary_cells, rounds, len(cuts), optimal, time.perf_counter() - t0
            )
        for i, iv in narrow.items():
            protected[i] = True
            support = iv.support[~hidden[iv.support]] if len(iv.support) else iv.support
            if len(support) == 0:  # no dual to go on: any shown cell linked to it
                linked = np.unique(prob.A[prob.A[:, [i]].nonzero()[0]].nonzero()[1])
                support = linked[~hidden[linked]]
            if len(support) == 0:
                raise RuntimeError("a hidden cell is narrow with every linked cell hidden")
            cuts.append((support, np.ones(len(support)), 1.0))
    raise RuntimeError(f"secondary suppression did not pass the audit in {max_rounds} rounds")
