"""Pseudonymiser and encodings (contract v2): per-field keys, tokens, salted diffused name
filters, row order, no identifiers out."""

from __future__ import annotations

import hmac
import os
import stat

import numpy as np
import pandas as pd
import pytest

from joinedup import agency_stages
from pseudonymiser import contract, keys
from pseudonymiser import encoding as enc
from pseudonymiser.errors import KeyFileError, PseudonymiseError, PseudonymiserError

RAW_PEOPLE = [
    # source_id, first, surname, dob, sex, postcode, ethnicity, nhs, upn
    ("H0000001", "Zoë", "O'Brien", "2014-03-07", "F", "ju4 7qb", "WHITE", "943 476 5919", ""),
    ("H0000002", "Jonathan", "Smith", "2012-11-11", "M", "JU1 2AB", "ASIAN", "9434765870", ""),
    ("H0000003", "", "", "", "X", "", "NOPE", "", ""),  # invalid clear values pass through
    ("H0000004", "Jonathon", "Smyth", "2012-02-30", "M", "JU12AB", "UNK", "", "A123456789012"),
]


def write_raw(settings, rows=RAW_PEOPLE, agency="health"):
    settings.agency_dir.mkdir(parents=True, exist_ok=True)
    people = pd.DataFrame(
        [(*r, "2026-10-01") for r in rows], columns=list(contract.RAW_PEOPLE_COLUMNS)
    )
    people.to_csv(settings.agency_dir / f"{agency}_people.csv", index=False)
    events = pd.DataFrame(
        [
            (f"EV{i}", r[0], "2025-01-0" + str(1 + i % 9), "ae_attendance", "", "2026-10-01")
            for i, r in enumerate(rows * 3)
        ],
        columns=list(contract.RAW_EVENT_COLUMNS),
    )
    events.to_csv(settings.agency_dir / f"{agency}_events.csv", index=False)
    return people, events


def test_refuses_without_key(settings):
    write_raw(settings)
    with pytest.raises(KeyFileError, match="not found"):
        agency_stages.pseudonymise(settings)
    assert not any(settings.landing_dir.glob("*.csv"))
    assert not any(settings.for_unit("linkage").landing_dir.glob("*.csv"))
    assert issubclass(KeyFileError, PseudonymiserError) and issubclass(KeyFileError, ValueError)


def test_keygen_never_overwrites(settings):
    first = agency_stages.keygen(settings)
    assert first["created"] is True
    text = settings.key_file.read_text()
    assert stat.S_IMODE(os.stat(settings.key_file).st_mode) == 0o600
    assert len(keys.load_key(settings.key_file)) == keys.KEY_BYTES
    assert agency_stages.keygen(settings)["created"] is False
    assert settings.key_file.read_text() == text
    with pytest.raises(KeyFileError, match="already exists"):
        keys.generate_key(settings.key_file)


def test_short_key_refused(tmp_path):
    bad = tmp_path / "k"
    bad.write_text("abcd")
    with pytest.raises(KeyFileError, match="too short"):
        keys.load_key(bad)


def test_per_field_keys_differ_and_tokens_are_keyed():
    key = b"1" * 32
    fkeys = {label: enc.field_key(key, label) for label in enc.FIELD_LABELS}
    assert len(set(fkeys.values())) == len(enc.FIELD_LABELS)  # one key per field
    assert all(len(k) == 32 and k != key for k in fkeys.values())
    assert enc.field_key(b"2" * 32, "dob") != fkeys["dob"]
    e1, e2 = enc.Encoder(key), enc.Encoder(b"2" * 32)
    assert e1.token("postcode", "JU47QB") == enc.token(fkeys["postcode"], "JU47QB")
    assert e1.token("postcode", "JU47QB") != e2.token("postcode", "JU47QB")  # keyed
    assert e1.token("nhs", "9434765919") != e1.token("upn", "9434765919")  # per field
    assert len(e1.token("dob", "2014-03-07")) == contract.TOKEN_HEX_LENGTH
    assert e1.token("dob", "") == ""
    # the token is HMAC-SHA256 under the field key, nothing else (agencies reimplement this)
    assert enc.token(fkeys["dob"], "2014-03-07") == hmac.digest(
        fkeys["dob"], b"2014-03-07", "sha256").hex()[:32]  # fmt: skip


def test_no_double_hash_spacing():
    """Each bigram's positions are drawn independently: never an arithmetic progression mod the
    filter length (the v1 double-hashing pattern), and different bigrams do not share a step."""
    e = enc.Encoder(b"k" * 32)
    key = e._keys["surname_bf"]
    for gram in ("_S", "SM", "MI", "IT", "TH", "H_", "AN", "N_", "_J", "ON"):
        pos = enc.positions(key, f"2014-03-07|{gram}", enc.NAME_HASHES)
        steps = {(b - a) % contract.BLOOM_BITS for a, b in zip(pos, pos[1:], strict=False)}
        assert len(steps) > 1, gram
    # v1 for contrast: one fixed step per bigram
    v1 = enc.EncoderV1(b"k" * 32)._bigram_int("SM")
    assert bin(v1).count("1") <= enc.V1_BLOOM_HASHES


def test_filters_salted_by_dob():
    e = enc.Encoder(b"k" * 32)
    salt = enc.name_salt("2014-03-07")
    assert salt == enc.name_salt("2014-07-03")  # a day/month swap keeps the salt
    assert enc.name_salt("2012-02-30") == "" and enc.name_salt("") == ""
    a = e.bloom("surname_bf", "SMITH", salt)
    assert a == e.bloom("surname_bf", "SMITH", salt)  # same salt: same filter
    assert a != e.bloom("surname_bf", "SMITH", enc.name_salt("2014-03-08"))
    assert a != e.bloom("first_name_bf", "SMITH", salt)  # per-field key
    assert e.bloom("surname_bf", "SMITH", "") == "" and e.bloom("surname_bf", "", salt) == ""
    # under different salts the same name is as unrelated as two different names
    other = e.bloom("surname_bf", "SMITH", enc.name_salt("2011-05-20"))
    assert enc.hamming_similarity(a, other) < 0.35
    assert enc.nhs_salt("943 476 5919") == "nhs:9434765919" and enc.nhs_salt("") == ""


def test_filter_similarity_close_high_unrelated_low():
    e = enc.Encoder(b"k" * 32)
    salt = enc.name_salt("2012-11-11")

    def sim(a: str, b: str, field: str = "first_name_bf") -> float:
        return enc.hamming_similarity(e.bloom(field, a, salt), e.bloom(field, b, salt))

    bf = e.bloom("first_name_bf", "JONATHAN", salt)
    assert len(bf) == contract.BLOOM_HEX_LENGTH and bf == bf.lower()
    assert sim("JONATHAN", "JONATHAN") == 1.0
    assert sim("JONATHAN", "JONATHON") > 0.55
    assert sim("SMITH", "SMYTH", "surname_bf") > 0.45
    assert sim("JONATHAN", "MARY") < 0.35
    assert sim("SMITH", "WILLIAMS", "surname_bf") < 0.35
    bits = enc.hex_to_bits(bf)  # diffused: not the sparse raw filter
    assert 0.2 < bits.mean() < 0.6 and not np.array_equal(
        bits, e.raw_bits("first_name_bf", "JONATHAN", salt))  # fmt: skip
    assert enc.Encoder(b"j" * 32).bloom("first_name_bf", "JONATHAN", salt) != bf  # keyed


def test_normalisation():
    assert enc.normalise_name(" Zoë O'Brien-Smith ") == "ZOEOBRIENSMITH"
    assert enc.normalise_postcode("ju4 7qb") == "JU47QB"
    assert enc.postcode_sector("ju4 7qb") == "JU4 7"
    assert enc.postcode_sector("nonsense") == ""
    assert enc.normalise_nhs("943 476 5919") == "9434765919"
    assert enc.swap_dob("2014-03-07") == "2014-07-03"
    assert enc.swap_dob("2014-03-03") == "" and enc.swap_dob("2014-03-25") == ""
    assert enc.birth_year_month("2014-03-07") == "2014-03"
    assert enc.birth_year_month("2012-02-30") == ""
    assert [enc.soundex(n) for n in ("Robert", "Rupert", "Ashcraft", "Tymczak")] == [
        "R163", "R163", "A261", "T522",
    ]  # fmt: skip


def test_pseudonymise_files(settings):
    agency_stages.keygen(settings)
    raw_people, raw_events = write_raw(settings)
    (settings.agency_dir / "notes.txt").write_text("not a contract file")
    figures = agency_stages.pseudonymise(settings)
    # three files: people (encodings) to the linkage unit, attributes and events to the hub
    assert figures["files"] == 3
    assert figures["rows"] == 2 * len(raw_people) + len(raw_events)
    lu = settings.for_unit("linkage").landing_dir
    assert sorted(p.name for p in lu.glob("*.csv")) == ["health_people.csv"]
    assert sorted(p.name for p in settings.landing_dir.glob("*.csv")) == [
        "health_attributes.csv", "health_events.csv",
    ]  # fmt: skip
    people = pd.read_csv(lu / "health_people.csv", dtype=str, keep_default_na=False)
    attrs = pd.read_csv(settings.landing_dir / "health_attributes.csv", dtype=str,
                        keep_default_na=False)  # fmt: skip
    events = pd.read_csv(settings.landing_dir / "health_events.csv", dtype=str,
                         keep_default_na=False)  # fmt: skip
    assert tuple(people.columns) == contract.PEOPLE_COLUMNS
    assert tuple(attrs.columns) == contract.ATTRIBUTE_COLUMNS
    assert tuple(events.columns) == contract.EVENT_COLUMNS
    assert len(people) == len(attrs) == len(raw_people) and len(events) == len(raw_events)
    assert (people["agency"] == "health").all()
    # row order: row n in is row n out, in both files made from the people extract
    assert list(people["sex"]) == list(raw_people["sex"]) == list(attrs["sex"])
    assert list(attrs["record_token"]) == list(people["record_token"])
    assert "ethnicity" not in people  # v2: not in the linkage unit's file
    assert list(attrs["ethnicity"]) == list(raw_people["ethnicity"])
    # the hub gets the birth year only, events by month
    assert list(attrs["birth_year"]) == ["2014", "2012", "", ""]
    assert list(events["event_month"]) == [d[:7] for d in raw_events["event_date"]]
    assert not set(contract.IDENTIFIER_ENCODING_COLUMNS) & (
        set(attrs.columns) | set(events.columns)
    )
    # events point at their person's record token
    by_source = dict(zip(raw_people["source_id"], people["record_token"], strict=True))
    assert list(events["record_token"]) == [by_source[s] for s in raw_events["source_id"]]
    assert events["event_token"].is_unique
    row = people.iloc[0]
    assert row["birth_year_month"] == "2014-03" and row["postcode_sector"] == "JU4 7"
    assert row["dob_swap_token"] and people.iloc[1]["dob_swap_token"] == ""  # 11-11
    assert people.iloc[2]["first_name_bf"] == "" and people.iloc[2]["surname_nhs_bf"] == ""
    assert people.iloc[3]["first_name_bf"] == ""  # invalid dob: no salt, no filter
    assert people.iloc[0]["first_name_nhs_bf"] and people.iloc[3]["first_name_nhs_bf"] == ""
    for col in contract.BLOOM_COLUMNS:
        vals = people[col][people[col] != ""]
        assert vals.str.fullmatch(f"[0-9a-f]{{{contract.BLOOM_HEX_LENGTH}}}").all(), col
    assert people.iloc[2]["sex"] == "X"  # invalid values are left for validation to catch
    # normalisation: same postcode written two ways gives the same token
    assert people.iloc[1]["postcode_token"] == people.iloc[3]["postcode_token"]
    for col in contract.TOKEN_COLUMNS:
        vals = people[col][people[col] != ""]
        assert vals.str.fullmatch(f"[0-9a-f]{{{contract.TOKEN_HEX_LENGTH}}}").all(), col


def test_no_raw_identifier_in_output(settings):
    agency_stages.keygen(settings)
    raw_people, raw_events = write_raw(settings)
    agency_stages.pseudonymise(settings)
    landing = [settings.landing_dir, settings.for_unit("linkage").landing_dir]
    text = "".join(p.read_text() for d in landing for p in d.glob("*.csv")).upper()
    for col in contract.RAW_IDENTIFIER_COLUMNS:
        source = raw_people if col in raw_people else raw_events
        for value in source[col]:
            forms = {str(value).upper()}
            if col in ("first_name", "surname"):
                forms.add(enc.normalise_name(value))
            if col == "nhs_number":
                forms.add(enc.normalise_nhs(value))
            if col == "postcode":
                forms.add(enc.normalise_postcode(value))
            for form in forms:
                if len(form) >= 4 and col != "dob":
                    assert form not in text, col
    for dob in raw_people["dob"]:
        if dob:
            assert dob not in text
    assert settings.key_file.read_text().strip().upper() not in text


def test_refuses_header_without_contract_column(settings):
    agency_stages.keygen(settings)
    write_raw(settings)
    path = settings.agency_dir / "health_people.csv"
    df = pd.read_csv(path, dtype=str, keep_default_na=False).drop(columns=["upn"])
    df.to_csv(path, index=False)
    with pytest.raises(PseudonymiseError, match=r"health_people\.csv.*'upn'"):
        agency_stages.pseudonymise(settings)


def test_source_and_dest_options(settings, tmp_path):
    agency_stages.keygen(settings)
    write_raw(settings, agency="police")
    dest, dest_lu = tmp_path / "hub", tmp_path / "lu"
    figures = agency_stages.pseudonymise(settings, key_file=settings.key_file,
                                         source=settings.agency_dir, dest=dest,
                                         dest_linkage=dest_lu)  # fmt: skip
    assert sorted(p.name for p in dest.iterdir()) == ["police_attributes.csv", "police_events.csv"]
    assert sorted(p.name for p in dest_lu.iterdir()) == ["police_people.csv"]
    assert figures["files"] == 3
    assert not list(dest.glob(".*tmp")) and not list(dest_lu.glob(".*tmp"))


def test_agency_command_and_ward_lookup(tmp_path):
    from pseudonymiser import cli

    key = tmp_path / "scheme.key"
    assert cli.main(["keygen", "--key-file", str(key)]) == 0
    assert cli.main(["keygen", "--key-file", str(key)]) == 2  # never overwrites
    raw = tmp_path / "raw"
    raw.mkdir()
    pd.DataFrame([(*r, "2026-10-01") for r in RAW_PEOPLE],
                 columns=list(contract.RAW_PEOPLE_COLUMNS)).to_csv(raw / "csc_people.csv",
                                                                   index=False)  # fmt: skip
    areas = tmp_path / "areas.csv"
    areas.write_text("postcode_sector,ward_code,ward_name,imd_decile\nJU4 7,W900004,Ward,3\n")
    code = cli.main(["run", "--key-file", str(key), "--source", str(raw), "--to-hub",
                     str(tmp_path / "hub"), "--to-linkage-unit", str(tmp_path / "lu"),
                     "--areas", str(areas)])  # fmt: skip
    assert code == 0
    attrs = pd.read_csv(tmp_path / "hub" / "csc_attributes.csv", dtype=str, keep_default_na=False)
    assert list(attrs["ward_code"]) == ["W900004", "", "", ""]  # JU4 7QB is in ward W900004
    assert (tmp_path / "lu" / "csc_people.csv").exists()
    missing = cli.main(["run", "--key-file", str(tmp_path / "nope.key"), "--source", str(raw),
                        "--to-hub", str(tmp_path / "h2"), "--to-linkage-unit", str(tmp_path / "l2")])  # fmt: skip
    assert missing == 2


def test_the_pseudonymiser_runs_without_the_hubs_code(tmp_path):
    """Agencies install the pseudonymiser alone: importing and running it loads no module of the
    hub, the linkage unit or synth."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    code = (
        "import sys; import pseudonymiser.cli, pseudonymiser.pseudonymise;"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'joinedup', 'linkage', "
        "'warehouse', 'expectations', 'models', 'synth', 'dashboard', 'splink', 'duckdb'});"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONPATH": str(root)})  # fmt: skip
    assert out.stdout.strip() == ""


def test_the_synthetic_demo_key_comes_from_the_seed_and_is_kept_private_on_disk(tmp_path):
    a = keys.derive_synthetic_key(tmp_path / "a.key", 42)
    b = keys.derive_synthetic_key(tmp_path / "b.key", 42)
    c = keys.derive_synthetic_key(tmp_path / "c.key", 43)
    assert keys.load_key(a) == keys.load_key(b) != keys.load_key(c)
    assert len(keys.load_key(a)) == keys.KEY_BYTES
    assert stat.S_IMODE(os.stat(a).st_mode) == 0o600
    with pytest.raises(KeyFileError):
        keys.derive_synthetic_key(a, 42)  # never overwrites
    r1, r2 = keys.generate_key(tmp_path / "r1.key"), keys.generate_key(tmp_path / "r2.key")
    assert keys.load_key(r1) != keys.load_key(r2)  # the agencies' own keys stay random
