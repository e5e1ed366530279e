"""The planners' care-demand tables: monthly forecasts of both views, what happened, backtests,
scenario inputs and children in care, with disclosure control on every count.

Owns `TABLES` (merged into `warehouse.read_models.planners.TABLES`), `COUNT_COLUMNS`, `build` and
`disclosure_outputs` (the counts planners see, as `disclosure.Output`s with their relations: the
months of a quarter add up to it, the age bands to the county, the placement kinds to all
children in care).  `build` protects the counts of all three outputs *together* with
`disclosure.protect` (primary suppression below `settings.small_number_threshold`, then the
cheapest secondary suppression, found by HiGHS, so that no hidden count can be narrowed from
everything published, differences between outputs included); publish audits them again with
`disclosure.audit` (`warehouse.read_models.checks`).

Not counts, so not suppressed: forecasts (means and intervals of a model over the whole county
or an age band of thousands of children), simulated paths, backtest errors averaged over many
forecasts, exit rates and placement shares of the kinds shown, and the risk curve (sums of
scores over at least `forecast.stage.RISK_STEP` children).  A placement kind whose stock is
suppressed is neither forecast nor given its own rates: the small kinds are pooled.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from disclosure import TOTAL, Group, Output, from_frame, protect
from forecast.tables import columns
from joinedup.config import Settings
from warehouse.read_models.hub import source

#: complete calendar quarters shown by age band (the county's months from the first of them
#: on are shown by month); months of children-in-care history shown
QUARTERS = 12
HISTORY_MONTHS = 36
#: what each output counts (a cell's key includes it, so totals of different measures differ)
ENTRIES = {"measure": "children entering a plan or care in the period"}
IN_CARE = {"measure": "children in care at the month end"}
#: the secondary suppression's cost: the smallest total hidden (so small interior cells go
#: before the county's totals, which planners need most), not the fewest cells
COST = "value"
#: a pooled row for the placement kinds whose numbers are suppressed
SMALL_KINDS = "small_groups"


TABLES: dict[str, dict[str, str]] = {
    "forecast_monthly": columns("scores.forecast_monthly"),
    "forecast_areas": columns("scores.forecast_areas"),
    "history_monthly": {
        "outcome": "VARCHAR",
        "month": "DATE",
        "children": "INTEGER",
        "suppressed": "BOOLEAN",
        "as_of": "DATE",
    },
    "history_quarterly": {
        "outcome": "VARCHAR",
        "age_band": "VARCHAR",
        "quarter": "DATE",
        "children": "INTEGER",
        "suppressed": "BOOLEAN",
        "as_of": "DATE",
    },
    "forecast_backtest": columns("scores.forecast_backtest"),
    "forecast_paths": columns("scores.forecast_paths"),
    "forecast_views": columns("scores.forecast_views"),
    "risk_curve": columns("scores.risk_curve"),
    "care_stock": {
        "placement_kind": "VARCHAR",
        "month": "DATE",
        "children": "INTEGER",
        "suppressed": "BOOLEAN",
        "as_of": "DATE",
    },
    "care_stock_forecast": {
        "placement_kind": "VARCHAR",
        "month": "DATE",
        "mean": "DOUBLE",
        "lower_80": "DOUBLE",
        "upper_80": "DOUBLE",
        "lower_95": "DOUBLE",
        "upper_95": "DOUBLE",
        "as_of": "DATE",
    },
    "care_flows": {
        "placement_kind": "VARCHAR",
        "exit_rate": "DOUBLE",
        "entry_share": "DOUBLE",
        "stock_now": "INTEGER",
        "suppressed": "BOOLEAN",
        "as_of": "DATE",
    },
}
COUNT_COLUMNS: dict[str, tuple[str, ...]] = {
    "history_monthly": ("children",),
    "history_quarterly": ("children",),
    "care_stock": ("children",),
    "care_flows": ("stock_now",),
}


def _quarter(month: pd.Series) -> pd.Series:
    return pd.to_datetime(month).dt.to_period("Q").dt.start_time


def _label(d) -> str:
    return str(pd.Timestamp(d).date())


def _groups(quarters) -> list[Group]:
    """A quarter's cell is the sum of its three months' cells (the monthly and the quarterly
    outputs share the county's months)."""
    return [
        Group(
            "month", "Q" + _label(qs), tuple(_label(qs + pd.DateOffset(months=k)) for k in range(3))
        )
        for qs in pd.to_datetime(pd.Series(list(quarters))).drop_duplicates()
    ]


def disclosure_outputs(
    monthly: pd.DataFrame, quarterly: pd.DataFrame, stock: pd.DataFrame
) -> tuple[list[Output], list[Group]]:
    """The planners' count outputs, true counts, for `protect`: the county by month (interior
    cells only), the quarters by age band with the county's quarters (margins), and children in
    care by placement kind and month with all kinds (margins); plus the quarter groups."""
    m = monthly.assign(month=monthly["month"].map(_label))
    q = quarterly.assign(month=quarterly["quarter"].map(lambda d: "Q" + _label(d)))
    s = stock.assign(month=stock["month"].map(_label))
    outputs = [
        # by age band and month: only the county's months are shown, the bands' months are
        # unknowns of the relations (a quarter by band is the sum of its months by band)
        from_frame(
            m[["outcome", "age_band", "month", "children"]],
            ["outcome", "age_band", "month"],
            "children",
            "history_monthly",
            levels=[("outcome", "month")],
            scope=ENTRIES,
        ),
        from_frame(
            q[["outcome", "age_band", "month", "children"]],
            ["outcome", "age_band", "month"],
            "children",
            "history_quarterly",
            levels=[("outcome", "age_band", "month"), ("outcome", "month")],
            scope=ENTRIES,
        ),
        from_frame(
            s[["placement_kind", "month", "children"]],
            ["placement_kind", "month"],
            "children",
            "care_stock",
            levels=[("placement_kind", "month"), ("month",)],
            scope=IN_CARE,
        ),
    ]
    return outputs, _groups(quarterly["quarter"])


def published_outputs(con: duckdb.DuckDBPyConnection, cat: str) -> tuple[list[Output], list[Group]]:
    """The same outputs read back from a built snapshot (NA where suppressed), for `audit`."""
    m = con.execute(f"SELECT outcome, month, children FROM {cat}.main.history_monthly").df()
    q = con.execute(
        f"SELECT outcome, age_band, quarter, children FROM {cat}.main.history_quarterly"
    ).df()
    s = con.execute(f"SELECT placement_kind, month, children FROM {cat}.main.care_stock").df()
    m["month"] = m["month"].map(_label)
    m["age_band"] = TOTAL
    bands = sorted(set(q["age_band"]) - {"all"})
    hidden = pd.DataFrame(
        [(o, b, mo) for o in m["outcome"].unique() for b in bands for mo in m["month"].unique()],
        columns=["outcome", "age_band", "month"],
    ).assign(published=False)
    hidden["children"] = pd.array([pd.NA] * len(hidden), dtype="Int64")
    m["children"] = m["children"].astype("Int64")
    m = pd.concat([m.assign(published=True), hidden], ignore_index=True)
    q["month"] = q["quarter"].map(lambda d: "Q" + _label(d))
    q["age_band"] = q["age_band"].replace({"all": TOTAL})
    s["month"] = s["month"].map(_label)
    s["placement_kind"] = s["placement_kind"].replace({"all": TOTAL})
    outputs = [
        Output("history_monthly", m, ("outcome", "age_band", "month"), "children",
               scope=ENTRIES),
        Output("history_quarterly", q[["outcome", "age_band", "month", "children"]],
               ("outcome", "age_band", "month"), "children", scope=ENTRIES),
        Output("care_stock", s, ("placement_kind", "month"), "children", scope=IN_CARE),
    ]  # fmt: skip
    return [o for o in outputs if len(o.frame)], _groups(q["quarter"])


def _counts(con: duckdb.DuckDBPyConnection, settings: Settings):
    """(monthly, quarterly): entries by outcome, age band and month from the first month of the
    last `QUARTERS` complete calendar quarters to the last complete month; and by quarter."""
    hist = con.execute(f"SELECT * FROM {source(con, 'scores.forecast_history')}").df()
    hist = hist[hist["level"] == "age_band"]
    empty_m = pd.DataFrame(columns=["outcome", "age_band", "month", "children"])
    empty_q = pd.DataFrame(columns=["outcome", "age_band", "quarter", "children"])
    if hist.empty:
        return empty_m, empty_q
    hist["month"] = pd.to_datetime(hist["month"])
    hist["quarter"] = _quarter(hist["month"])
    per_q = hist.groupby("quarter")["month"].nunique()
    complete = sorted(per_q[per_q == 3].index)[-QUARTERS:]
    if not complete:
        return empty_m, empty_q
    monthly = hist[hist["month"] >= complete[0]][["outcome", "age_band", "month", "children"]]
    quarterly = (
        hist[hist["quarter"].isin(complete)]
        .groupby(["outcome", "age_band", "quarter"])["children"]
        .sum()
        .reset_index()
    )
    return monthly, quarterly


def build(con: duckdb.DuckDBPyConnection, settings: Settings, cat: str) -> None:
    """Fill the planners' care-demand tables (created empty in catalog `cat`)."""
    t = int(settings.small_number_threshold)
    as_of = pd.Timestamp(settings.extract_date).date()
    for table in (
        "forecast_monthly",
        "forecast_areas",
        "forecast_backtest",
        "forecast_paths",
        "forecast_views",
    ):
        _copy(con, cat, table, f"scores.{table}")
    _copy(con, cat, "risk_curve", "scores.risk_curve")

    monthly, quarterly = _counts(con, settings)
    stock_all = con.execute(f"SELECT * FROM {source(con, 'scores.care_stock')}").df()
    observed = stock_all[stock_all["kind"] == "observed"].copy()
    observed["month"] = pd.to_datetime(observed["month"])
    if not observed.empty:
        last = observed["month"].max()
        observed = observed[observed["month"] > last - pd.DateOffset(months=HISTORY_MONTHS)]
    stock = observed[observed["placement_kind"] != "all"][["placement_kind", "month"]].assign(
        children=observed["children"].round().astype("int64")
    )
    outputs, groups = disclosure_outputs(monthly, quarterly, stock)
    nonempty = [o for o in outputs if len(o.frame)]
    protected = dict(
        zip([o.name for o in nonempty], protect(nonempty, t, groups=groups, cost=COST), strict=True)
    ) if nonempty else {}  # fmt: skip

    def write(table: str, frame: pd.DataFrame) -> None:
        cols = list(TABLES[table])
        con.register("planning_df", frame.assign(as_of=as_of)[cols])
        try:
            con.execute(f"INSERT INTO {cat}.main.{table} SELECT * FROM planning_df")
        finally:
            con.unregister("planning_df")

    if "history_monthly" in protected:
        f = protected["history_monthly"]
        write("history_monthly", f.assign(month=pd.to_datetime(f["month"]).dt.date))
    if "history_quarterly" in protected:
        f = protected["history_quarterly"]
        write(
            "history_quarterly",
            f.assign(
                quarter=pd.to_datetime(f["month"].str[1:]).dt.date,
                age_band=f["age_band"].where(f["age_band"] != TOTAL, "all"),
            ),
        )
    shown_kinds: set[str] = set()
    if "care_stock" in protected:
        f = protected["care_stock"]
        f = f.assign(
            month=pd.to_datetime(f["month"]).dt.date,
            placement_kind=f["placement_kind"].where(f["placement_kind"] != TOTAL, "all"),
        )
        write("care_stock", f)
        last = f["month"].max()
        now = f[f["month"] == last]
        shown_kinds = set(now.loc[~now["suppressed"], "placement_kind"]) - {"all"}
        _flows(con, write, now, shown_kinds)
    forecast = stock_all[stock_all["kind"] == "forecast"]
    keep = forecast["placement_kind"].isin(shown_kinds | {"all"})
    write(
        "care_stock_forecast",
        forecast[keep]
        .rename(columns={"children": "mean"})
        .assign(month=lambda d: pd.to_datetime(d["month"]).dt.date),
    )


def _flows(con, write, now: pd.DataFrame, shown: set[str]) -> None:
    """care_flows: the kinds shown with their own rates; the suppressed kinds pooled (rates
    weighted by stock, stock left blank: a planner's page takes it as all minus those shown)."""
    flows = con.execute(f"SELECT * FROM {source(con, 'scores.care_flows')}").df()
    if flows.empty:
        return
    stock_now = now.set_index("placement_kind")["children"]
    rows = []
    small = flows[~flows["placement_kind"].isin(shown)]
    for r in flows[flows["placement_kind"].isin(shown)].itertuples():
        rows.append(
            {
                "placement_kind": r.placement_kind,
                "exit_rate": r.exit_rate,
                "entry_share": r.entry_share,
                "stock_now": stock_now.get(r.placement_kind),
                "suppressed": False,
            }
        )
    if len(small):
        w = small["stock_now"].clip(lower=0).to_numpy(dtype=float)
        rate = (
            float(np.average(small["exit_rate"], weights=w))
            if w.sum() > 0
            else float(small["exit_rate"].mean())
        )
        rows.append(
            {
                "placement_kind": SMALL_KINDS,
                "exit_rate": rate,
                "entry_share": float(small["entry_share"].sum()),
                "stock_now": None,
                "suppressed": True,
            }
        )
    if "all" in stock_now.index:
        rows.append(
            {
                "placement_kind": "all",
                "exit_rate": None,
                "entry_share": 1.0,
                "stock_now": stock_now.get("all"),
                "suppressed": bool(pd.isna(stock_now.get("all"))),
            }
        )
    df = pd.DataFrame(rows)
    df["stock_now"] = df["stock_now"].astype("Int64")
    write("care_flows", df)


def _copy(con: duckdb.DuckDBPyConnection, cat: str, table: str, hub: str) -> None:
    cols = ", ".join(f'"{c}"' for c in TABLES[table])
    con.execute(f"INSERT INTO {cat}.main.{table} ({cols}) SELECT {cols} FROM {source(con, hub)}")
