"""Fast tests of linkage.model's blocking-rule selection and the vectorised clustering guard."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from joinedup import contract
from linkage import clustering, model

HEX = contract.BLOOM_HEX_LENGTH

N_PERSONS = 600


def _people(n: int = N_PERSONS, seed: int = 3) -> pd.DataFrame:
    """Encoded-looking staged people rows (fake hex tokens), ~2 records per person, where many
    persons share a dob so that the loose dob rule is expensive."""
    rng = np.random.default_rng(seed)
    rows = []
    dobs = [f"d{k:03d}" for k in range(12)]  # few dobs: big dob blocks
    for p in range(n):
        first, sur = int(rng.integers(1, 2**62)), int(rng.integers(1, 2**62))
        dob = dobs[int(rng.integers(0, len(dobs)))]
        pc = f"JU{rng.integers(1, 4)} {rng.integers(0, 9)}"
        for r in range(int(rng.integers(1, 4))):
            rows.append(
                {
                    "agency": "health" if r == 0 else "education",
                    "record_token": f"r{p:05d}{r}",
                    "first_name_bf": format(first, f"0{HEX}x"),
                    "surname_bf": format(sur, f"0{HEX}x"),
                    "first_name_nhs_bf": "",
                    "surname_nhs_bf": "",
                    "dob_token": dob,
                    "dob_swap_token": dob[::-1],
                    "birth_year_month": f"20{10 + int(dob[1:]) % 5}-0{1 + int(dob[1:]) % 9}",
                    "sex": "MF"[p % 2],
                    "postcode_token": f"pc{p:05d}",
                    "postcode_sector": pc,
                    "nhs_token": f"n{p:05d}" if r <= 1 else "",
                    "upn_token": "",
                    "extract_date": "2026-10-01",
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def linker_and_df():
    df = model.prepare_input(_people())
    linker, con = model.build_linker(df, per_record=6.0)
    yield linker, df
    con.close()


def test_chosen_rules_respect_the_budget(linker_and_df):
    linker, df = linker_and_df
    a = model.blocking_analysis(linker)
    assert a is not None
    assert a["budget"] == int(max(model.MIN_BUDGET, 6.0 * len(df)))
    assert a["comparisons_chosen"] <= a["budget"]
    assert a["cumulative"][-1]["cumulative_comparison_count"] == a["comparisons_chosen"]
    # every kept candidate's variant fits its share of the budget
    for c in a["candidates"]:
        if c["variant"] is not None:
            assert c["variants"][c["variant"]]["comparisons"] <= a["budget"] * a["rule_share"]


def test_loose_dob_rule_is_tightened_when_over_its_share(linker_and_df):
    linker, _ = linker_and_df
    a = model.blocking_analysis(linker)
    dob = next(c for c in a["candidates"] if c["name"] == "dob")
    assert dob["variants"][0]["comparisons"] > a["budget"] * a["rule_share"]
    assert dob["variant"] != 0
    assert "l.dob_token = r.dob_token" not in a["rules"]


def test_every_chosen_rule_came_from_the_analysis(linker_and_df):
    linker, _ = linker_and_df
    a = model.blocking_analysis(linker)
    analysed = {r["rule"] for c in a["candidates"] for v in c["variants"] for r in v["rules"]}
    assert a["rules"] and set(a["rules"]) <= analysed
    assert [r["blocking_rule"] for r in a["cumulative"]] == a["rules"]
    used = [
        br.blocking_rule_sql for br in linker._settings_obj._blocking_rules_to_generate_predictions
    ]
    assert used == a["rules"]
    em = a["training"]["rules"]
    assert [r["name"] for r in em] == [c.name for c in model.TRAINING_CANDIDATES]
    for r, cand in zip(em, model.TRAINING_CANDIDATES, strict=True):
        assert r["rule"] in {v[0] for v in cand.variants}


def test_counts_match_the_pairs_generated(linker_and_df):
    """Splink's count (exact on small data) equals the pairs the rules really generate."""
    linker, df = linker_and_df
    a = model.blocking_analysis(linker)
    pred = linker.inference.predict()
    assert len(pred.as_pandas_dataframe()) == a["comparisons_chosen"]


def test_figures_and_chart(linker_and_df):
    linker, _ = linker_and_df
    figs = model.blocking_figures(model.blocking_analysis(linker))
    assert figs["comparisons_chosen"] == sum(r["marginal"] for r in figs["rules_kept"])
    chart = model.blocking_chart(linker)
    assert isinstance(chart, dict) and "$schema" in chart and "vega-lite" in chart["$schema"]
    assert model.blocking_chart(object()) is None  # type: ignore[arg-type]


def test_generous_budget_keeps_loose_rules():
    df = model.prepare_input(_people(n=120))
    linker, con = model.build_linker(df, per_record=1e6)
    try:
        a = model.blocking_analysis(linker)
        assert all(c["variant"] == 0 for c in a["candidates"])
        assert a["rules"] == model.prediction_rules()
    finally:
        con.close()


def test_near_miss_dob_levels():
    df = model.prepare_input(_people(n=5))
    assert df["birth_month_index"].dtype == "Int64"
    labels = [lvl["label_for_charts"] for lvl in model.comparisons()[2]["comparison_levels"]]
    assert labels.index("adjacent month") < labels.index("same year")


def test_hamming_words_match_python_similarity():
    """Differing bits over 60-bit BIGINT words in DuckDB (model._hamming, `|` and `&` only, no
    XOR operator, so Spark SQL runs the same text) equal the Python count on the hex filters."""
    import duckdb

    from pseudonymiser.encoding import hamming_similarity

    rng = np.random.default_rng(5)
    hexes = [bytes(rng.integers(0, 256, HEX // 2, dtype=np.uint8)).hex() for _ in range(30)]
    hexes[3] = "f" * HEX  # every word at its largest: still a non-negative BIGINT
    df = model.prepare_input(_people(n=30)).head(30).copy()
    df["first_name_bf"] = hexes
    con = duckdb.connect()
    model.register_input(con, df, "p")
    con.execute("CREATE TABLE q AS SELECT row_number() OVER () AS i, * FROM p")
    types = {r[0]: r[1] for r in con.execute("DESCRIBE p").fetchall()}
    assert types["fn_w0"] == "BIGINT" and model.BLOOM_WORDS == 16

    def side(s: str) -> str:
        cols = [f"fn_w{i} AS fn_w{i}_{s}" for i in range(model.BLOOM_WORDS)]
        return f"(SELECT i, {', '.join(cols)} FROM q) {s}"

    got = con.execute(
        f"SELECT l.i, {model._hamming('fn')} FROM {side('l')} JOIN {side('r')} ON r.i = l.i + 1 "
        "ORDER BY l.i"
    ).fetchall()
    con.close()
    assert len(got) == len(hexes) - 1
    for i, differ in got:
        expected = max(0.0, 1 - 2 * differ / contract.BLOOM_BITS)
        assert expected == pytest.approx(hamming_similarity(hexes[i - 1], hexes[i]), abs=1e-12)


def test_vectorised_guard_matches_definitions():
    nodes = pd.DataFrame(
        {
            "unique_id": ["a", "b", "c", "d"],
            "nhs_token": ["n1", "n2", None, "n1"],
            "upn_token": [None, None, None, None],
            "sex": ["M", "M", "F", "M"],
            "first_name_bf": ["f" * HEX, "0" * (HEX - 1) + "1", None, "f" * HEX],
            "surname_bf": ["s", "s", "s", "s"],
            "dob_token": ["d", "d", "d", "d"],
            "postcode_sector": ["p", "p", "p", "p"],
        }
    )
    edges = pd.DataFrame(
        {
            "unique_id_l": ["a", "a", "a", "b", "zz"],
            "unique_id_r": ["b", "c", "d", "d", "a"],
            "match_weight": [10.0, 9.0, 8.0, 7.0, 6.0],
            "match_probability": [0.99, 0.99, 0.99, 0.99, 0.99],
        }
    )
    conflict = clustering.conflict_mask(edges, nodes).tolist()
    assert conflict == [True, True, False, True, False]  # a-c: sex differs; zz unknown
    dice = clustering.first_name_dice(edges, nodes)
    assert dice.iloc[2] == 1.0 and np.isnan(dice.iloc[1]) and np.isnan(dice.iloc[4])
    assert dice.iloc[0] == 0.0  # all but one bit differ: Hamming similarity floored at 0
    twin = clustering.twin_signature(edges, nodes, clustering.TWIN_DICE_DROP).tolist()
    assert twin == [True, False, False, True, False]
    clusters = clustering.guarded_clusters(nodes, edges, 0.95)
    cid = dict(zip(clusters["unique_id"], clusters["cluster_id"], strict=True))
    assert cid["a"] == cid["d"] == "a" and cid["b"] == "b" and cid["c"] == "c"
