"""The name comparisons' weights: their u-probabilities from a smoothed EM within the dob block,
and the rules that keep the name weights sane (monotone down the similarity bands).

Why a separate estimate: the name levels are null unless the two records' dob salts agree, so
Splink's random sampling sees names only on the few random pairs with the same dob, most of them
the same child; its u is far too high (measured ~0.24 for an exact first name instead of ~0.01)
and names would count for almost nothing.  The value the model needs is P(name level |
non-match, same salt): within pairs blocked on the dob, the other comparisons separate matches
from non-matches, so a latent-class (Fellegi-Sunter) EM over those pairs' comparison vectors
gives it.

Why our own EM and not Splink's: within the dob block the non-matches are few (on a small
extract a few hundred, mostly twins), so a level none of them reaches gets u = 0 and Splink
refuses the whole session; whether that happens depended on the key (it moves name
similarities), so the linkage quality did too.  Here every m and u has an add-one (Dirichlet)
prior, so no probability reaches 0 or 1, and the EM runs on the counts of distinct comparison
vectors, in a fixed order: the same input gives the same weights, whatever order DuckDB
returns pairs in.  Splink computes the comparison vectors (a throwaway linker's `predict` over
the dob rule, matching columns retained for its gamma columns); only the EM itself is here (~40 lines of numpy).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from splink import Linker, SettingsCreator

log = logging.getLogger(__name__)

#: the comparisons whose u-probabilities the dob-block EM estimates
NAME_COMPARISONS: tuple[str, ...] = ("first_name", "surname")
#: fewer pairs than this in the dob block and the EM is not run (the fallback estimate is used)
MIN_BLOCK_PAIRS = 50
#: Dirichlet pseudo-count added to every level's m and u counts
PSEUDO_COUNT = 1.0
MAX_ITERATIONS = 500
TOLERANCE = 1e-8
#: starting share of matches within the dob block
START_MATCH_SHARE = 0.3


@dataclass(frozen=True)
class Vectors:
    """Distinct comparison vectors of a block (rows, in sorted order) and how often each occurs;
    `levels[k]` is the number of non-null levels of comparison `names[k]` (gamma -1 = null,
    0 = `else` ... levels-1 = the most similar level, as Splink numbers them)."""

    names: tuple[str, ...]
    gamma: np.ndarray
    counts: np.ndarray
    levels: tuple[int, ...]


def _rule_columns(rule: str) -> set[str]:
    """Input columns a blocking rule (`l.x = r.x AND ...`) uses."""
    return set(re.findall(r"\b[lr]\.([A-Za-z_][A-Za-z0-9_]*)", rule))


def _comparison_columns(spec: dict[str, Any]) -> set[str]:
    """Input columns a comparison's levels read (`x_l` / `x_r` in their SQL)."""
    cols: set[str] = set()
    for lv in spec["comparison_levels"]:
        cols |= set(re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)_[lr]\b", lv["sql_condition"]))
    return cols


def block_vectors(
    sdf: Any, comparison_specs: Sequence[dict[str, Any]], rule: str
) -> Vectors | None:
    """The comparison vectors of the pairs `rule` blocks, counted by distinct vector; the
    comparisons that read a column the rule fixes are left out (as Splink's EM leaves them
    out).  None if the block has fewer than MIN_BLOCK_PAIRS pairs or a name is left out."""
    used = _rule_columns(rule)
    specs = [s for s in comparison_specs if not (_comparison_columns(s) & used)]
    names = tuple(s["output_column_name"] for s in specs)
    if not set(NAME_COMPARISONS) <= set(names):
        return None
    probe = Linker(
        sdf,
        SettingsCreator(
            link_type="dedupe_only",
            unique_id_column_name="unique_id",  # no sampling here: the record key will do
            comparisons=list(specs),
            blocking_rules_to_generate_predictions=[rule],
            retain_matching_columns=True,  # Splink outputs gamma_ columns only with these
            retain_intermediate_calculation_columns=False,
        ),
        log_level=None,
    )
    pred = probe.inference.predict()
    try:
        gammas = ", ".join(f"gamma_{n}" for n in names)
        counted = probe._db_api._execute_sql_against_backend(
            f"SELECT {gammas}, count(*) AS n FROM {pred.physical_name} GROUP BY ALL ORDER BY ALL"
        ).df()
    finally:
        pred.drop_table_from_database_and_remove_from_cache()
    if int(counted["n"].sum()) < MIN_BLOCK_PAIRS:
        return None
    levels = tuple(
        sum(1 for lv in c.comparison_levels if not lv.is_null_level)
        for c in probe._settings_obj.comparisons
    )
    gamma = counted[[f"gamma_{n}" for n in names]].to_numpy(dtype=np.int64)
    return Vectors(names, gamma, counted["n"].to_numpy(dtype=float), levels)


def _start(n_levels: int, match: bool) -> np.ndarray:
    """Starting probabilities over levels 0 (else) .. n-1 (most similar): matches mostly in the
    most similar level, non-matches mostly in `else`."""
    ranks = np.arange(n_levels, dtype=float)
    p = np.power(4.0, ranks if match else -ranks)
    return p / p.sum()


def em(
    vectors: Vectors,
    fixed_u: dict[str, Sequence[float | None]],
    pseudo_count: float = PSEUDO_COUNT,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float, int]:
    """Fellegi-Sunter EM with a Dirichlet prior over the distinct vectors: returns m and u per
    comparison (index = Splink's gamma value), the block's match share and the iterations run.

    `fixed_u[name][gamma]` holds a comparison's u where it should not move (the random-sampling
    estimate, valid outside the dob block); a None or missing level, and every name level, is
    estimated."""
    g, w = vectors.gamma, vectors.counts
    m = {n: _start(k, True) for n, k in zip(vectors.names, vectors.levels, strict=True)}
    u = {n: _start(k, False) for n, k in zip(vectors.names, vectors.levels, strict=True)}
    hold: dict[str, np.ndarray] = {}
    for n in vectors.names:
        given = list(fixed_u.get(n, [])) if n not in NAME_COMPARISONS else []
        mask = np.array([i < len(given) and isinstance(given[i], float) and given[i] > 0
                         for i in range(len(u[n]))])  # fmt: skip
        if mask.any():
            hold[n] = mask
            u[n][mask] = [given[i] for i in np.flatnonzero(mask)]
    lam = START_MATCH_SHARE
    iterations = 0
    for iterations in range(1, MAX_ITERATIONS + 1):  # noqa: B007 - the count is returned
        log_m = np.full(len(w), np.log(lam))
        log_u = np.full(len(w), np.log(1.0 - lam))
        for k, n in enumerate(vectors.names):
            seen = g[:, k] >= 0
            log_m[seen] += np.log(m[n][g[seen, k]])
            log_u[seen] += np.log(u[n][g[seen, k]])
        post = 1.0 / (1.0 + np.exp(log_u - log_m))
        wm, wu = w * post, w * (1.0 - post)
        change = 0.0
        new_lam = float(np.clip(wm.sum() / w.sum(), 1e-6, 1 - 1e-6))
        change = abs(new_lam - lam)
        lam = new_lam
        for k, n in enumerate(vectors.names):
            seen = g[:, k] >= 0
            size = vectors.levels[k]
            cm = np.bincount(g[seen, k], weights=wm[seen], minlength=size) + pseudo_count
            cu = np.bincount(g[seen, k], weights=wu[seen], minlength=size) + pseudo_count
            new_m = cm / cm.sum()
            new_u = cu / cu.sum()
            if n in hold:  # held levels keep their u; the free ones share what is left
                free = ~hold[n]
                left = max(1.0 - float(u[n][hold[n]].sum()), 1e-9)
                new_u = u[n].copy()
                if free.any():
                    new_u[free] = cu[free] / cu[free].sum() * left
            change = max(change, float(np.abs(new_m - m[n]).max()),
                         float(np.abs(new_u - u[n]).max()))  # fmt: skip
            m[n], u[n] = new_m, new_u
        if change < TOLERANCE:
            break
    return m, u, lam, iterations


def fixed_u_of(linker: Linker) -> dict[str, list[float | None]]:
    """Each comparison's current u by Splink gamma value (None where unset or 0)."""
    out: dict[str, list[float | None]] = {}
    for comp in linker._settings_obj.comparisons:
        levels = [lv for lv in comp.comparison_levels if not lv.is_null_level]
        by_gamma: list[float | None] = [None] * len(levels)
        for lv in levels:
            u = lv.u_probability
            by_gamma[lv.comparison_vector_value] = (
                float(u) if isinstance(u, (int, float)) and u > 0 else None
            )
        out[comp.output_column_name] = by_gamma
    return out


def name_u_from_dob_block(
    linker: Linker, sdf: Any, comparison_specs: Sequence[dict[str, Any]], rule: str | None
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Name u-probabilities (non-null levels in settings order: exact, bands..., else) from the
    smoothed EM over the pairs `rule` blocks, the other comparisons' u held at `linker`'s
    (random-sampling) values; and figures of the run.  Empty if the block is too small or the
    rule fixes a name."""
    if rule is None:
        return {}, {"ran": False}
    vectors = block_vectors(sdf, comparison_specs, rule)
    if vectors is None:
        return {}, {"ran": False}
    _, u, lam, iterations = em(vectors, fixed_u_of(linker))
    out: dict[str, list[float]] = {}
    for n in NAME_COMPARISONS:
        # gamma k-1 is the first non-null level (exact) ... gamma 0 is `else`
        out[n] = [float(v) for v in u[n][::-1]]
    figures = {
        "ran": True,
        "block_pairs": int(vectors.counts.sum()),
        "distinct_vectors": int(len(vectors.counts)),
        "match_share": round(lam, 6),
        "iterations": iterations,
    }
    return out, figures


def monotone_name_weights(linker: Linker) -> None:
    """Make each name comparison's Bayes factor m/u non-increasing from `exact` down the
    similarity bands to `else` (a closer name never counts less): first a band that counts less
    than `else` (EM saw almost no match in it: m ~ 0) is brought up to `else`, by lowering its
    u; then, from `exact` down, a band that counts more than the one above it (few same-salt
    non-matches left its u too small) is brought down to it, by raising its u."""
    for comp in linker._settings_obj.comparisons:
        if comp.output_column_name not in NAME_COMPARISONS:
            continue
        levels = []
        for lv in comp.comparison_levels:
            if lv.is_null_level:
                continue
            m, u = lv.m_probability, lv.u_probability
            if isinstance(m, float) and isinstance(u, float) and m > 0 and u > 0:
                levels.append(lv)
        if not levels:
            continue
        floor = levels[-1].m_probability / levels[-1].u_probability
        for lv in levels[:-1]:
            if lv.m_probability / lv.u_probability < floor:
                lv.u_probability = lv.m_probability / floor
        best = None
        for lv in levels:
            ratio = lv.m_probability / lv.u_probability
            if best is not None and ratio > best:
                lv.u_probability = lv.m_probability / best
                ratio = best
            best = ratio


def set_name_u(linker: Linker, u: dict[str, list[float]]) -> None:
    """Put name u-probabilities into the linker's name comparisons (non-null levels, in order)."""
    for comp in linker._settings_obj.comparisons:
        if comp.output_column_name in u:
            levels = [lv for lv in comp.comparison_levels if not lv.is_null_level]
            for lv, value in zip(levels, u[comp.output_column_name], strict=True):
                lv.u_probability = float(value)
