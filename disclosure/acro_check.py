"""A second opinion from ACRO (Automatic Checking of Research Outputs, `acro` 1.0.2).

Owns `compare_with_acro`: ACRO's own checks on the microdata behind a two-way table (its
`crosstab`, suppression on, threshold set to ours, zeros not disclosive) against the cells our
`protect` hid.  For a frequency table ACRO runs its minimum-threshold, zero and linked-table
checks; its dominance rules (N-K, p-ratio) are defined for magnitude tables (sums of a value
over contributors), and every child contributes exactly 1 to a count, so they do not apply.
ACRO's threshold rule is ``count < threshold`` and so also flags zeros, which we show
(docs/disclosure.md): those are reported apart, not as disagreements.  ACRO does not do
secondary suppression (it recomputes margins without the redacted rows), so cells we hide
that ACRO passes are expected: our secondary cells.

ACRO is imported only when called: on import it configures the root logger (INFO) if nothing
has, and it pulls in matplotlib (whose cache goes to a temporary directory unless
MPLCONFIGDIR is set).  `crosstab` writes no file (only ACRO's `finalise`, never called here).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from dataclasses import dataclass, field

import pandas as pd

from disclosure.table import TOTAL


@dataclass
class AcroComparison:
    """How ACRO's verdict on a table compares with our suppression (cell labels, no counts)."""

    acro_status: str  # ACRO's overall status: pass / review / fail
    acro_flagged: int  # cells ACRO's threshold rule flags
    missed: list[tuple[str, str]] = field(default_factory=list)  # ACRO flags, we show: bad
    zeros: int = 0  # cells ACRO flags that are zero, shown by our convention
    secondary: int = 0  # cells we hide that ACRO passes (our secondary suppression)

    @property
    def agrees(self) -> bool:
        """True when every non-zero cell ACRO flags is hidden by us."""
        return not self.missed


def _acro(threshold: int):
    os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp(prefix="joinedup-mpl-"))
    os.environ.setdefault("MPLBACKEND", "Agg")
    import acro  # lazy: see the module docstring

    logging.getLogger("acro").setLevel(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()):
        session = acro.ACRO(suppress=True)
    # ACRO reads its settings from a YAML beside its package; the same dict is its checks'
    # risk appetite, so set ours on it rather than write into site-packages
    session.config["safe_threshold"] = int(threshold)
    session.config["zeros_are_disclosive"] = False
    return session


def compare_with_acro(
    micro: pd.DataFrame,
    rows: str,
    cols: str,
    protected: pd.DataFrame,
    value: str,
    threshold: int = 10,
    total: str = TOTAL,
) -> AcroComparison:
    """Run ACRO on `micro` (one row per child: the `rows` and `cols` categories) and compare
    its per-cell verdict, margins included, with `protected` (our `protect` output for the
    same table: columns `rows`, `cols`, `value`, `suppressed`; margins labelled `total`)."""
    session = _acro(threshold)
    with contextlib.redirect_stdout(io.StringIO()):
        session.crosstab(
            micro[rows].astype(str), micro[cols].astype(str), margins=True, margins_name=total
        )
    record = list(session.results.results.values())[-1]
    outcome: pd.DataFrame = record.outcome
    true = pd.crosstab(
        micro[rows].astype(str), micro[cols].astype(str), margins=True, margins_name=total
    )
    ours = protected.assign(
        **{rows: protected[rows].astype(str), cols: protected[cols].astype(str)}
    ).set_index([rows, cols])["suppressed"]
    res = AcroComparison(acro_status=str(record.status), acro_flagged=0)
    for r in outcome.index:
        for c in outcome.columns:
            flagged = "MinimumThresholdCheck" in str(outcome.loc[r, c])
            hidden = bool(ours.get((str(r), str(c)), False))
            if flagged:
                res.acro_flagged += 1
                if int(true.loc[r, c]) == 0:
                    res.zeros += 1
                elif not hidden:
                    res.missed.append((str(r), str(c)))
            elif hidden:
                res.secondary += 1
    return res
