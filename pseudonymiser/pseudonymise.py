"""Agency-side pseudonymiser: raw plaintext extracts -> contract v2 files for two recipients.

Separation of functions: for each agency's raw `<agency>_people.csv` it writes
- `<agency>_people.csv` (identifier encodings only, `contract.PEOPLE_COLUMNS`) to the **linkage
  unit** (`dest_linkage`), and
- `<agency>_attributes.csv` (coarse clear attributes: sex, birth year, ethnicity, ward;
  `contract.ATTRIBUTE_COLUMNS`) to the **analytics hub** (`dest`);
and for `<agency>_events.csv` the events dated to the month (`contract.EVENT_COLUMNS`) to the hub.
Each output has one row per input row, in the same order.  The ward comes from the public
postcode-sector lookup (`areas`, the reference `areas.csv`); a postcode not in it gives an empty
ward.  Clear values that cannot be coarsened pass through unchanged (the receiving unit never
stores a value without its column's shape, and quarantines the row).  Never prints or logs
identifiers, tokens or the key; figures are counts and timings only.  Encodings are v2
(`pseudonymiser.encoding.Encoder`, docs/data-contract.md §4).
"""

from __future__ import annotations

import csv
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from pseudonymiser import contract
from pseudonymiser import encoding as enc
from pseudonymiser.errors import PseudonymiseError
from pseudonymiser.keys import load_key


def _read_raw(path: Path, kind: str) -> pd.DataFrame:
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError) as exc:
        raise PseudonymiseError(f"{path.name}: cannot read file ({type(exc).__name__})") from None
    header = [h.strip() for h in header]
    for col in contract.columns_for(kind, raw=True):
        if col not in header:
            raise PseudonymiseError(f"{path.name}: header lacks contract column {col!r}")
    try:
        df = pd.read_csv(
            path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig"
        )
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise PseudonymiseError(f"{path.name}: not a readable CSV ({type(exc).__name__})") from None
    df.columns = [c.strip() for c in df.columns]
    return df


def encode_people(df: pd.DataFrame, agency: str, encoder: enc.Encoder) -> pd.DataFrame:
    """Raw people rows (RAW_PEOPLE_COLUMNS) -> contract rows (PEOPLE_COLUMNS), same order."""
    m = enc.map_distinct
    first = m(df["first_name"], enc.normalise_name)
    surname = m(df["surname"], enc.normalise_name)
    dob = m(df["dob"], enc.normalise_dob)
    postcode = m(df["postcode"], enc.normalise_postcode)
    out = pd.DataFrame(index=df.index)
    out["agency"] = agency
    out["record_token"] = encoder.tokens("record", agency + ":" + df["source_id"].str.strip())
    salt = m(dob, enc.name_salt)
    out["first_name_bf"] = encoder.blooms("first_name_bf", first, salt)
    out["surname_bf"] = encoder.blooms("surname_bf", surname, salt)
    nhs_salt = m(df["nhs_number"], enc.nhs_salt)
    out["first_name_nhs_bf"] = encoder.blooms("first_name_bf", first, nhs_salt)
    out["surname_nhs_bf"] = encoder.blooms("surname_bf", surname, nhs_salt)
    out["dob_token"] = encoder.tokens("dob", dob)
    out["dob_swap_token"] = encoder.tokens("dob", m(dob, enc.swap_dob))
    out["birth_year_month"] = m(dob, enc.birth_year_month)
    out["sex"] = df["sex"]
    out["postcode_token"] = encoder.tokens("postcode", postcode)
    out["postcode_sector"] = m(postcode, enc.postcode_sector)
    out["nhs_token"] = encoder.tokens("nhs", m(df["nhs_number"], enc.normalise_nhs))
    out["upn_token"] = encoder.tokens("upn", m(df["upn"], enc.normalise_upn))
    out["extract_date"] = df["extract_date"]
    return out[list(contract.PEOPLE_COLUMNS)]


def read_wards(path: Path | None) -> dict[str, str]:
    """Postcode sector -> ward code from the public lookup CSV (`postcode_sector`, `ward_code`);
    empty when no lookup is given."""
    if path is None or not Path(path).is_file():
        return {}
    areas = pd.read_csv(path, dtype=str, keep_default_na=False)
    return dict(zip(areas["postcode_sector"], areas["ward_code"], strict=True))


def encode_attributes(
    df: pd.DataFrame, agency: str, encoder: enc.Encoder, wards: dict[str, str]
) -> pd.DataFrame:
    """Raw people rows -> the hub's attribute rows (ATTRIBUTE_COLUMNS), same order: the record
    token, sex, birth year, ethnicity and ward; nothing finer."""
    m = enc.map_distinct
    dob = m(df["dob"], enc.normalise_dob)
    sector = m(m(df["postcode"], enc.normalise_postcode), enc.postcode_sector)
    out = pd.DataFrame(index=df.index)
    out["agency"] = agency
    out["record_token"] = encoder.tokens("record", agency + ":" + df["source_id"].str.strip())
    out["sex"] = df["sex"]
    out["birth_year"] = m(dob, enc.birth_year_month).str.slice(0, 4)
    out["ethnicity"] = df["ethnicity"]
    out["ward_code"] = sector.map(wards).fillna("")
    out["extract_date"] = df["extract_date"]
    return out[list(contract.ATTRIBUTE_COLUMNS)]


def event_month(value: str) -> str:
    """`YYYY-MM` of a `YYYY-MM-DD` event date; anything else unchanged (the hub refuses it)."""
    text = (value or "").strip()
    if len(text) == 10 and text[4] == "-" and text[7] == "-" and text[:4].isdigit():
        return text[:7]
    return value


def encode_events(df: pd.DataFrame, agency: str, encoder: enc.Encoder) -> pd.DataFrame:
    """Raw event rows (RAW_EVENT_COLUMNS) -> contract rows (EVENT_COLUMNS), same order."""
    out = pd.DataFrame(index=df.index)
    out["agency"] = agency
    out["event_token"] = encoder.tokens("event", agency + ":" + df["event_id"].str.strip())
    out["record_token"] = encoder.tokens("record", agency + ":" + df["source_id"].str.strip())
    out["event_month"] = enc.map_distinct(df["event_date"], event_month)
    for col in ("event_type", "value", "extract_date"):
        out[col] = df[col]
    return out[list(contract.EVENT_COLUMNS)]


def _write_atomic(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            df.to_csv(f, index=False, lineterminator="\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def pseudonymise_files(
    key_file: str | Path,
    source: str | Path,
    dest: str | Path,
    dest_linkage: str | Path,
    areas: str | Path | None = None,
) -> dict:
    """Every raw file in `source` -> the hub's files in `dest` and the linkage unit's in
    `dest_linkage` (the folders the agency sends to each recipient). `areas`: the public
    postcode-sector -> ward lookup CSV. Figures only, no values."""
    started = time.perf_counter()
    key = load_key(key_file)
    source, dest, dest_linkage = Path(source), Path(dest), Path(dest_linkage)
    if not source.is_dir():
        raise PseudonymiseError(f"source folder {source} not found")
    wards = read_wards(Path(areas) if areas else None)
    encoder = enc.Encoder(key)
    files: dict[str, dict] = {}
    for agency in contract.AGENCIES:
        for kind in contract.RAW_KINDS:
            name = contract.file_name(agency, kind)
            path = source / name
            if not path.is_file():
                continue
            t0 = time.perf_counter()
            raw = _read_raw(path, kind)
            if kind == "people":
                outputs = [
                    (dest_linkage / name, encode_people(raw, agency, encoder)),
                    (
                        dest / contract.file_name(agency, "attributes"),
                        encode_attributes(raw, agency, encoder, wards),
                    ),
                ]
            else:
                outputs = [(dest / name, encode_events(raw, agency, encoder))]
            for target, out in outputs:
                if len(out) != len(raw):  # defensive: truth relies on row n in = row n out
                    raise PseudonymiseError(f"{name}: row count changed during encoding")
                _write_atomic(out, target)
                unit = "linkage" if target.parent == dest_linkage else "hub"
                files[f"{unit}/{target.name}"] = {
                    "rows": len(out),
                    "seconds": round(time.perf_counter() - t0, 3),
                }
    if not files:
        raise PseudonymiseError(f"no raw extracts (<agency>_<people|events>.csv) in {source}")
    return {
        "files": len(files),
        "rows": sum(f["rows"] for f in files.values()),
        "per_file": files,
        "dest": str(dest),
        "dest_linkage": str(dest_linkage),
        "wards_known": bool(wards),
        "seconds": round(time.perf_counter() - started, 3),
    }
