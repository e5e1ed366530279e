"""Plain Splink with our blocking rules: translation token columns -> plaintext columns, and
the same comparisons on both paths (the benchmark's like-for-like comparison)."""

from __future__ import annotations

import re

import duckdb
import pandas as pd
import pytest
from splink import DuckDBAPI

from joinedup import contract
from linkage import model, plain
from pseudonymiser import encoding, pseudonymise
from tests.test_linkage import make_county

_REF = re.compile(r"\b[lr]\.([A-Za-z_][A-Za-z0-9_]*)")


def _all_candidate_rules() -> list[str]:
    cands = (*model.PREDICTION_CANDIDATES, *model.TRAINING_CANDIDATES)
    return list(dict.fromkeys(r for c in cands for v in c.variants for r in v))


# ---------------------------------------------------------------- translation
def test_every_candidate_rule_translates_to_plain_columns():
    rules = _all_candidate_rules()
    out = plain.translate_rules(rules)
    assert len(out) == len(rules)
    for token_rule, plain_rule in zip(rules, out, strict=True):
        cols = _REF.findall(plain_rule)
        assert cols and set(cols) <= set(plain.PLAIN_COLUMNS), plain_rule
        assert "_token" not in plain_rule
        # only the column names change: the SQL around them is kept
        assert _REF.sub("C", plain_rule) == _REF.sub("C", token_rule)
    # every mapped plain column is one prepare_plain makes
    assert set(plain.TOKEN_TO_PLAIN.values()) <= set(plain.PLAIN_COLUMNS)


def test_translation_examples():
    assert plain.translate_rules(
        [
            "l.dob_token = r.dob_token AND l.surname_bf = r.surname_bf",
            "l.dob_swap_token = r.dob_token",
            "l.nhs_token = r.nhs_token",
            'l."upn_token" = r."upn_token"',
            "l.postcode_token = r.postcode_token AND l.first_name_bf = r.first_name_bf",
            "l.postcode_sector = r.postcode_sector AND l.sex = r.sex",
        ]
    ) == [
        "l.dob = r.dob AND l.surname = r.surname",
        "l.dob_swap = r.dob",
        "l.nhs_number = r.nhs_number",
        "l.upn = r.upn",
        "l.postcode = r.postcode AND l.first_name = r.first_name",
        "l.postcode_sector = r.postcode_sector AND l.sex = r.sex",
    ]


@pytest.mark.parametrize(
    "rule",
    [
        "l.birth_month_index = r.birth_month_index",
        "l.agency = r.agency",
        "l.dob_token = r.dob_token AND l.first_name_nhs_bf = r.first_name_nhs_bf",
        "l.unknown_token = r.unknown_token",
        "dob_token = dob_token",
    ],
)
def test_unmappable_rule_raises(rule):
    with pytest.raises(ValueError):
        plain.translate_rules([rule])


def test_non_sql_rule_raises():
    with pytest.raises(ValueError, match="SQL text"):
        plain.translate_rules([object()])  # type: ignore[list-item]


# ---------------------------------------------------------------- same comparisons
@pytest.fixture(scope="module")
def county(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(our model input, plain raw rows) of one small messy county, rows in the same order."""
    from joinedup.config import Settings

    s = Settings.from_env(tmp_path_factory.mktemp("plainrules") / "home")
    s.ensure_dirs()
    make_county(s, n=300, seed=5)
    encoder = encoding.Encoder(b"plain-rules-test-key-32-bytes!!!")
    raw_frames, enc_frames = [], []
    for agency in contract.AGENCIES:
        path = s.agency_dir / contract.file_name(agency, "people")
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        enc_frames.append(pseudonymise.encode_people(raw, agency, encoder))
        raw_frames.append(raw.assign(agency=agency))
    ours = model.prepare_input(pd.concat(enc_frames, ignore_index=True))
    return ours, pd.concat(raw_frames, ignore_index=True)


def _sdfs(county):
    ours_df, raw = county
    con_o, con_p = duckdb.connect(), duckdb.connect()
    model.register_input(con_o, ours_df, "people_in")
    sdf_o = DuckDBAPI(connection=con_o).register("people_in", dataset_display_name="ours")
    sdf_p = DuckDBAPI(connection=con_p).register(
        plain.prepare_plain(raw), dataset_display_name="plain"
    )
    return (con_o, sdf_o), (con_p, sdf_p)


def test_each_rule_makes_the_same_pairs_on_both_paths(county):
    (con_o, sdf_o), (con_p, sdf_p) = _sdfs(county)
    try:
        rules = _all_candidate_rules()
        for rule, translated in zip(rules, plain.translate_rules(rules), strict=True):
            n_o = plain.count_comparisons(sdf_o, [rule])
            n_p = plain.count_comparisons(sdf_p, [translated])
            assert n_o == n_p, rule
        loose = model.prediction_rules()
        n_o = plain.count_comparisons(sdf_o, loose)
        assert n_o > 0
        assert n_o == plain.count_comparisons(sdf_p, plain.translate_rules(loose))
    finally:
        con_o.close()
        con_p.close()


def test_plain_with_our_chosen_rules_makes_our_comparisons(county, monkeypatch):
    """A tight budget makes the analysis tighten or drop candidates; plain Splink with the
    translated choice (prediction and EM) scores exactly as many pairs as ours chose."""
    ours_df, raw = county
    monkeypatch.setattr(model, "MIN_BUDGET", 0)
    linker, con = model.build_linker(ours_df, per_record=3.0)
    try:
        analysis = model.blocking_analysis(linker)
        assert analysis is not None
        figures = model.blocking_figures(analysis)
    finally:
        con.close()
    assert any(c["variant"] != 0 for c in figures["candidates"])  # some rule was tightened
    rules = [r["rule"] for r in figures["rules_kept"]]
    em = [r["rule"] for r in figures["training_rules"]]
    assert rules and figures["record_sample_proportion"] == 1.0  # exact counts at this size
    clusters, pairs, fig = plain.run_plain(
        raw,
        seed=1,
        rules=plain.translate_rules(rules),
        em_rules=plain.translate_rules(em),
    )
    assert fig["comparisons"] == figures["comparisons_chosen"] > 0
    assert fig["blocking_rules"] == plain.translate_rules(rules)
    assert len(clusters) == len(raw)
    assert fig["comparisons"] >= fig["pairs_scored"] == len(pairs)
    assert set(fig["seconds"]) == {"prepare", "train", "predict", "cluster"}
