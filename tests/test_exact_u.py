"""Exact u for the equality levels: the share of random record pairs that agree, from value
counts (and a join for the dob day/month swap), matches a brute-force count over all pairs."""

from __future__ import annotations

import itertools

import duckdb
import numpy as np
import pandas as pd

from linkage import exact_u


class _Api:
    def __init__(self, con):
        self.con = con

    def _execute_sql_against_backend(self, sql):
        return self.con.sql(sql)


class _Linker:
    def __init__(self, con):
        self._db_api = _Api(con)


def test_exact_u_matches_a_count_over_all_pairs():
    rng = np.random.default_rng(4)
    n = 300
    dob = rng.integers(0, 40, n).astype(str)
    swap = np.where(rng.random(n) < 0.5, rng.integers(0, 40, n).astype(str), None)
    df = pd.DataFrame({
        "splink_id": np.arange(n),
        "dob_token": np.where(rng.random(n) < 0.05, None, dob),
        "dob_swap_token": swap,
        "postcode_token": rng.integers(0, 90, n).astype(str),
        "nhs_token": np.where(rng.random(n) < 0.3, None, rng.integers(0, 250, n).astype(str)),
        "upn_token": None,
        "sex": rng.choice(["M", "F"], n),
    })  # fmt: skip
    con = duckdb.connect()
    con.register("t", df)
    got = exact_u.exact_u(_Linker(con), "t", "splink_id")

    def share(col, cond):
        ok = df[df[col].notna()].index
        pairs = list(itertools.combinations(ok, 2))
        return sum(cond(df.loc[i], df.loc[j]) for i, j in pairs) / len(pairs)

    assert got["postcode"][0] == share(
        "postcode_token", lambda a, b: a.postcode_token == b.postcode_token
    )
    assert got["sex"][0] == share("sex", lambda a, b: a.sex == b.sex)
    assert abs(got["nhs"][0] - share("nhs_token", lambda a, b: a.nhs_token == b.nhs_token)) < 1e-12
    assert "upn" not in got  # no values: left to Splink's estimate
    assert abs(got["dob"][0] - share("dob_token", lambda a, b: a.dob_token == b.dob_token)) < 1e-12

    def swapped(a, b):
        return a.dob_token != b.dob_token and (
            (a.dob_swap_token is not None and a.dob_swap_token == b.dob_token)
            or (b.dob_swap_token is not None and b.dob_swap_token == a.dob_token)
        )

    assert got["dob"][1] > 0
    assert abs(got["dob"][1] - share("dob_token", swapped)) < 1e-12
