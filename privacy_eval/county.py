"""The attacked data: a synthetic county's people records, encoded with contract v1 and v2.

Owns `make_county` (synth -> raw people records of every agency, in a temp dir), `encode_v1`
(the retired v1 people columns, from `pseudonymiser.encoding.EncoderV1`), `encode_v2` (the agency-side
`pseudonymiser.pseudonymise.encode_people`) and `attack_key` (a deterministic throwaway scheme key per
seed, so figures are reproducible).  Evaluation only.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from joinedup import contract
from joinedup.config import Settings
from pseudonymiser import encoding as enc
from pseudonymiser import pseudonymise

#: v1 (retired) people columns, as the attack on v1 sees them
V1_COLUMNS: tuple[str, ...] = (
    "agency", "record_token", "first_name_token", "surname_token", "first_name_bf",
    "surname_bf", "first_name_soundex_token", "surname_soundex_token", "dob_token",
    "dob_swap_token", "birth_year_month", "sex", "postcode_token", "postcode_sector",
    "nhs_token", "upn_token", "extract_date",
)  # fmt: skip


@dataclass(frozen=True)
class County:
    """Raw people rows of every agency (with `agency`) and their normalised true names."""

    raw: pd.DataFrame
    first: pd.Series
    surname: pd.Series


def attack_key(seed: int) -> bytes:
    """A throwaway scheme key that depends only on the seed (the attacker never holds it)."""
    return hashlib.sha256(f"joinedup-attack-bench-{seed}".encode()).digest()


def make_county(children: int, seed: int) -> County:
    """Synthesise a county (`synth.generate.run`) in a temp dir and read its raw people files."""
    from synth import generate

    with tempfile.TemporaryDirectory(prefix="attack-county-") as tmp:
        settings = Settings.from_env(Path(tmp) / "home")
        generate.run(settings, children=children, seed=seed, entry_error_rate=0)
        frames = []
        for agency in contract.AGENCIES:
            path = settings.agency_dir / contract.file_name(agency, "people")
            raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
            frames.append(raw.assign(agency=agency))
    raw = pd.concat(frames, ignore_index=True)
    first = enc.map_distinct(raw["first_name"], enc.normalise_name)
    surname = enc.map_distinct(raw["surname"], enc.normalise_name)
    return County(raw=raw, first=first, surname=surname)


def encode_v1(county: County, key: bytes) -> pd.DataFrame:
    """The people file as contract v1 wrote it (one key, double hashing, name/Soundex tokens)."""
    e = enc.EncoderV1(key)
    m = enc.map_distinct
    df = county.raw
    dob = m(df["dob"], enc.normalise_dob)
    out = pd.DataFrame(index=df.index)
    out["agency"] = df["agency"]
    out["record_token"] = e.tokens("record", df["agency"] + ":" + df["source_id"].str.strip())
    out["first_name_token"] = e.tokens("first_name", county.first)
    out["surname_token"] = e.tokens("surname", county.surname)
    out["first_name_bf"] = e.blooms(county.first)
    out["surname_bf"] = e.blooms(county.surname)
    out["first_name_soundex_token"] = e.tokens("first_name_soundex", m(county.first, enc.soundex))
    out["surname_soundex_token"] = e.tokens("surname_soundex", m(county.surname, enc.soundex))
    out["dob_token"] = e.tokens("dob", dob)
    out["dob_swap_token"] = e.tokens("dob", m(dob, enc.swap_dob))
    out["birth_year_month"] = m(dob, enc.birth_year_month)
    out["sex"] = df["sex"]
    postcode = m(df["postcode"], enc.normalise_postcode)
    out["postcode_token"] = e.tokens("postcode", postcode)
    out["postcode_sector"] = m(postcode, enc.postcode_sector)
    out["nhs_token"] = e.tokens("nhs", m(df["nhs_number"], enc.normalise_nhs))
    out["upn_token"] = e.tokens("upn", m(df["upn"], enc.normalise_upn))
    out["extract_date"] = df["extract_date"]
    return out[list(V1_COLUMNS)].reset_index(drop=True)


def encode_v2(county: County, key: bytes) -> pd.DataFrame:
    """The people file as contract v2 writes it (the agencies' own pseudonymiser, per agency)."""
    e = enc.Encoder(key)
    frames = [
        pseudonymise.encode_people(rows.drop(columns="agency"), agency, e)
        for agency, rows in county.raw.groupby("agency", sort=False)
    ]
    return pd.concat(frames).sort_index().reset_index(drop=True)
