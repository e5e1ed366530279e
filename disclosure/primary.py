"""Primary suppression: which counts are too small to show.

Owns `flags`: a count c is primary-suppressed when ``1 <= c < threshold``.  Zero is shown by
default, as in DfE and ONS published statistics: a zero says nobody is in the cell, which
discloses nothing about any one child that the small-number rule is protecting, and hiding
zeros would hide structure (e.g. an age band a service does not serve) while forcing extra
secondary suppression.  Where a zero would itself be disclosive (e.g. "no child in this ward
was NOT referred"), `suppress_zero=True` treats zeros as small too.
"""

from __future__ import annotations

import numpy as np


def flags(values: np.ndarray, threshold: int, suppress_zero: bool = False) -> np.ndarray:
    """True where a known count must be suppressed (NaN, i.e. unknown, is never flagged)."""
    if int(threshold) != threshold or threshold < 1:
        raise ValueError("the threshold must be a positive integer")
    v = np.asarray(values, dtype=float)
    known = ~np.isnan(v)
    low = 0.0 if suppress_zero else 1.0
    with np.errstate(invalid="ignore"):
        return known & (v >= low) & (v < threshold)
