"""Incremental linking: last month's records + a new month (new records, moved records, unchanged
re-deliveries) linked incrementally give (nearly) the clusters of a full re-link, compare far
fewer pairs, keep every existing child id unless a recorded merge/split moved it; the saved
model holds parameters only; the id history says which old ids went where, and why."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from linkage import evaluate, incremental, link
from tests.test_linkage import build
from warehouse.db import connect

NEW_SHARE = 0.1
N_MOVED = 8
N_REDELIVERED = 6


def _records(s) -> pd.DataFrame:
    with connect(s) as con:
        return con.execute("SELECT agency, record_token, child_id FROM linked.records").df()


@pytest.fixture(scope="module")
def months(tmp_path_factory):
    """(settings after the incremental run, settings after a full re-link of the same data,
    figures of month 1, incremental and full runs, month-1 records, counts)."""
    from joinedup.config import Settings

    root = tmp_path_factory.mktemp("incremental")
    s = Settings.from_env(root / "home").for_unit("linkage")
    s.ensure_dirs()
    build(s, "fixture")
    rng = np.random.default_rng(5)
    with connect(s) as con:
        staged = con.execute("SELECT * FROM staging.people ORDER BY load_id, row_number").df()
        held = staged[rng.random(len(staged)) < NEW_SHARE]
        con.register("_held", held[["load_id", "row_number"]])
        con.execute("DELETE FROM staging.people WHERE (load_id, row_number) IN "
                    "(SELECT (load_id, row_number) FROM _held)")  # fmt: skip
        con.unregister("_held")
    f1 = link.run(s, run_id="m1", mode="full", report=False)
    month1 = _records(s)

    # next month: the held-back records arrive; some records move house; some are re-sent as is
    rest = staged.drop(held.index)
    picked = rest.sample(N_MOVED + N_REDELIVERED, random_state=3)
    moved, same = picked.iloc[:N_MOVED].copy(), picked.iloc[N_MOVED:].copy()
    donors = rest.sample(N_MOVED, random_state=4)
    for col in ("postcode_token", "postcode_sector"):
        moved[col] = donors[col].to_numpy()
    nxt = pd.concat([moved, same])
    nxt["load_id"] = "LNEXTMONTH000001"
    nxt["row_number"] = np.arange(1, len(nxt) + 1)
    nxt["extract_date"] = pd.Timestamp("2026-11-01")
    with connect(s) as con:
        for frame in (held, nxt):
            con.register("_rows", frame)
            con.execute("INSERT INTO staging.people SELECT * FROM _rows")
            con.unregister("_rows")
    s_full = Settings.from_env(root / "full").for_unit("linkage")
    shutil.copytree(s.home, s_full.home)
    inc = link.run(s, run_id="m2", mode="incremental", report=False)
    full = link.run(s_full, run_id="m2", mode="full", report=False)
    changed = int((moved["postcode_token"] != picked.iloc[:N_MOVED]["postcode_token"]).sum())
    return {"s": s, "s_full": s_full, "f1": f1, "inc": inc, "full": full, "month1": month1,
            "held": len(held), "changed": changed}  # fmt: skip


def test_incremental_mode_counts_and_compared_pairs(months):
    inc, full = months["inc"], months["full"]
    assert inc["mode"] == "incremental" and full["mode"] == "full"
    assert inc["records_new"] == months["held"]
    # moved records are changed; unchanged re-deliveries are not
    assert inc["records_changed"] == months["changed"]
    assert inc["records"] == full["records"]
    assert 0 < inc["pairs_compared"] < 0.35 * full["pairs_compared"], (inc, full)
    assert inc["records_reclustered"] < 0.6 * inc["records"]
    with connect(months["s"]) as con:
        n_pairs = con.execute("SELECT count(*) FROM linked.pairs").fetchall()[0][0]
    assert n_pairs == inc["pairs_kept"]


def test_incremental_clusters_match_a_full_relink(months):
    inc_rec, full_rec = _records(months["s"]), _records(months["s_full"])
    m = inc_rec.merge(full_rec, on=["agency", "record_token"], suffixes=("", "_full"))
    assert len(m) == len(inc_rec) == len(full_rec)
    agree = evaluate.evaluate(
        m[["child_id"]].assign(person_id=m["child_id_full"]),
        pd.DataFrame(columns=["person_a", "person_b"]),
    )
    assert agree["f1"] >= 0.99, agree
    for run in ("inc", "full"):
        t = months[run]["truth"]
        assert t["precision"] >= 0.98 and t["recall"] >= 0.95 and t["twin_false_merges"] == 0, t


def test_existing_child_ids_are_kept_or_their_change_recorded(months):
    before = months["month1"]
    after = _records(months["s"])
    m = before.merge(after, on=["agency", "record_token"], suffixes=("_old", "_new"))
    assert len(m) == len(before)
    with connect(months["s"]) as con:
        hist = con.execute("SELECT * FROM linked.child_id_history WHERE run_id = 'm2'").df()
    moved = m[m["child_id_old"] != m["child_id_new"]]
    transitions = set(zip(hist["from_child_id"], hist["child_id"], strict=True))
    assert all(
        (o, n) in transitions
        for o, n in zip(moved["child_id_old"], moved["child_id_new"], strict=True)
    )
    assert len(moved) <= 0.02 * len(m), moved
    # a child id that disappeared was merged into another child (recorded), never silently lost
    gone = set(before["child_id"]) - set(after["child_id"])
    assert gone <= set(hist.loc[hist["event"] == "merged", "from_child_id"])
    assert hist["cause"].notna().all() and (hist["mode"] == "incremental").all()
    new_rows = hist[hist["event"] == "new"]
    assert len(new_rows) > 0 and new_rows["cause"].str.contains("new record").all()
    assert (new_rows["n_records"] >= 1).all()


def test_rerun_without_changes_compares_nothing(months):
    s = months["s"]
    before = _records(s)
    again = link.run(s, run_id="m3", report=False)
    assert again["mode"] == "incremental" and again["pairs_compared"] == 0
    assert again["records_reclustered"] == 0 and again["id_history"] == {}
    after = _records(s)
    m = before.merge(after, on=["agency", "record_token"])
    assert (m["child_id_x"] == m["child_id_y"]).all()


def test_saved_model_holds_parameters_only_and_fallback_to_full(months):
    s = months["s_full"]
    text = incremental.model_path(s).read_text()
    d = json.loads(text)
    assert d["comparisons"] and "probability_two_random_records_match" in d
    assert not re.search(r"[0-9a-f]{32,}", text)
    with connect(s) as con:
        tokens = {
            v[0]
            for col in ("record_token", "first_name_bf", "dob_token", "nhs_token")
            for v in con.execute(f"SELECT DISTINCT {col} FROM staging.people").fetchall()
            if v[0]
        }
    assert not [t for t in tokens if t in text]
    incremental.model_path(s).unlink()
    f = link.run(s, run_id="m2b", mode="incremental", report=False)
    assert f["mode"] == "full" and f["mode_reason"] == "no saved model"
    assert incremental.model_path(s).exists()


def test_id_history_records_merges_splits_and_causes():
    prev = pd.DataFrame({"unique_id": list("abcdefg"),
                         "child_id": ["C1", "C1", "C2", "C3", "C3", "C4", "C5"]})  # fmt: skip
    # a,b,c -> C1 (absorbs C2); d stays C3, e splits off to a fresh C9; f moves to C1? no:
    # f (C4) joins C3; g withdrawn (C5 retired); h is new and alone (C8)
    cur = pd.DataFrame({"unique_id": list("abcdefh"),
                        "child_id": ["C1", "C1", "C1", "C3", "C9", "C3", "C8"]})  # fmt: skip
    reasons = {"c": "review accept", "g": "withdrawn record", "h": "new record"}
    h = link.id_history(prev, cur, reasons, "full re-link")
    rows = {(r.event, r.child_id, r.from_child_id): r for r in h.itertuples()}
    assert rows[("merged", "C1", "C2")].cause == "review accept"
    assert rows[("merged", "C1", "C2")].n_records == 1
    assert ("split", "C9", "C3") in rows and rows[("split", "C9", "C3")].cause == "full re-link"
    assert ("merged", "C3", "C4") in rows
    assert rows[("retired", "C5", None)].cause == "withdrawn record"
    assert rows[("new", "C8", None)].cause == "new record"
    assert len(h) == 5
