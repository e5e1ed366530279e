"""Children in care at each month end, by placement kind: the stock that drives placement costs.

Owns `KINDS` (the placement kinds' names, `contract.PLACEMENT_KINDS` in code order),
`monthly_stock` and `monthly_exits` (both at once: `monthly`; from the hub's `linked.events` and `linked.children`),
`exit_rates` (monthly exit probability per kind from that history) and `simulate_stock` (the
stock's next months by simulation, given paths of entries to care).

Episodes from the events (csc `looked_after_start`, `placement_start` with the kind code as its
value, `looked_after_end`; docs/data-contract.md).  The hub holds events dated to the month, so
each child's state is followed month by month, complete months only (before the extract month):

- in care at the end of a month = in care at the end of the month before, plus the month's
  starts, minus its ends, kept between 0 and 1 (so an end and a new start in one month leave the
  child in care, a start and an end in one month do not; a start while in care changes nothing);
  a `placement_start` while out of care with no start or end that month counts as a start (the
  episode began before the events held);
- the kind at a month end is the code of the month's last `placement_start` (by load and row
  order within the month: agencies send their rows in date order), else the kind held before;
  a child who enters care with no `placement_start` that month is `unknown` until one comes;
- a child with a start and no end stays in care until the last complete month, or until the
  month end before their 18th birthday, taken mid-year as the features do (`models.features`:
  the hub holds the birth year only): last month in care = June of birth year + 18.

An exit in month t is a child in care at the end of month t - 1 (counted under the kind held
then) and not at the end of month t; a change of kind is not an exit.  So the stock is conserved:
stock(t) = stock(t - 1) + entries(t) - exits(t), where entries are children out of care at the end
of t - 1 and in care at the end of t (a stay that starts and ends within one month is in none of
the three).

Imports only `joinedup` (the contract), duckdb, numpy and pandas; never `synth`.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
import numpy as np
import pandas as pd

from joinedup import contract

#: the placement kinds' names in code order; `UNKNOWN` for care without a (valid) placement code
KINDS: tuple[str, ...] = tuple(contract.PLACEMENT_KINDS.values())
UNKNOWN = "unknown"
_START, _PLACE, _END = "looked_after_start", "placement_start", "looked_after_end"


def _month_number(ts: pd.Series | pd.Timestamp) -> np.ndarray | int:
    if isinstance(ts, pd.Timestamp):
        return ts.year * 12 + ts.month - 1
    return (ts.dt.year * 12 + ts.dt.month - 1).to_numpy()


def _episode_events(con: duckdb.DuckDBPyConnection, extract_date: str) -> pd.DataFrame:
    types = ", ".join(f"'{t}'" for t in contract.CARE_EPISODE_EVENT_TYPES)
    return con.execute(
        f"""
        SELECT e.child_id, date_trunc('month', e.event_date)::DATE AS month, e.event_type,
               e.value, c.birth_year
        FROM linked.events e JOIN linked.children c USING (child_id)
        WHERE e.event_type IN ({types})
          AND e.event_date < date_trunc('month', ?::DATE)
        ORDER BY e.child_id, month, e.load_id, e.row_number
        """,
        [extract_date],
    ).df()


def _child_spells(events: pd.DataFrame, last: int) -> list[tuple[object, str, int, int]]:
    """Month-end spells in care: (child_id, kind, first month, last month), month numbers =
    year * 12 + month - 1, per child in month order; `last` = the last complete month."""
    names = {float(code): name for code, name in contract.PLACEMENT_KINDS.items()}
    spells: list[tuple[object, str, int, int]] = []
    ev = events.assign(m=_month_number(pd.to_datetime(events["month"])))
    for child, g in ev.groupby("child_id", sort=True):
        by = g["birth_year"].iloc[0]
        cap = last if pd.isna(by) else min(last, (int(by) + 18) * 12 + 5)  # June of year 18
        states: list[tuple[int, str | None]] = []  # (month, kind at its end; None = out)
        in_care, kind = False, None
        for m, mg in g.groupby("m", sort=True):
            t = mg["event_type"]
            n_start, n_end = int((t == _START).sum()), int((t == _END).sum())
            places = mg.loc[t == _PLACE, "value"].dropna()
            now = in_care + n_start - n_end > 0
            if not in_care and not n_start and not n_end and len(places):
                now = True  # placed with no start held: the episode began before the events
            if not now:
                kind = None
            elif len(places):
                kind = names.get(float(places.iloc[-1]), UNKNOWN)
            elif not in_care or (n_start and n_end):
                kind = UNKNOWN  # a new episode with no placement code yet
            in_care = now
            states.append((int(m), kind))
        for i, (m, k) in enumerate(states):
            if k is None or m > cap:
                continue
            stop = states[i + 1][0] - 1 if i + 1 < len(states) else last
            spells.append((child, k, m, min(stop, cap)))
    return spells


def _kind_order(col: pd.Series) -> pd.Series:
    if col.name != "placement_kind":
        return col
    order = {k: i for i, k in enumerate((*KINDS, UNKNOWN))}
    return col.map(order)


def monthly_stock(con: duckdb.DuckDBPyConnection, extract_date: str) -> pd.DataFrame:
    """Children in care at the end of each complete month (`month` = its first day), by
    `placement_kind` (`KINDS`, and `unknown` when any), from the first month with an episode
    event to the month before `extract_date`, zero-filled: `month, placement_kind, children`."""
    return monthly(con, extract_date)[0]


def monthly_exits(con: duckdb.DuckDBPyConnection, extract_date: str) -> pd.DataFrame:
    """Exits from care per complete month by the kind held at the end of the month before:
    `month, placement_kind, exits` (same months and kinds as `monthly_stock`)."""
    return monthly(con, extract_date)[1]


def monthly(con: duckdb.DuckDBPyConnection, extract_date: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(`monthly_stock`, `monthly_exits`) from one pass over the episodes."""
    events = _episode_events(con, extract_date)
    last = int(_month_number(pd.Timestamp(extract_date).to_period("M").to_timestamp())) - 1
    stock_cols = ["month", "placement_kind", "children"]
    exit_cols = ["month", "placement_kind", "exits"]
    if events.empty:
        return pd.DataFrame(columns=stock_cols), pd.DataFrame(columns=exit_cols)
    first = int(_month_number(pd.to_datetime(events["month"])).min())
    if first > last:
        return pd.DataFrame(columns=stock_cols), pd.DataFrame(columns=exit_cols)
    spells = _child_spells(events, last)
    kinds = list(KINDS) + ([UNKNOWN] if any(k == UNKNOWN for _, k, _, _ in spells) else [])
    n = last - first + 1
    stock = np.zeros((len(kinds), n + 1), dtype=np.int64)
    exits = np.zeros((len(kinds), n + 1), dtype=np.int64)
    for i, (child, k, a, b) in enumerate(spells):
        j = kinds.index(k)
        stock[j, a - first] += 1
        stock[j, b - first + 1] -= 1
        nxt = spells[i + 1] if i + 1 < len(spells) else None
        if (nxt is None or nxt[0] != child or nxt[2] != b + 1) and b < last:
            exits[j, b + 1 - first] += 1
    stock = np.cumsum(stock, axis=1)[:, :n]
    exits = exits[:, :n]
    months = pd.date_range(
        pd.Timestamp(year=first // 12, month=first % 12 + 1, day=1), periods=n, freq="MS"
    )
    idx = pd.MultiIndex.from_product([kinds, months], names=["placement_kind", "month"])
    s = pd.DataFrame({"children": stock.ravel()}, index=idx).reset_index()[stock_cols]
    e = pd.DataFrame({"exits": exits.ravel()}, index=idx).reset_index()[exit_cols]
    return (
        s.sort_values(["month", "placement_kind"], key=_kind_order).reset_index(drop=True),
        e.sort_values(["month", "placement_kind"], key=_kind_order).reset_index(drop=True),
    )


def exit_rates(
    stock: pd.DataFrame, exits: pd.DataFrame, window_months: int = 36
) -> dict[str, float]:
    """Monthly exit probability per kind over the last `window_months` months of the history:
    exits in those months / children in care at the end of each month before (the maximum
    likelihood estimate of a geometric stay).  A kind with nobody in care over the window takes
    the pooled rate of all kinds (0.0 if nobody at all)."""
    if window_months < 1:
        raise ValueError("window_months must be at least 1")
    s = stock.pivot_table(index="month", columns="placement_kind", values="children", aggfunc="sum")
    e = exits.pivot_table(index="month", columns="placement_kind", values="exits", aggfunc="sum")
    s, e = s.sort_index().fillna(0), e.reindex(index=s.index, columns=s.columns).fillna(0)
    at_risk = s.shift(1).iloc[1:].tail(window_months)  # in care at the end of the month before
    out_ = e.iloc[1:].tail(window_months)
    total_risk, total_exits = float(at_risk.to_numpy().sum()), float(out_.to_numpy().sum())
    pooled = total_exits / total_risk if total_risk else 0.0
    rates = {}
    for k in s.columns:
        risk = float(at_risk[k].sum())
        rates[str(k)] = float(out_[k].sum()) / risk if risk else pooled
    return rates


def simulate_stock(
    start_by_kind: Mapping[str, int],
    exit_rate: Mapping[str, float],
    mix: Mapping[str, float],
    entry_paths: np.ndarray,
    rng: np.random.Generator,
    return_exits: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Children in care at each month end of the next months, by kind, per simulation:
    shape (n_sims, months, kinds) with kinds in `start_by_kind`'s order.  Each month the children
    in care at the end of the month before exit ~ Binomial(stock, exit_rate[kind]), then that
    month's entries (`entry_paths[sim, month]`, children entering and still in care at its end)
    are placed ~ Multinomial(entries, mix).  With `return_exits`, also the exits (same shape)."""
    kinds = list(start_by_kind)
    if set(exit_rate) < set(kinds) or set(mix) < set(kinds):
        raise ValueError("exit_rate and mix need a value for every kind of start_by_kind")
    start = np.array([int(start_by_kind[k]) for k in kinds], dtype=np.int64)
    rate = np.array([float(exit_rate[k]) for k in kinds])
    p = np.array([float(mix[k]) for k in kinds])
    paths = np.asarray(entry_paths)
    if paths.ndim != 2:
        raise ValueError("entry_paths must be (n_sims, months)")
    if (start < 0).any() or not ((rate >= 0) & (rate <= 1)).all():
        raise ValueError("starting stock must be >= 0 and exit rates within [0, 1]")
    if (p < 0).any() or abs(p.sum() - 1) > 1e-9:
        raise ValueError("mix must be shares summing to 1")
    if (paths < 0).any() or not np.array_equal(paths, np.round(paths)):
        raise ValueError("entry_paths must be whole numbers >= 0")
    paths = paths.astype(np.int64)
    n_sims, months = paths.shape
    stock = np.broadcast_to(start, (n_sims, len(kinds))).copy()
    out = np.zeros((n_sims, months, len(kinds)), dtype=np.int64)
    gone = np.zeros_like(out)
    for h in range(months):
        left = rng.binomial(stock, rate)
        stock = stock - left + rng.multinomial(paths[:, h], p)
        out[:, h], gone[:, h] = stock, left
    return (out, gone) if return_exits else out
