"""The table model: published outputs as cells with keys, counts and additive relations.

Owns `Output` (one planner output: a frame of cells, the dimensions that key them, the count
column and which cells are published), `from_frame` (an interior cross table -> the total, every
margin and the interior cells, each a row), `Group` (a category that is the sum of other
categories of the same dimension, e.g. "5-17" = "5-9" + "10-15" + "16-17") and the canonical
cell key that makes the same cell in several outputs one unknown.

A cell's canonical key is the set of (dimension, value) pairs it is restricted to: a dimension at
its total label is dropped, and an output's `scope` (constant restrictions such as
``{"age_band": "5-17"}``) is added.  So the 12-month total by area (dims ``area``) and the
``month = Total`` margin of a monthly area table are the same cell, and must be published or
suppressed together.  Relations inside an output come from its layout: a cell whose dimension d
is at the total label equals the sum of the cells that agree elsewhere and take each category of
d.  Errors name the output, the cell key and the rule broken, never a count.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: the label a dimension takes in a margin ("all values of this dimension")
TOTAL = "Total"

#: a canonical cell key: sorted (dimension, value) pairs, totals dropped, scope added
Key = tuple[tuple[str, str], ...]


class DisclosureError(ValueError):
    """An input the disclosure control cannot accept.  The message names the output, the cell
    key and the rule broken; it never contains a count."""

    def __init__(self, output: str, key: Key | None, rule: str):
        self.output, self.key, self.rule = output, key, rule
        where = f" cell {format_key(key)}" if key is not None else ""
        super().__init__(f"output {output!r}{where}: {rule}")


def format_key(key: Key) -> str:
    """A key as text for messages and findings: ``{area=A1, age_band=0-4}`` (``{}`` = all)."""
    return "{" + ", ".join(f"{d}={v}" for d, v in key) + "}"


@dataclass(frozen=True)
class Group:
    """Category `label` of dimension `dim` is the sum of categories `members` (wherever a cell
    with ``dim = label`` exists, it equals the sum of the same cells with each member)."""

    dim: str
    label: str
    members: tuple[str, ...]


@dataclass
class Output:
    """One planner output (a page, chart, CSV or Excel sheet).

    `frame` has one row per cell: the `dims` columns (a margin has `total` in the dimensions it
    sums over), the count column `value` (non-negative integers; NA/None where already
    suppressed, for `audit`) and optionally a boolean `published` column (False: the cell exists
    in the relations, e.g. an unpublished margin, but the reader never sees it).  `scope` adds
    constant restrictions to every key (e.g. an output of children aged 5-17 only)."""

    name: str
    frame: pd.DataFrame
    dims: tuple[str, ...]
    value: str
    total: str = TOTAL
    scope: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dims = tuple(self.dims)
        missing = [c for c in (*self.dims, self.value) if c not in self.frame.columns]
        if missing:
            raise DisclosureError(self.name, None, f"missing columns {missing}")
        clash = set(self.dims) & set(self.scope)
        if clash:
            raise DisclosureError(self.name, None, f"scope repeats dimensions {sorted(clash)}")

    def keys(self) -> list[Key]:
        """The canonical key of every row, in row order."""
        cols = [self.frame[d].astype(str).to_numpy() for d in self.dims]
        scope = tuple((str(d), str(v)) for d, v in self.scope.items())
        out = []
        for vals in zip(*cols, strict=True) if cols else [()] * len(self.frame):
            pairs = [(d, v) for d, v in zip(self.dims, vals, strict=True) if v != self.total]
            out.append(tuple(sorted(pairs + list(scope))))
        return out

    def published(self) -> np.ndarray:
        """Which rows the reader sees (all, unless a `published` column says otherwise)."""
        if "published" in self.frame.columns:
            return self.frame["published"].fillna(False).to_numpy(dtype=bool)
        return np.ones(len(self.frame), dtype=bool)

    def counts(self, *, allow_missing: bool) -> np.ndarray:
        """The count column as floats (NaN where suppressed), checked: integer and >= 0.  A
        missing count is an error unless `allow_missing` (an audit of published values)."""
        raw = pd.to_numeric(self.frame[self.value], errors="coerce")
        bad_type = raw.isna() & self.frame[self.value].notna()
        vals = raw.to_numpy(dtype=float)
        keys = None
        for i in range(len(vals)):
            v = vals[i]
            rule = None
            if bad_type.iloc[i]:
                rule = "count is not a number"
            elif np.isnan(v):
                if not allow_missing and self.published()[i]:
                    rule = "count is missing"
            elif v < 0:
                rule = "count is negative (counts of children must be >= 0)"
            elif not float(v).is_integer():
                rule = "count is not an integer (counts of children must be whole numbers)"
            if rule is not None:
                keys = keys if keys is not None else self.keys()
                raise DisclosureError(self.name, keys[i], rule)
        return vals

    def relations(self) -> list[tuple[Key, tuple[Key, ...]]]:
        """(total, parts) for every row with some dimension at the total label, over the full
        lattice of the output's categories (cells absent from the frame are unknowns)."""
        cats = {
            d: sorted(set(self.frame[d].astype(str)) - {self.total}, key=str) for d in self.dims
        }
        scope = tuple((str(d), str(v)) for d, v in self.scope.items())
        rels = []
        for combo in itertools.product(*[[self.total, *cats[d]] for d in self.dims]):
            for j, d in enumerate(self.dims):
                if combo[j] != self.total or not cats[d]:
                    continue
                fixed = [(e, v) for e, v in zip(self.dims, combo, strict=True) if v != self.total]
                total = tuple(sorted(fixed + list(scope)))
                parts = tuple(tuple(sorted([*fixed, (d, c), *scope])) for c in cats[d])
                rels.append((total, parts))
        return rels


def from_frame(
    df: pd.DataFrame,
    dims: Sequence[str],
    value: str,
    name: str = "output",
    *,
    levels: Iterable[Sequence[str]] | None = None,
    total: str = TOTAL,
    scope: Mapping[str, str] | None = None,
    complete: bool = True,
) -> Output:
    """An `Output` holding the total, every margin and the interior cells of a cross table.

    `df` has one row per interior cell (the `dims` columns and the count `value`; repeated keys
    are summed; with `complete` absent combinations are zero).  `levels` lists which
    aggregation levels are published, each as the dimensions it keeps (``()`` = the grand
    total, ``dims`` = the interior); by default all.  Unpublished cells stay in the relations."""
    dims = list(dims)
    out0 = Output(name, df, tuple(dims), value, total, dict(scope or {}))
    out0.counts(allow_missing=False)  # reject bad counts before summing them away
    for d in dims:
        if (df[d].astype(str) == total).any():
            raise DisclosureError(name, None, f"dimension {d!r} uses the total label {total!r}")
    base = df.assign(**{d: df[d].astype(str) for d in dims})
    base = base.groupby(dims, as_index=False, sort=True)[value].sum() if dims else base
    if complete and dims:
        full = pd.MultiIndex.from_product([sorted(base[d].unique()) for d in dims], names=dims)
        by = base.set_index(dims)[value]
        if len(dims) == 1:
            full = full.get_level_values(0)
        base = by.reindex(full, fill_value=0).reset_index()
    wanted = None if levels is None else {frozenset(lv) for lv in levels}
    parts = []
    for r in range(len(dims), -1, -1):
        for kept in itertools.combinations(dims, r):
            if kept:
                g = base.groupby(list(kept), as_index=False, sort=True)[value].sum()
            else:
                g = pd.DataFrame({value: [base[value].sum()]})
            for d in dims:
                if d not in kept:
                    g[d] = total
            g["published"] = wanted is None or frozenset(kept) in wanted
            parts.append(g[[*dims, value, "published"]])
    frame = pd.concat(parts, ignore_index=True)
    frame[value] = frame[value].astype("int64")
    return Output(name, frame, tuple(dims), value, total, dict(scope or {}))
