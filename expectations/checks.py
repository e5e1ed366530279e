"""Derived check columns and suite loading: everything the suites need that is not a plain column.

Great Expectations checks columns; some rules need a value computed from several columns or from
the store (is `event_month` a real month, is it after the extract date, is this the first
time this `event_token` appears in the file, does `record_token` belong to the agency's latest
attributes file, was a value of the row not stored because it lacked its column's shape).  `derive()` adds one column per such rule, computed vectorised in pandas before
validation.  Each derived column is True (rule holds), False (rule broken) or None/NaN (rule does
not apply to this row, e.g. the source value is empty or already fails its format rule), so a row
is flagged by exactly one expectation for one fault.  The suites (`suites/*.json`) list the
derived columns they expect in `meta.derived_columns`.

Owns: the derived column definitions, suite loading, the list of columns whose values are never
shown in reasons or reports (`SENSITIVE_COLUMNS`).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from joinedup import contract

SUITES_DIR = Path(__file__).resolve().parent / "suites"

#: columns holding keyed tokens or Bloom filters: their values never appear in reasons or reports
SENSITIVE_COLUMNS: frozenset[str] = frozenset(
    contract.TOKEN_COLUMNS + contract.BLOOM_COLUMNS + ("event_token",)
)

EARLIEST_EVENT_MONTH = "2000-01"
#: a child is aged 0 to MAX_AGE_YEARS (inclusive) at the extract date
MAX_AGE_YEARS = 25

DERIVED_COLUMNS: dict[str, tuple[str, ...]] = {
    "people": (
        "record_token_first_occurrence",
        "birth_year_month_plausible",
        "extract_date_is_real_date",
        "extract_date_matches_file",
        "sex_is_female",
        "sex_is_unknown",
        "values_stored",
        "batch_volume_ratio",
        "extract_not_before_previous",
    ),
    "attributes": (
        "record_token_first_occurrence",
        "birth_year_plausible",
        "extract_date_is_real_date",
        "extract_date_matches_file",
        "sex_is_female",
        "sex_is_unknown",
        "values_stored",
        "batch_volume_ratio",
        "extract_not_before_previous",
    ),
    "events": (
        "event_token_first_occurrence",
        "event_month_is_real_month",
        "event_month_not_after_extract",
        "event_month_not_before_2000",
        "value_is_number",
        "value_present_if_required",
        "value_empty_if_not_required",
        "attendance_value",
        "value_in_codes",
        "record_token_in_attributes",
        "extract_date_is_real_date",
        "extract_date_matches_file",
        "values_stored",
        "batch_volume_ratio",
        "extract_not_before_previous",
    ),
}
#: a batch with under MIN or over MAX times the rows of the agency's previous batch of the same
#: kind raises a warning (a halved full extract usually means a failed export; loads are upserts
#: by token, so a short file loses nothing already held); the suites use these bounds
VOLUME_RATIO_MIN, VOLUME_RATIO_MAX = 0.5, 2.0

_DATE_RE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_YEAR_MONTH_RE = r"[0-9]{4}-(?:0[1-9]|1[0-2])"
_NUMBER_RE = r"-?[0-9]+(?:\.[0-9]+)?"
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


@cache
def load_suite(agency: str, kind: str) -> dict:
    """The committed suite for an agency's extract kind, as its JSON dict (name, expectations,
    meta with version)."""
    return load_named_suite(f"{agency}_{kind}")


@cache
def load_named_suite(name: str) -> dict:
    """A committed suite by name (`suites/<name>.json`), checked to carry its name and version."""
    path = SUITES_DIR / f"{name}.json"
    suite = json.loads(path.read_text(encoding="utf-8"))
    if suite.get("name") != name or "version" not in suite.get("meta", {}):
        raise ValueError(f"{path}: suite must be named {name!r} and carry meta.version")
    return suite


def _tristate(mask: pd.Series, applies: pd.Series) -> pd.Series:
    """Object column: True/False where the rule applies, None elsewhere."""
    out = pd.Series(
        np.where(mask.to_numpy(dtype=bool), True, False), index=mask.index, dtype=object
    )
    out[~applies.to_numpy(dtype=bool)] = None
    return out


def real_date(values: pd.Series) -> pd.Series:
    """True for a real calendar date in YYYY-MM-DD, False for a well-formed impossible one
    (2021-02-30), None when empty or not YYYY-MM-DD (the format rule reports those)."""
    text = values.astype("string")
    well_formed = text.str.fullmatch(_DATE_RE).fillna(False).astype(bool)
    year = pd.to_numeric(text.str.slice(0, 4).where(well_formed), errors="coerce").fillna(0)
    month = pd.to_numeric(text.str.slice(5, 7).where(well_formed), errors="coerce").fillna(0)
    day = pd.to_numeric(text.str.slice(8, 10).where(well_formed), errors="coerce").fillna(0)
    y, m, d = year.to_numpy(int), month.to_numpy(int), day.to_numpy(int)
    leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
    days = _DAYS_IN_MONTH[np.clip(m, 0, 12)] + ((m == 2) & leap)
    ok = (y >= 1) & (m >= 1) & (m <= 12) & (d >= 1) & (d <= days)
    return _tristate(pd.Series(ok, index=values.index), well_formed)


def _first_occurrence(values: pd.Series) -> pd.Series:
    present = values.notna()
    first = ~values.duplicated(keep="first")
    return _tristate(first, present)


def _reference_extract(frame: pd.DataFrame, real: pd.Series, file_extract: str | None) -> pd.Series:
    """The extract date each row is judged against: its own if real, else the file's."""
    own = frame["extract_date"].where(real.eq(True).to_numpy(dtype=bool))
    if file_extract:
        own = own.fillna(file_extract)
    return own


def derive(
    frame: pd.DataFrame,
    agency: str,
    kind: str,
    file_extract_date: str | None,
    people_tokens: set[str] | pd.Index | None = None,
    previous: dict | None = None,
    scrubbed_rows: set[int] | None = None,
) -> pd.DataFrame:
    """The derived check columns for a batch (same index as `frame`).

    `frame` holds the contract columns as text (missing ones may be absent: their rules then give
    None).  `file_extract_date` is the load's extract date (YYYY-MM-DD) or None; `people_tokens`
    the record tokens an events batch may refer to (those of the agency's attributes file);
    `scrubbed_rows` the rows with a value that was not stored (`quarantine.scrubbed`); `previous` the agency's previous accepted
    batch of the same kind (`rows`, `extract_date` as YYYY-MM-DD or None), or None for a first
    batch (the volume and freshness rules then do not apply).
    """
    cols = contract.columns_for(kind)
    f = frame.reindex(columns=list(cols))
    out = pd.DataFrame(index=frame.index)

    extract_real = real_date(f["extract_date"])
    out["extract_date_is_real_date"] = extract_real
    applies = extract_real.eq(True) & pd.Series(bool(file_extract_date), index=f.index)
    out["extract_date_matches_file"] = _tristate(f["extract_date"].eq(file_extract_date), applies)
    reference = _reference_extract(f, extract_real, file_extract_date)

    if kind in ("people", "attributes"):
        out["record_token_first_occurrence"] = _first_occurrence(f["record_token"])
        ref = reference.astype("string")
        at = pd.to_numeric(ref.str.slice(0, 4), errors="coerce") * 12 + pd.to_numeric(
            ref.str.slice(5, 7), errors="coerce"
        )
        has_ref = reference.notna()
        if kind == "people":
            bym = f["birth_year_month"].astype("string")
            well_formed = bym.str.fullmatch(_YEAR_MONTH_RE).fillna(False).astype(bool)
            born = pd.to_numeric(bym.str.slice(0, 4), errors="coerce") * 12 + pd.to_numeric(
                bym.str.slice(5, 7), errors="coerce"
            )
            age_months = (at - born).fillna(-1)
            ok = (age_months >= 0) & (age_months < (MAX_AGE_YEARS + 1) * 12)
            out["birth_year_month_plausible"] = _tristate(ok, well_formed & has_ref)
        else:
            year = f["birth_year"].astype("string")
            well_formed = year.str.fullmatch(r"[0-9]{4}").fillna(False).astype(bool)
            age_years = (ref.str.slice(0, 4).astype("Float64") - year.astype("Float64")).fillna(-1)
            ok = (age_years >= 0) & (age_years <= MAX_AGE_YEARS + 1)
            out["birth_year_plausible"] = _tristate(ok, well_formed & has_ref)
        sex = f["sex"]
        out["sex_is_female"] = np.where(sex.eq("F"), 1.0, np.where(sex.eq("M"), 0.0, np.nan))
        out["sex_is_unknown"] = np.where(
            sex.eq("U"), 1.0, np.where(sex.isin(["M", "F"]), 0.0, np.nan)
        )
    elif kind == "events":
        out["event_token_first_occurrence"] = _first_occurrence(f["event_token"])
        months = f["event_month"].astype("string")
        well_formed = months.str.fullmatch(_YEAR_MONTH_RE).fillna(False).astype(bool)
        month_shape = months.str.fullmatch(r"[0-9]{4}-[0-9]{2}").fillna(False).astype(bool)
        out["event_month_is_real_month"] = _tristate(well_formed, month_shape)
        is_real = well_formed
        after_ok = months.le(reference.astype("string").str.slice(0, 7)).fillna(False)
        out["event_month_not_after_extract"] = _tristate(
            after_ok.astype(bool), is_real & reference.notna()
        )
        before_ok = months.ge(EARLIEST_EVENT_MONTH).fillna(False).astype(bool)
        out["event_month_not_before_2000"] = _tristate(before_ok, is_real)
        value = f["value"]
        present = value.notna()
        numeric = value.astype("string").str.fullmatch(_NUMBER_RE).fillna(False).astype(bool)
        out["value_is_number"] = _tristate(numeric, present)
        etype = f["event_type"]
        valued = etype.isin(contract.VALUED_EVENT_TYPES)
        out["value_present_if_required"] = _tristate(present, valued)
        out["value_empty_if_not_required"] = _tristate(~present, etype.notna() & ~valued)
        attendance = etype.eq("attendance") & numeric
        number = pd.to_numeric(value.where(numeric), errors="coerce")
        out["attendance_value"] = number.where(attendance).astype(float)
        # coded values (contract.CODED_EVENT_VALUES, e.g. placement_start's placement kind)
        in_codes = pd.Series(False, index=f.index)
        coded = pd.Series(False, index=f.index)
        for etype_coded, codes in contract.CODED_EVENT_VALUES.items():
            rows = etype.eq(etype_coded).fillna(False).astype(bool) & numeric
            coded |= rows
            in_codes |= rows & number.isin([float(c) for c in codes])
        out["value_in_codes"] = _tristate(in_codes, coded)
        tokens = pd.Index(list(people_tokens) if people_tokens is not None else [])
        record = f["record_token"]
        out["record_token_in_attributes"] = _tristate(record.isin(tokens), record.notna())
    else:
        raise ValueError(f"unknown file kind {kind!r}")
    stored = ~pd.Series(frame.index.isin(list(scrubbed_rows or ())), index=f.index)
    out["values_stored"] = _tristate(stored, pd.Series(True, index=f.index))
    # batch-level rules, the same value on every row (GX checks them like any column)
    prev_rows = (previous or {}).get("rows")
    ratio = len(frame) / prev_rows if prev_rows else np.nan
    out["batch_volume_ratio"] = pd.Series(ratio, index=f.index, dtype=float)
    prev_extract = (previous or {}).get("extract_date")
    fresh_applies = bool(prev_extract) and bool(file_extract_date)
    not_older = bool(fresh_applies and str(file_extract_date) >= str(prev_extract))
    out["extract_not_before_previous"] = _tristate(
        pd.Series(not_older, index=f.index), pd.Series(fresh_applies, index=f.index)
    )
    return out[list(DERIVED_COLUMNS[kind])]
