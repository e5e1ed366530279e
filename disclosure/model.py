"""One system of unknowns for a set of outputs: the attacker's view.

Owns `Problem`: every distinct canonical cell key across the outputs (the same key in two
outputs is one unknown), its count (NaN where not known), whether any output publishes it, where
it appears (output, row), and the relations as a sparse matrix ``A`` with ``A @ x = 0`` (one row
per distinct relation: the total minus its parts), including `Group` relations.  Counts given
for the same key by two outputs must agree, and known counts must satisfy every relation whose
cells are all known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from disclosure.table import DisclosureError, Group, Key, Output


@dataclass
class Problem:
    """Cells (by canonical key) of a set of outputs and the additive relations between them."""

    keys: list[Key]
    values: np.ndarray  # float, NaN where not known (suppressed, or a cell no output holds)
    published: np.ndarray  # bool: some output shows this cell
    where: list[list[tuple[int, int]]]  # per cell: (output index, row index)
    A: sp.csr_matrix  # relations x cells, rows "total - sum(parts)"
    rel_total: list[int]  # per relation: the cell index of its total
    names: list[str]  # output names

    @property
    def n(self) -> int:
        return len(self.keys)

    def label(self, i: int) -> str:
        """The first output that shows (or holds) cell i."""
        return self.names[self.where[i][0][0]] if self.where[i] else "relation"


def build(
    outputs: Sequence[Output], groups: Sequence[Group] = (), *, allow_missing: bool
) -> Problem:
    """The `Problem` for `outputs` (counts checked; `allow_missing` for published values)."""
    index: dict[Key, int] = {}
    keys: list[Key] = []
    vals: list[float] = []
    pub: list[bool] = []
    where: list[list[tuple[int, int]]] = []

    def cell(k: Key) -> int:
        if k not in index:
            index[k] = len(keys)
            keys.append(k)
            vals.append(np.nan)
            pub.append(False)
            where.append([])
        return index[k]

    names = [o.name for o in outputs]
    if len(set(names)) != len(names):
        raise DisclosureError(names[0], None, "output names must be distinct")
    rels: list[tuple[int, tuple[int, ...]]] = []
    for oi, out in enumerate(outputs):
        counts = out.counts(allow_missing=allow_missing)
        shown = out.published()
        for row, (k, v, p) in enumerate(zip(out.keys(), counts, shown, strict=True)):
            i = cell(k)
            where[i].append((oi, row))
            pub[i] = pub[i] or bool(p)
            if not np.isnan(v):
                if not np.isnan(vals[i]) and vals[i] != v:
                    raise DisclosureError(out.name, k, "disagrees with another output's count")
                vals[i] = float(v)
        for total, parts in out.relations():
            rels.append((cell(total), tuple(cell(p) for p in parts)))
    for g in groups:
        for k in list(keys):
            d = dict(k)
            if d.get(g.dim) == g.label:
                parts = tuple(tuple(sorted({**d, g.dim: m}.items())) for m in g.members)
                rels.append((index[k], tuple(cell(p) for p in parts)))
    uniq = sorted({(t, tuple(sorted(ps))) for t, ps in rels})
    rows, cols, data = [], [], []
    for r, (t, ps) in enumerate(uniq):
        rows.append(r)
        cols.append(t)
        data.append(1.0)
        for p in ps:
            rows.append(r)
            cols.append(p)
            data.append(-1.0)
    A = sp.csr_matrix((data, (rows, cols)), shape=(len(uniq), len(keys)))
    prob = Problem(
        keys, np.array(vals, dtype=float), np.array(pub, dtype=bool), where, A,
        [t for t, _ in uniq], names,
    )  # fmt: skip
    _check_consistent(prob)
    return prob


def _check_consistent(prob: Problem) -> None:
    """Known counts must satisfy each relation whose cells are all known."""
    known = ~np.isnan(prob.values)
    A = prob.A.tocsr()
    v = np.nan_to_num(prob.values)
    for r in range(A.shape[0]):
        cols = A.indices[A.indptr[r] : A.indptr[r + 1]]
        if known[cols].all() and abs(A.data[A.indptr[r] : A.indptr[r + 1]] @ v[cols]) > 1e-6:
            t = prob.rel_total[r]
            raise DisclosureError(
                prob.label(t), prob.keys[t], "the total is not the sum of its parts"
            )


def fill_values(prob: Problem) -> np.ndarray:
    """True counts of every cell when the outputs held them all; cells no output holds (only
    `Group` parts) are derived from relations where one unknown remains.  Raises if any stays
    unknown."""
    v = prob.values.copy()
    A = prob.A.tocsr()
    changed = True
    while changed and np.isnan(v).any():
        changed = False
        for r in range(A.shape[0]):
            cols = A.indices[A.indptr[r] : A.indptr[r + 1]]
            coef = A.data[A.indptr[r] : A.indptr[r + 1]]
            miss = np.isnan(v[cols])
            if miss.sum() == 1:
                j = cols[miss][0]
                v[j] = -(coef[~miss] @ v[cols[~miss]]) / coef[miss][0]
                changed = True
    if np.isnan(v).any():
        i = int(np.flatnonzero(np.isnan(v))[0])
        raise DisclosureError(prob.label(i), prob.keys[i], "count cannot be derived")
    return v
