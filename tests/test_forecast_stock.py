"""Children in care by placement kind (forecast/stock.py): the month-end stock and exits from a
hand-made events table, exit-rate estimation, and the simulation's bookkeeping."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from forecast import stock as st

EXTRACT = "2026-07-01"  # last complete month: 2026-06


def _con(rows: list[tuple], children: list[tuple]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA linked")
    con.execute("CREATE TABLE linked.children (child_id VARCHAR, birth_year INTEGER)")
    con.executemany("INSERT INTO linked.children VALUES (?, ?)", children)
    con.execute(
        "CREATE TABLE linked.events (child_id VARCHAR, agency VARCHAR, event_date DATE, "
        "event_type VARCHAR, value DOUBLE, load_id VARCHAR, row_number BIGINT)"
    )
    con.executemany(
        "INSERT INTO linked.events VALUES (?, 'csc', ?, ?, ?, 'L1', ?)",
        [(c, d, t, v, i) for i, (c, d, t, v) in enumerate(rows, start=1)],
    )
    return con


S, P, E = "looked_after_start", "placement_start", "looked_after_end"
ROWS = [
    # C: in care from 2025-03 (other); born 2007, so out after June 2025 (18 mid-year)
    ("C", "2025-03-01", S, None),
    ("C", "2025-03-01", P, 4.0),
    # A: foster from 2026-01, moves to residential in 2026-03, leaves in 2026-05
    ("A", "2026-01-01", S, None),
    ("A", "2026-01-01", P, 1.0),
    ("A", "2026-03-01", P, 3.0),
    ("A", "2026-05-01", E, None),
    # H: a placement with no start held (care began earlier), leaves in 2026-02
    ("H", "2026-01-01", P, 1.0),
    ("H", "2026-02-01", E, None),
    # E: foster from 2026-01; in 2026-04 the episode ends and a new one starts in kinship care
    ("E", "2026-01-01", S, None),
    ("E", "2026-01-01", P, 1.0),
    ("E", "2026-04-01", E, None),
    ("E", "2026-04-01", S, None),
    ("E", "2026-04-01", P, 2.0),
    # B: kinship from 2026-02, still in care
    ("B", "2026-02-01", S, None),
    ("B", "2026-02-01", P, 2.0),
    # D: in and out within 2026-02: never in care at a month end
    ("D", "2026-02-01", S, None),
    ("D", "2026-02-01", P, 1.0),
    ("D", "2026-02-01", E, None),
    # F: enters in 2026-03 with no placement code until 2026-05
    ("F", "2026-03-01", S, None),
    ("F", "2026-05-01", P, 1.0),
    # G: enters in the extract month (incomplete): not counted
    ("G", "2026-07-01", S, None),
    ("G", "2026-07-01", P, 1.0),
    # other events are ignored
    ("B", "2026-03-01", "referral", None),
]
CHILDREN = [
    ("A", 2015),
    ("B", 2010),
    ("C", 2007),
    ("D", 2016),
    ("E", 2014),
    ("F", 2012),
    ("G", 2011),
    ("H", 2013),
]


def _wide(df: pd.DataFrame, col: str) -> pd.DataFrame:
    return df.pivot_table(index="month", columns="placement_kind", values=col, aggfunc="sum")


def test_stock_and_exits_from_events():
    con = _con(ROWS, CHILDREN)
    stock = st.monthly_stock(con, EXTRACT)
    exits = st.monthly_exits(con, EXTRACT)
    assert list(stock.columns) == ["month", "placement_kind", "children"]
    assert list(exits.columns) == ["month", "placement_kind", "exits"]
    months = pd.date_range("2025-03-01", "2026-06-01", freq="MS")
    kinds = [*st.KINDS, st.UNKNOWN]
    assert len(stock) == len(months) * len(kinds)  # zero-filled
    assert list(stock.placement_kind[: len(kinds)]) == kinds  # by month, kinds in code order
    s = _wide(stock, "children")
    assert list(s.index) == list(months) and set(s.columns) == set(kinds)
    want = {
        "2025-03-01": {"other": 1},
        "2025-06-01": {"other": 1},
        "2025-07-01": {},
        "2025-12-01": {},
        "2026-01-01": {"foster": 3},
        "2026-02-01": {"foster": 2, "kinship": 1},
        "2026-03-01": {"foster": 1, "kinship": 1, "residential": 1, "unknown": 1},
        "2026-04-01": {"kinship": 2, "residential": 1, "unknown": 1},
        "2026-05-01": {"foster": 1, "kinship": 2},
        "2026-06-01": {"foster": 1, "kinship": 2},
    }
    for month, by_kind in want.items():
        got = s.loc[pd.Timestamp(month)]
        assert got[got > 0].to_dict() == by_kind, month
    e = _wide(exits, "exits")
    got = {(m.strftime("%Y-%m"), k): int(v) for (m, k), v in e.stack().items() if v}
    assert got == {("2025-07", "other"): 1, ("2026-02", "foster"): 1, ("2026-05", "residential"): 1}
    # conservation: the change in the stock = entries - exits, entries never negative
    total = s.sum(axis=1).to_numpy()
    entries = np.diff(total) + e.sum(axis=1).to_numpy()[1:]
    assert (entries >= 0).all() and entries.sum() == 5  # A+H, B, F, E's restart is not an entry
    assert total[0] == 1


def test_stock_without_unknown_and_empty():
    con = _con([r for r in ROWS if r[0] != "F"], CHILDREN)
    assert set(st.monthly_stock(con, EXTRACT).placement_kind) == set(st.KINDS)
    empty = _con([("A", "2026-01-01", "referral", None)], CHILDREN)
    assert st.monthly_stock(empty, EXTRACT).empty and st.monthly_exits(empty, EXTRACT).empty


def test_exit_rates_hand_made_window():
    months = pd.date_range("2026-01-01", periods=4, freq="MS")
    stock = pd.DataFrame({"month": months, "placement_kind": "foster", "children": 10})
    exits = pd.DataFrame({"month": months, "placement_kind": "foster", "exits": [0, 5, 1, 1]})
    assert st.exit_rates(stock, exits, window_months=2) == {"foster": pytest.approx(0.1)}
    assert st.exit_rates(stock, exits, window_months=36) == {"foster": pytest.approx(7 / 30)}
    # a kind nobody was in takes the pooled rate
    other = stock.assign(placement_kind="other", children=0)
    both = st.exit_rates(
        pd.concat([stock, other]), pd.concat([exits, other.rename(columns={"children": "exits"})])
    )
    assert both == {"foster": pytest.approx(7 / 30), "other": pytest.approx(7 / 30)}


def test_simulate_stock_conserves_children():
    rng = np.random.default_rng(5)
    start = {"foster": 60, "kinship": 15, "residential": 20, "other": 12}
    rate = {"foster": 0.04, "kinship": 0.03, "residential": 0.05, "other": 0.07}
    mix = {"foster": 0.5, "kinship": 0.14, "residential": 0.17, "other": 0.19}
    paths = rng.poisson(6, size=(500, 12))
    sims, gone = st.simulate_stock(start, rate, mix, paths, rng, return_exits=True)
    assert sims.shape == gone.shape == (500, 12, 4)
    assert (sims >= 0).all() and (gone >= 0).all()
    end = sims[:, -1].sum(axis=1)
    assert (end == sum(start.values()) + paths.sum(axis=1) - gone.sum(axis=(1, 2))).all()
    # month by month: stock(h) = stock(h - 1) + entries(h) - exits(h), in total
    prev = np.concatenate([np.full((500, 1), sum(start.values())), sims.sum(axis=2)[:, :-1]], 1)
    assert (sims.sum(axis=2) == prev + paths - gone.sum(axis=2)).all()
    # exits never exceed the stock they come from
    prev_k = np.concatenate([np.broadcast_to(list(start.values()), (500, 1, 4)), sims[:, :-1]], 1)
    assert (gone <= prev_k).all()
    # no exits and all entries in one kind: exactly the running sum
    one = st.simulate_stock(
        {"foster": 5, "other": 1}, {"foster": 0.0, "other": 0.0}, {"foster": 1.0, "other": 0.0},
        np.array([[1, 2, 3]]), rng,
    )  # fmt: skip
    assert one[0].tolist() == [[6, 1], [8, 1], [11, 1]]
    # the mean path follows the expectation: s(h) = s(h-1)(1 - r) + 6 m
    r, m = np.array(list(rate.values())), np.array(list(mix.values()))
    s = np.array(list(start.values()), dtype=float)
    for _ in range(12):
        s = s * (1 - r) + 6 * m
    assert np.allclose(sims[:, -1].mean(axis=0), s, rtol=0.05)
    # same rng seed, same paths
    a = st.simulate_stock(start, rate, mix, paths, np.random.default_rng(9))
    b = st.simulate_stock(start, rate, mix, paths, np.random.default_rng(9))
    assert np.array_equal(a, b)
    with pytest.raises(ValueError):
        st.simulate_stock(start, rate, {"foster": 1.0}, paths, rng)
    with pytest.raises(ValueError):
        st.simulate_stock(start, rate, mix, paths - 10, rng)


def test_exit_rates_recover_a_known_rate():
    """Simulated history with known rates: the estimate is within 5 standard errors (about
    0.001 here); the wrong denominator (the same month's stock) misses by 0.001 (foster) and 0.004."""
    rng = np.random.default_rng(21)
    true = {"foster": 0.04, "residential": 0.08}
    start = {"foster": 20000, "residential": 8000}
    paths = np.full((1, 40), 300)
    sims, gone = st.simulate_stock(
        start, true, {"foster": 0.7, "residential": 0.3}, paths, rng, return_exits=True
    )
    months = pd.date_range("2022-01-01", periods=41, freq="MS")
    kinds = list(start)
    stock_rows, exit_rows = [], []
    for j, k in enumerate(kinds):
        level = np.concatenate([[start[k]], sims[0, :, j]])
        left = np.concatenate([[0], gone[0, :, j]])
        stock_rows.append(pd.DataFrame({"month": months, "placement_kind": k, "children": level}))
        exit_rows.append(pd.DataFrame({"month": months, "placement_kind": k, "exits": left}))
    stock, exits = pd.concat(stock_rows), pd.concat(exit_rows)
    est = st.exit_rates(stock, exits, window_months=36)
    assert set(est) == set(true)
    for k, r in true.items():
        assert abs(est[k] - r) < 0.001 if k == "foster" else abs(est[k] - r) < 0.0025, (k, est)
