"""The dob-block EM behind the name u-probabilities: recovers known parameters, never gives a
u of 0 (the failure that made linkage quality depend on the key), ignores row order."""

from __future__ import annotations

import numpy as np

from linkage import name_weights
from linkage.name_weights import Vectors, em

NAMES = ("first_name", "surname", "nhs", "sex")
LEVELS = (5, 5, 2, 2)
M = {"first_name": [0.01, 0.01, 0.03, 0.05, 0.90], "surname": [0.02, 0.01, 0.02, 0.05, 0.90],
     "nhs": [0.05, 0.95], "sex": [0.02, 0.98]}  # fmt: skip
U = {"first_name": [0.90, 0.05, 0.03, 0.01, 0.01], "surname": [0.80, 0.08, 0.05, 0.03, 0.04],
     "nhs": [0.999, 0.001], "sex": [0.5, 0.5]}  # fmt: skip


def _vectors(n: int, share: float, seed: int, null_share: float = 0.0) -> Vectors:
    rng = np.random.default_rng(seed)
    match = rng.random(n) < share
    cols = []
    for name in NAMES:
        m, u = np.array(M[name]), np.array(U[name])
        g = np.where(match, rng.choice(len(m), n, p=m), rng.choice(len(u), n, p=u))
        g[rng.random(n) < null_share] = -1
        cols.append(g)
    gamma = np.stack(cols, axis=1)
    rows, counts = np.unique(gamma, axis=0, return_counts=True)
    return Vectors(NAMES, rows, counts.astype(float), LEVELS)


def test_em_recovers_known_name_u_and_match_share():
    v = _vectors(40_000, 0.4, seed=3, null_share=0.1)
    fixed = {"nhs": U["nhs"], "sex": U["sex"]}
    m, u, lam, _ = em(v, fixed)
    assert abs(lam - 0.4) < 0.02
    for name in ("first_name", "surname"):
        assert np.abs(u[name] - np.array(U[name])).max() < 0.02, (name, u[name])
        assert np.abs(m[name] - np.array(M[name])).max() < 0.02, (name, m[name])


def test_a_level_no_non_match_reaches_gets_a_small_positive_u():
    """Few non-matches, none of them with an exact first name: Splink's EM gave u = 0 here and
    refused the session; the smoothed EM gives a small positive u, and exact still counts most."""
    rows = np.array([[4, 4, 1, 1], [3, 4, 1, 1], [0, 4, -1, 1], [1, 0, 0, 0], [0, 1, 0, 1]])
    counts = np.array([300.0, 20.0, 10.0, 12.0, 8.0])
    m, u, lam, _ = em(Vectors(NAMES, rows, counts, LEVELS), {"nhs": U["nhs"], "sex": U["sex"]})
    assert (u["first_name"] > 0).all() and (u["surname"] > 0).all()
    assert u["first_name"][4] < 0.2
    weights = m["first_name"] / u["first_name"]
    assert weights[4] == weights.max()
    assert 0.5 < lam < 1.0


def test_em_ignores_row_order_and_holds_fixed_u():
    v = _vectors(5_000, 0.3, seed=9)
    order = np.random.default_rng(1).permutation(len(v.counts))
    shuffled = Vectors(NAMES, v.gamma[order], v.counts[order], LEVELS)
    fixed = {"nhs": U["nhs"], "sex": U["sex"]}
    a, b = em(v, fixed), em(shuffled, fixed)
    for name in NAMES:
        assert np.allclose(a[1][name], b[1][name], atol=1e-9)
    assert np.allclose(a[1]["nhs"], U["nhs"]) and np.allclose(a[1]["sex"], U["sex"])


def test_rule_and_comparison_columns():
    assert name_weights._rule_columns("l.dob_token = r.dob_token AND l.surname_bf = r.surname_bf") \
        == {"dob_token", "surname_bf"}  # fmt: skip
    spec = {"comparison_levels": [{"sql_condition": "sex_l IS NULL OR sex_r IS NULL"},
                                  {"sql_condition": "ELSE"}]}  # fmt: skip
    assert name_weights._comparison_columns(spec) == {"sex"}
