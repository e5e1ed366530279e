"""The linkage quality report: error rates by group (sex, ethnicity, deprivation) and Splink's
waterfall chart with the data removed."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from linkage import evaluate, report
from tests.test_linkage import _linked
from warehouse.db import connect


def _records(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["child_id", "person_id", "sex"])


def test_by_group_counts_missed_links_and_false_merges():
    rec = _records(
        [
            ("c1", "p1", "F"),  # p1: two records split over c1 and c2 -> missed link
            ("c2", "p1", "F"),
            ("c3", "p2", "F"),  # p2 and p3 (M) merged into c3 -> a false merge for both
            ("c3", "p2", "F"),
            ("c3", "p3", "M"),
            ("c4", "p4", "M"),  # p4: two records, correctly together
            ("c4", "p4", "M"),
            ("c5", "p5", "M"),  # p5: a single record, correctly alone
        ]
    )
    got = {r["group"]: r for r in evaluate.by_group(rec, "sex")}
    f, m = got["F"], got["M"]
    assert (f["persons"], f["records"], m["persons"], m["records"]) == (2, 4, 3, 4)
    assert f["missed_link_rate"] == 0.5 and m["missed_link_rate"] == 0.0
    assert f["false_merge_rate"] == 0.5 and m["false_merge_rate"] == pytest.approx(1 / 3, 1e-4)
    # F: true pairs p1 (1) + p2 (1) = 2, found 1 (p2); predicted pairs touching F: c3 has 3
    # pairs, all touch an F record -> precision 1/3
    assert f["recall"] == 0.5 and f["precision"] == pytest.approx(1 / 3, 1e-4)
    # M: true pairs p4 = 1, found 1; predicted pairs touching M: c3 (2 pairs with p3) + c4 (1)
    assert m["recall"] == 1.0 and m["precision"] == pytest.approx(1 / 3, 1e-4)
    # link rate: records sharing a child with another record
    assert f["link_rate"] == 0.5 and f["true_link_rate"] == 1.0
    assert m["link_rate"] == 0.75 and m["true_link_rate"] == 0.5


def test_deprivation_bands():
    bands = evaluate.deprivation_band(pd.Series([1, 2, 3, 10, None]))
    assert list(bands) == ["Q1 most deprived", "Q1 most deprived", "Q2", "Q5 least deprived",
                           "unknown"]  # fmt: skip


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    pytest.importorskip("synth.generate")
    return _linked(tmp_path_factory, "synth")


def test_report_breaks_quality_down_by_group(linked):
    s, figures = linked
    by_group = figures["truth"]["by_group"]
    assert set(by_group) == {"sex", "ethnicity", "deprivation"}
    for dim, rows in by_group.items():
        assert sum(r["persons"] for r in rows) == figures["truth"]["persons"], dim
        assert sum(r["records"] for r in rows) == figures["truth"]["records_evaluated"], dim
        for r in rows:
            assert 0 <= r["missed_link_rate"] <= 1 and 0 <= r["false_merge_rate"] <= 1
    page = (s.outputs_dir / "linkage" / "report.html").read_text()
    assert "Linkage quality by group" in page and "By deprivation" in page
    assert "Linkage error rates by group" in page


def test_waterfall_chart_holds_no_record_data(linked):
    s, _ = linked
    page = (s.outputs_dir / "linkage" / "report.html").read_text()
    assert "Waterfall for sample pairs" in page
    values = re.findall(r'"value_[lr]": "([^"]*)"', page)
    assert values and not any(values), "the waterfall must not show record values"
    with connect(s) as con:
        tokens = {
            v
            for col in ("record_token", "first_name_bf", "surname_bf", "dob_token")
            for (v,) in con.execute(f"SELECT {col} FROM staging.people").fetchall()
            if v
        }
    assert not [t for t in tokens if t in page]
    metrics = json.loads((s.outputs_dir / "linkage" / "metrics.json").read_text())
    assert "by_group" in metrics["truth"]


def test_sample_pairs_spread_over_the_range():
    pairs = pd.DataFrame(
        {
            "unique_id_l": [f"a{i}" for i in range(20)],
            "unique_id_r": [f"b{i}" for i in range(20)],
            "match_probability": [i / 20 for i in range(20)],
        }
    )
    got = report.sample_pairs(pairs, 6)
    assert len(got) == 6
    assert got["match_probability"].iloc[0] == 0.0 and got["match_probability"].iloc[-1] == 0.95
