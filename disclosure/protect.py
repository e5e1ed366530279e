"""The front door: protect a set of planner outputs together.

Owns `protect` (outputs with true counts -> the same frames with a `suppressed` column and the
count blanked) and `protect_detailed` (the same plus the `Solution`: rounds, cuts, primary and
secondary counts, for logs).  Outputs passed together are protected jointly: a cell shared by
two outputs is hidden in both or neither, and differences between outputs are in the audit.
Every result has passed `disclosure.audit` before it is returned.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from disclosure import primary
from disclosure.model import build, fill_values
from disclosure.secondary import Solution, solve_suppression
from disclosure.table import Group, Output

#: an optional boolean column of an output's frame: suppress this cell as if its count were small
#: (e.g. a forecast cell whose expected count is below the threshold)
FORCE = "force_suppress"


def _forced(outputs: Sequence[Output], prob) -> np.ndarray:
    """Cells an output marks `FORCE`: primary whatever their count."""
    forced = np.zeros(prob.n, dtype=bool)
    marks = {
        oi: out.frame[FORCE].fillna(False).to_numpy(dtype=bool)
        for oi, out in enumerate(outputs)
        if FORCE in out.frame.columns
    }
    if marks:
        for i in range(prob.n):
            forced[i] = any(marks[o][row] for o, row in prob.where[i] if o in marks)
    return forced


def protect_detailed(
    outputs: Sequence[Output],
    threshold: int = 10,
    protection: float | None = None,
    *,
    groups: Sequence[Group] = (),
    cost: str = "cells",
    suppress_zero: bool = False,
    time_limit: float = 60.0,
) -> tuple[list[pd.DataFrame], Solution]:
    """`protect`, also returning the `Solution` (which cells are primary and secondary)."""
    prob = build(outputs, groups, allow_missing=False)
    values = fill_values(prob)
    P = float(threshold if protection is None else protection)
    small = primary.flags(values, threshold, suppress_zero) | _forced(outputs, prob)
    sol = solve_suppression(
        prob,
        values,
        small & prob.published,
        small,
        threshold=threshold,
        protection=P,
        cost=cost,
        suppress_zero=suppress_zero,
        time_limit=time_limit,
    )
    frames = []
    for oi, out in enumerate(outputs):
        hide = np.zeros(len(out.frame), dtype=bool)
        for i in range(prob.n):
            for o, row in prob.where[i]:
                if o == oi:
                    hide[row] = sol.hidden[i]
        f = out.frame.copy()
        if "published" in f.columns:
            keep = f["published"].fillna(False).to_numpy(dtype=bool)
            f, hide = f[keep].drop(columns="published"), hide[keep]
        f[out.value] = f[out.value].astype("Int64").mask(hide)
        f["suppressed"] = hide
        frames.append(f.reset_index(drop=True))
    return frames, sol


def protect(
    outputs: Sequence[Output],
    threshold: int = 10,
    protection: float | None = None,
    *,
    groups: Sequence[Group] = (),
    cost: str = "cells",
    suppress_zero: bool = False,
    time_limit: float = 60.0,
) -> list[pd.DataFrame]:
    """Suppress small counts (``1 <= c < threshold``; zeros too with `suppress_zero`) and the
    cheapest secondary cells so that no hidden small count can be narrowed to a range narrower
    than `protection` (default: the threshold) from everything published together.

    Returns one frame per output, published rows only, the count column as nullable Int64 (NA
    where suppressed) and a boolean `suppressed` column.  Raises `DisclosureError` (naming
    output, cell key and rule, never a count) on negative, non-integer or inconsistent counts.
    """
    frames, _ = protect_detailed(
        outputs,
        threshold,
        protection,
        groups=groups,
        cost=cost,
        suppress_zero=suppress_zero,
        time_limit=time_limit,
    )
    return frames
