"""Statistical disclosure control (disclosure/): primary and secondary suppression, the LP
audit (including differencing between outputs), cost, configuration, errors and ACRO."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from disclosure import (
    TOTAL,
    DisclosureError,
    Group,
    Output,
    audit,
    from_frame,
    protect,
    protect_detailed,
)
from disclosure.attacker import feasible_intervals
from disclosure.model import build
from disclosure.primary import flags


def row_output(counts: dict[str, int], name: str = "row") -> Output:
    return from_frame(
        pd.DataFrame({"area": list(counts), "n": list(counts.values())}), ["area"], "n", name
    )


def table(rows: dict[str, list[int]], cols: list[str], name: str = "t") -> Output:
    df = pd.DataFrame(
        [(r, c, v) for r, vals in rows.items() for c, v in zip(cols, vals, strict=True)],
        columns=["area", "age_band", "n"],
    )
    return from_frame(df, ["area", "age_band"], "n", name)


def published(out: Output, frame: pd.DataFrame) -> Output:
    return Output(out.name, frame, out.dims, out.value, out.total, out.scope)


def hidden(frame: pd.DataFrame, **key: str) -> bool:
    m = np.ones(len(frame), dtype=bool)
    for d, v in key.items():
        m &= (frame[d] == v).to_numpy()
    assert m.sum() == 1
    return bool(frame.loc[m, "suppressed"].iloc[0])


def test_primary_rule_zero_shown_and_configurable():
    v = np.array([0, 1, 9, 10, 25])
    assert flags(v, 10).tolist() == [False, True, True, False, False]
    assert flags(v, 10, suppress_zero=True).tolist() == [True, True, True, False, False]
    assert flags(v, 5).tolist() == [False, True, False, False, False]


def test_lone_suppressed_cell_in_a_row_is_protected_and_the_lp_proves_it():
    out = row_output({"A": 5, "B": 20, "C": 30})
    naive = out.frame.copy()
    naive["n"] = naive["n"].astype("Int64").mask(naive["area"] == "A")
    found = audit([published(out, naive)])
    assert [(f.key, f.rule.split(":")[0]) for f in found] == [((("area", "A"),), "exact")]

    frame = protect([out])[0]
    assert hidden(frame, area="A") and hidden(frame, area="B")  # B: the cheaper partner
    assert not hidden(frame, area="C") and not hidden(frame, area=TOTAL)
    assert frame.loc[frame["suppressed"], "n"].isna().all()
    assert audit([published(out, frame)]) == []
    prob = build([published(out, frame)], allow_missing=True)
    unknown = np.isnan(prob.values)
    a = prob.keys.index((("area", "A"),))
    iv = feasible_intervals(prob.A, prob.values, unknown, [a])[a]
    assert iv.hi - iv.lo >= 10


def naive_row_suppression(frame: pd.DataFrame, threshold: int = 10) -> pd.DataFrame:
    """Today's style of heuristic, rows only: hide the small cells, then the smallest other
    interior cell of each row that has a single hidden cell."""
    f = frame.copy()
    f["suppressed"] = (f["n"] >= 1) & (f["n"] < threshold)
    for area in f["area"].unique():
        inner = (f["area"] == area) & (f["age_band"] != TOTAL)
        if f.loc[inner, "suppressed"].sum() == 1:
            free = f[inner & ~f["suppressed"]]
            f.loc[free["n"].idxmin(), "suppressed"] = True
    f["n"] = f["n"].astype("Int64").mask(f["suppressed"])
    return f.drop(columns="published")


def test_two_way_table_naive_row_heuristic_leaks_through_the_column_milp_does_not():
    out = table({"r1": [5, 20, 30], "r2": [40, 12, 50]}, ["a", "b", "c"])
    naive = naive_row_suppression(out.frame)
    found = audit([published(out, naive)])
    assert (("age_band", "a"), ("area", "r1")) in {f.key for f in found}
    frame = protect([out])[0]
    assert hidden(frame, area="r1", age_band="a")
    assert audit([published(out, frame)]) == []


def test_differencing_between_two_outputs_is_caught_and_fixed_jointly():
    bands = ["0-4", "5-9", "10-15", "16-17"]
    inner = pd.DataFrame(
        [("X", b, v) for b, v in zip(bands, [3, 15, 16, 16], strict=True)]
        + [("Y", b, v) for b, v in zip(bands, [12, 16, 17, 17], strict=True)],
        columns=["area", "age_band", "n"],
    )
    everyone = from_frame(inner, ["area"], "n", "children_by_area")
    older = from_frame(
        inner[inner["age_band"] != "0-4"],
        ["area"],
        "n",
        "children_5_17",
        scope={"age_band": "5-17"},
    )
    behind = from_frame(inner, ["area", "age_band"], "n", "microdata", levels=[])
    groups = [Group("age_band", "5-17", ("5-9", "10-15", "16-17"))]
    # each output alone has nothing small, so protecting them one at a time hides nothing
    alone = [protect([o])[0] for o in (everyone, older)]
    assert not any(f["suppressed"].any() for f in alone)
    hidden_behind = behind.frame.assign(n=pd.array([pd.NA] * len(behind.frame), "Int64"))
    published_alone = [published(o, f) for o, f in zip((everyone, older), alone, strict=True)]
    found = audit([*published_alone, published(behind, hidden_behind)], groups=groups)
    assert {f.key for f in found} == {(("age_band", "0-4"), ("area", "X"))}
    assert all(f.rule.startswith("differencing") for f in found)
    # protected jointly, the same audit passes
    frames = protect([everyone, older, behind], groups=groups)
    assert frames[0]["suppressed"].any() or frames[1]["suppressed"].any()
    assert len(frames[2]) == 0  # the microdata cells are never published
    joint = [published(o, f) for o, f in zip((everyone, older), frames[:2], strict=True)]
    assert audit([*joint, published(behind, hidden_behind)], groups=groups) == []


def test_cost_is_minimal_on_a_hand_checked_table():
    # 5 needs a partner in its row and its column; any 3 cells leave a lone hidden cell in
    # some relation, so 4 is the minimum; of the 4-cell patterns the interior has the
    # smallest total (5+30+12+40 = 87 against 5+35+17+87 for the margins' pattern)
    out = table({"r1": [5, 30], "r2": [12, 40]}, ["a", "b"])
    frame, sol = protect_detailed([out])
    frame = frame[0]
    assert int(frame["suppressed"].sum()) == 4
    inner = (frame["area"] != TOTAL) & (frame["age_band"] != TOTAL)
    assert frame.loc[inner, "suppressed"].all()
    assert sol.optimal and int(sol.primary.sum()) == 1 and int(sol.secondary.sum()) == 3


def test_threshold_is_configurable():
    out = row_output({"A": 5, "B": 20, "C": 30})
    assert not protect([out], threshold=5)[0]["suppressed"].any()
    f = protect([out], threshold=25)[0]
    assert hidden(f, area="A") and hidden(f, area="B")
    assert audit([published(out, f)], threshold=25) == []
    assert audit([published(out, f)], threshold=25, protection=60) != []


@pytest.mark.parametrize(
    ("bad", "rule"), [(-7, "negative"), (2.5, "not an integer")], ids=["negative", "fraction"]
)
def test_bad_counts_name_the_cell_and_rule_not_the_value(bad, rule):
    df = pd.DataFrame({"area": ["A", "B"], "n": [12, bad]})
    with pytest.raises(DisclosureError) as err:
        from_frame(df, ["area"], "n", "children")
    msg = str(err.value)
    assert "children" in msg and "area=B" in msg and rule in msg
    assert str(bad) not in msg and str(abs(bad)) not in msg


def test_same_key_in_two_outputs_is_one_unknown():
    monthly = pd.DataFrame(
        {"area": ["X", "X", "Y", "Y"], "month": ["m1", "m2", "m1", "m2"], "n": [4, 30, 20, 25]}
    )
    by_month = from_frame(monthly, ["area", "month"], "n", "monthly")
    year = from_frame(monthly, ["area"], "n", "year")  # = the month-total margin
    frames = protect([by_month, year])
    m = frames[0]
    shared = m[(m["month"] == TOTAL) & (m["area"] != TOTAL)].set_index("area")["suppressed"]
    y = frames[1][frames[1]["area"] != TOTAL].set_index("area")["suppressed"]
    assert shared.to_dict() == y.to_dict()
    outs = [published(by_month, frames[0]), published(year, frames[1])]
    assert audit(outs) == []


def test_acro_agrees_with_our_suppression():
    from disclosure.acro_check import compare_with_acro

    micro = pd.DataFrame(
        {
            "area": ["X"] * 3 + ["Y"] * 40 + ["Z"] * 45 + ["X"] * 30 + ["Y"] * 25,
            "age_band": ["0-4"] * 3 + ["0-4"] * 40 + ["0-4"] * 45 + ["5-9"] * 30 + ["5-9"] * 25,
        }
    )
    counts = micro.value_counts().rename("n").reset_index()
    out = from_frame(counts, ["area", "age_band"], "n", "t")
    frame = protect([out])[0]
    res = compare_with_acro(micro, "area", "age_band", frame, "n")
    assert res.agrees and res.acro_flagged >= 1 and res.zeros == 1  # (Z, 5-9) is zero
    assert res.secondary >= 1
    leaky = frame.assign(suppressed=False)
    assert not compare_with_acro(micro, "area", "age_band", leaky, "n").agrees


def test_a_forced_cell_is_primary_whatever_its_count():
    """`force_suppress` (a forecast cell with a small expected count) hides a cell as if its
    count were small, and secondary suppression protects it like one."""
    from disclosure.protect import FORCE

    df = pd.DataFrame({"area": ["A", "B", "C"], "n": [50, 30, 40]})
    out = from_frame(df, ["area"], "n", "t")
    out.frame[FORCE] = out.frame["area"].eq("B")
    [frame] = protect([out], 10)
    hidden = set(frame.loc[frame["suppressed"], "area"])
    assert "B" in hidden and len(hidden) >= 2  # B, and another so B cannot be derived
    [plain] = protect([from_frame(df, ["area"], "n", "t")], 10)
    assert not plain["suppressed"].any()
