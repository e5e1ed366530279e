"""Linkage stage on a small messy synthetic county: quality, stable ids, twins, outputs."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from joinedup import agency_stages, contract
from linkage import clustering, evaluate, link
from warehouse import assemble
from warehouse.db import connect

FIRST = ("OLIVER GEORGE HARRY NOAH JACK LEO ARTHUR MUHAMMAD OSCAR CHARLIE JACOB THOMAS HENRY "
         "WILLIAM ALFIE OLIVIA AMELIA ISLA AVA MIA IVY LILY ISABELLA ROSIE SOPHIA GRACE FREYA "
         "EMILY POPPY ELLA EVIE CHLOE SOPHIE JESSICA DANIEL JAMES LUCAS ETHAN MASON LOGAN "
         "ZARA AISHA FATIMA HANNAH RUBY MAISIE PHOEBE SCARLETT MATILDA ELSIE").split()  # fmt: skip
SURNAMES = ("SMITH JONES WILLIAMS TAYLOR BROWN DAVIES EVANS WILSON THOMAS JOHNSON ROBERTS "
            "ROBINSON THOMPSON WRIGHT WALKER WHITE EDWARDS HUGHES GREEN HALL LEWIS HARRIS "
            "CLARKE PATEL JACKSON WOOD TURNER MARTIN COOPER HILL WARD MORRIS MOORE CLARK LEE "
            "KING BAKER HARRISON MORGAN ALLEN JAMES SCOTT PHILLIPS WATSON DAVIS PARKER PRICE "
            "BENNETT YOUNG GRIFFITHS MITCHELL KELLY COOK CARTER RICHARDSON BAILEY COLLINS "
            "BELL SHAW MURPHY MILLER COX RICHARDS KHAN MARSHALL ANDERSON SIMPSON ELLIS ADAMS "
            "SINGH BEGUM WILKINSON FOSTER CHAPMAN POWELL WEBB ROGERS GRAY MASON ALI HUSSAIN "
            "CAMPBELL MATTHEWS OWEN PALMER HOLMES MILLS BARNES KNIGHT LLOYD BUTLER RUSSELL "
            "BARKER FISHER STEVENS JENKINS MURRAY DIXON HARVEY").split()  # fmt: skip
SHARE = {"health": 0.97, "education": 0.75, "police": 0.2, "csc": 0.25}
EXTRACT = "2026-10-01"


def _typo(word: str, rng: np.random.Generator) -> str:
    i = int(rng.integers(0, len(word)))
    kind = rng.integers(0, 3)
    if kind == 0 and len(word) > 3:
        return word[:i] + word[i + 1 :]
    if kind == 1:
        return word[:i] + "AEIOU"[int(rng.integers(0, 5))] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def make_county(settings, n: int = 400, seed: int = 7) -> None:
    """Raw agency extracts + truth parquet files in `settings`, like `synth.generate.run`."""
    rng = np.random.default_rng(seed)
    persons = []
    i = 0
    while len(persons) < n:
        pid = f"P{i:05d}"
        dob = dt.date(2008, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365 * 17)))
        base = {
            "person_id": pid, "first": FIRST[int(rng.integers(0, len(FIRST)))],
            "surname": SURNAMES[int(rng.integers(0, len(SURNAMES)))], "dob": dob,
            "sex": "MF"[int(rng.integers(0, 2))],
            "eth": contract.ETHNICITIES[int(rng.integers(0, 5))],
            "pc": f"JU{int(rng.integers(1, 9))} {int(rng.integers(1, 9))}"
                  f"{'ABDEFG'[int(rng.integers(0, 6))]}{'HJLNPQ'[int(rng.integers(0, 6))]}",
            "nhs": f"{int(rng.integers(10**9, 10**10 - 1))}", "upn": f"U{i:09d}X", "twin_of": None,
        }  # fmt: skip
        persons.append(base)
        i += 1
        if rng.random() < 0.08:  # a twin: same surname, dob, postcode; another first name
            twin = dict(base, person_id=f"P{i:05d}", upn=f"U{i:09d}X", twin_of=pid,
                        nhs=f"{int(rng.integers(10**9, 10**10 - 1))}",
                        sex="MF"[int(rng.integers(0, 2))])  # fmt: skip
            twin["first"] = next(f for f in rng.permutation(FIRST) if f != base["first"])
            base["twin_of"] = twin["person_id"]
            persons.append(twin)
            i += 1
    settings.agency_dir.mkdir(parents=True, exist_ok=True)
    settings.truth_dir.mkdir(parents=True, exist_ok=True)
    for agency, share in SHARE.items():
        people, events, truth = [], [], []
        for p in persons:
            if rng.random() > share:
                continue
            first, surname, dob, pc = p["first"], p["surname"], p["dob"], p["pc"]
            if rng.random() < 0.06:
                first = _typo(first, rng)
            if rng.random() < 0.06:
                surname = _typo(surname, rng)
            if rng.random() < 0.03 and dob.day <= 12 and dob.day != dob.month:
                dob = dt.date(dob.year, dob.day, dob.month)
            elif rng.random() < 0.02:
                dob = dob + dt.timedelta(days=1)
            if rng.random() < 0.1:
                pc = f"JU{int(rng.integers(1, 9))} {int(rng.integers(1, 9))}ZZ"
            first = first.title() if rng.random() < 0.5 else first.lower()
            sid = f"{agency[0].upper()}{len(people) + 1:07d}"
            nhs = p["nhs"] if agency == "health" or rng.random() < 0.3 else ""
            upn = (
                p["upn"]
                if agency == "education" or (agency == "csc" and rng.random() < 0.3)
                else ""
            )
            people.append({
                "source_id": sid, "first_name": first, "surname": surname.title(),
                "dob": dob.isoformat(), "sex": p["sex"] if rng.random() > 0.02 else "U",
                "postcode": pc if rng.random() > 0.3 else pc.replace(" ", "").lower(),
                "ethnicity": p["eth"], "nhs_number": nhs, "upn": upn, "extract_date": EXTRACT,
            })  # fmt: skip
            truth.append({"row_number": len(people), "person_id": p["person_id"]})
            for j in range(2):
                events.append({
                    "event_id": f"{sid}-E{j}", "source_id": sid, "event_date": f"2025-0{j + 1}-10",
                    "event_type": contract.EVENT_TYPES[agency][0],
                    "value": "95" if contract.EVENT_TYPES[agency][0] == "attendance" else "",
                    "extract_date": EXTRACT,
                })  # fmt: skip
        pd.DataFrame(people, columns=contract.RAW_PEOPLE_COLUMNS).to_csv(
            settings.agency_dir / contract.file_name(agency, "people"), index=False)  # fmt: skip
        pd.DataFrame(events, columns=contract.RAW_EVENT_COLUMNS).to_csv(
            settings.agency_dir / contract.file_name(agency, "events"), index=False)  # fmt: skip
        pd.DataFrame(truth, columns=["row_number", "person_id"]).to_parquet(
            settings.truth_dir / f"people_{agency}.parquet"
        )
    pd.DataFrame(persons)[["person_id", "twin_of"]].to_parquet(
        settings.truth_dir / "children.parquet"
    )


def stage_landing(settings) -> None:
    """Load the pseudonymised landing files into raw.* and staging.* of each unit's own store
    (stands in for ingest + validate, which other packages own): people encodings at the
    linkage unit, attributes and events at the hub."""
    for unit in ("linkage", "hub"):
        us = settings.for_unit(unit)
        with connect(us) as con:
            for path in sorted(us.landing_dir.glob("*.csv")):
                _stage_file(con, path)


def _stage_file(con, path) -> None:
    agency, kind = contract.parse_file_name(path.name)
    data = path.read_bytes()
    load_id = "L" + hashlib.sha256(data).hexdigest()[:16]
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if df.empty:
        return
    df.insert(0, "row_number", np.arange(1, len(df) + 1))
    df.insert(0, "load_id", load_id)
    con.execute(
        "INSERT INTO raw.loads VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'loaded', NULL, now())",
        [load_id, agency, kind, path.name, hashlib.sha256(data).hexdigest(), len(df),
         ",".join(df.columns[2:]), EXTRACT],
    )  # fmt: skip
    con.register("_df", df)
    con.execute(f"INSERT INTO raw.{kind} SELECT * FROM _df")
    if kind == "people":
        con.execute(
            "INSERT INTO staging.people SELECT * REPLACE (TRY_CAST(extract_date AS DATE) "
            "AS extract_date) FROM _df WHERE record_token <> ''"
        )
    elif kind == "attributes":
        con.execute(
            "INSERT INTO staging.attributes SELECT * REPLACE (TRY_CAST(birth_year AS INTEGER) "
            "AS birth_year, TRY_CAST(extract_date AS DATE) AS extract_date) FROM _df "
            "WHERE record_token <> ''"
        )
    else:
        con.execute(
            "INSERT INTO staging.events BY NAME SELECT * EXCLUDE (event_month) REPLACE ("
            "TRY_CAST(value AS DOUBLE) AS value, TRY_CAST(extract_date AS DATE) AS extract_date), "
            "TRY_CAST(event_month || '-01' AS DATE) AS event_date FROM _df "
            "WHERE TRY_CAST(event_month || '-01' AS DATE) IS NOT NULL "
            "AND record_token <> '' AND event_token <> '' AND event_type <> ''"
        )
    con.unregister("_df")


def build(settings, source: str) -> None:
    """A county in `settings` (synth's generator, or the dense-twin fixture above), keyed,
    pseudonymised and staged."""
    if source == "synth":
        generate = pytest.importorskip("synth.generate")
        generate.run(settings, children=800, seed=11)
    else:
        make_county(settings, n=400)
    agency_stages.keygen(settings)
    agency_stages.pseudonymise(settings)
    stage_landing(settings)


def _linked(tmp_path_factory, source: str):
    from joinedup.config import Settings

    s = Settings.from_env(tmp_path_factory.mktemp(source) / "home")
    s.ensure_dirs()
    build(s, source)
    figures = link.run(s.for_unit("linkage"), run_id="first")
    assemble.run(s)  # the hub applies the hand-off: linked.children / linked.events
    return s, figures


@pytest.fixture(scope="module")
def linked_home(tmp_path_factory):
    """A small county from `synth.generate` (falls back to the local fixture if absent)."""
    try:
        import synth.generate  # noqa: F401
    except ImportError:
        return _linked(tmp_path_factory, "fixture")
    return _linked(tmp_path_factory, "synth")


@pytest.fixture(scope="module")
def twins_home(tmp_path_factory):
    """The local fixture: 8% twins (same surname, dob, postcode), typos, dob swaps, moves."""
    return _linked(tmp_path_factory, "fixture")


def test_link_quality_on_small_county(linked_home):
    _, figures = linked_home
    t = figures["truth"]
    assert t["records_evaluated"] == figures["records"]
    assert t["precision"] >= 0.98, t
    assert t["recall"] >= 0.95, t


@pytest.mark.parametrize("home", ["linked_home", "twins_home"])
def test_twins_not_merged(home, request):
    _, figures = request.getfixturevalue(home)
    t = figures["truth"]
    assert t["twin_pairs"] >= (10 if home == "twins_home" else 1)
    assert t["twin_false_merges"] == 0, t
    assert t["precision"] >= 0.98 and t["recall"] >= 0.95, t


def test_linked_tables(linked_home):
    s, figures = linked_home
    with connect(s.for_unit("linkage")) as con:  # the linkage unit's store
        n_people = con.execute("SELECT count(*) FROM staging.current_people").fetchall()[0][0]
        rec = con.execute("SELECT * FROM linked.records").df()
        assert len(rec) == n_people and rec["child_id"].notna().all()
        assert rec["child_id"].str.fullmatch(r"C[0-9a-f]{10}").all()
        pairs = con.execute("SELECT * FROM linked.pairs").df()
        assert list(pairs.columns) == link.PAIR_COLUMNS
        hist = con.execute("SELECT * FROM linked.child_id_history").df()
    with connect(s) as con:  # the hub's, after assembling the hand-off
        ch = con.execute("SELECT * FROM linked.children").df()
        assert set(ch["child_id"]) == set(rec["child_id"])
        assert ch["n_records"].sum() == n_people
        assert set(ch["sex"]) <= set(contract.SEXES)
        ev = con.execute("SELECT count(*), count(child_id) FROM linked.events").fetchall()[0]
        assert ev[0] == ev[1] == con.execute("SELECT count(*) FROM staging.events").fetchall()[0][0]
    assert (hist["event"] == "new").sum() == len(ch)


def test_outputs_have_no_encodings(linked_home):
    s, figures = linked_home
    lu = s.for_unit("linkage")
    out = lu.outputs_dir / "linkage"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["truth"]["f1"] == figures["truth"]["f1"]
    page = (out / "report.html").read_text()
    assert "Match weights" in page and "Cluster sizes" in page
    with connect(lu) as con:
        values = set()
        for col in ("record_token", "dob_token", "nhs_token", "first_name_bf", "surname_bf"):
            values |= {
                v[0] for v in con.execute(f"SELECT {col} FROM staging.people").fetchall() if v[0]
            }
    assert not [v for v in values if v in page]
    assert s.key_file.read_text().strip() not in page


def test_rerun_keeps_child_ids(linked_home):
    s, _ = linked_home
    s = s.for_unit("linkage")
    with connect(s) as con:
        before = con.execute("SELECT agency, record_token, child_id FROM linked.records").df()
    link.run(s, run_id="second", report=False)
    with connect(s) as con:
        after = con.execute("SELECT agency, record_token, child_id FROM linked.records").df()
        hist = con.execute("SELECT * FROM linked.child_id_history WHERE run_id = 'second'").df()
    m = before.merge(after, on=["agency", "record_token"])
    assert len(m) == len(before)
    assert (m["child_id_x"] == m["child_id_y"]).all()
    assert hist.empty


def test_assign_child_ids_merge_and_split():
    prev = pd.DataFrame({"unique_id": list("abcde"), "child_id": ["C1", "C1", "C2", "C3", "C3"]})
    # a, b, c now one cluster (C1 absorbs C2); d and e split apart
    clusters = pd.DataFrame({"unique_id": list("abcdef"), "cluster_id": [1, 1, 1, 2, 3, 4]})
    ids, history = clustering.assign_child_ids(clusters, prev)
    assert ids[1] == "C1" and ids[2] == "C3"
    assert ids[3] not in {"C1", "C2", "C3"} and ids[4].startswith("C")
    events = {(e, d.split()[0]) for _, e, d in history}
    assert ("merged", "absorbed") in events and ("split", "records") in events
    assert sum(e == "new" for _, e, _ in history) == 1


def test_guard_reclusters_chained_twins():
    nodes = pd.DataFrame({
        "unique_id": ["a", "b", "c"], "nhs_token": ["n1", None, "n2"],
        "upn_token": [None, None, None], "sex": ["F", None, "F"], "first_name_bf": [None] * 3,
        "dob_token": ["d", "d", "d"], "surname_bf": ["s"] * 3,
        "postcode_sector": [None] * 3,
    })  # fmt: skip
    edges = pd.DataFrame({"unique_id_l": ["a", "b"], "unique_id_r": ["b", "c"],
                          "match_probability": [0.99, 0.97],
                          "match_weight": [9.0, 8.0]})  # fmt: skip
    out = clustering.guarded_clusters(nodes, edges, 0.95).set_index("unique_id")["cluster_id"]
    assert out["a"] == out["b"] != out["c"]


def test_evaluate_counts_pairs():
    rec = pd.DataFrame({"child_id": ["x", "x", "x", "y"], "person_id": ["p", "p", "q", "q"]})
    twins = pd.DataFrame({"person_a": ["p"], "person_b": ["q"]})
    f = evaluate.evaluate(rec, twins)
    assert f["pairs_predicted"] == 3 and f["pairs_true"] == 2 and f["pairs_true_positive"] == 1
    assert f["twin_false_merges"] == 1


def test_identity_edge_overrides_nhs_typo_but_not_twins():
    nodes = pd.DataFrame({
        "unique_id": ["a", "b", "c"], "nhs_token": ["n1", "n1x", "n2"],
        "upn_token": [None] * 3, "sex": ["F", "F", "F"],
        "first_name_bf": ["f" * contract.BLOOM_HEX_LENGTH] * 2 + ["0" * contract.BLOOM_HEX_LENGTH],
        "dob_token": ["d"] * 3, "surname_bf": ["s"] * 3,
        "postcode_sector": ["JU1 2", None, "JU1 2"],
    })  # fmt: skip
    edges = pd.DataFrame({"unique_id_l": ["a", "a"], "unique_id_r": ["b", "c"],
                          "match_probability": [0.999, 0.99],
                          "match_weight": [12.0, 10.0]})  # fmt: skip
    out = clustering.guarded_clusters(nodes, edges, 0.95).set_index("unique_id")["cluster_id"]
    assert out["a"] == out["b"] != out["c"]
