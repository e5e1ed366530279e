"""Agency records: which children each agency holds, the messy identifiers on each record
(nicknames, typos, surname changes, dob errors, missing values, old postcodes, strong ids),
within-agency duplicate records, and the assignment of each event to one record.

Owns: `AgencyRules`, `RULES`, `make_people`, `assign_events`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from joinedup import contract
from synth import names as nm
from synth import process as pr


@dataclass(frozen=True)
class AgencyRules:
    """Per-record probabilities of each kind of mess in one agency's people file."""

    prefix: str
    nhs: float  # NHS number present
    upn: float  # UPN present (only children with a UPN, i.e. school age by the extract)
    nickname: float  # first name recorded as its short form (when the name has one)
    typo_first: float
    typo_surname: float
    later_surname: float  # child with a later (step-parent / hyphenated) surname: record uses it
    upper_surname: float  # surname recorded in capitals
    dob_missing: float
    dob_swap: float  # day and month swapped (only possible when day <= 12 and day != month)
    dob_digit: float  # one part of the date off by one (day, month or year)
    postcode_missing: float
    old_postcode: float  # household moved (child born before the move): old postcode kept
    sex_unknown: float
    eth_unknown: float
    eth_other: float  # recorded as a different group (x3 for MIXED)
    nhs_typo: float = 0.005
    upn_typo: float = 0.003
    duplicate: float = 0.02  # children with a second record in the same agency


RULES: dict[str, AgencyRules] = {
    "health": AgencyRules(
        "H", 0.99, 0.0, 0.02, 0.02, 0.02, 0.5, 0.0, 0.002, 0.01, 0.01, 0.01, 0.10, 0.002,
        0.04, 0.02,
    ),
    "police": AgencyRules(
        "P", 0.10, 0.0, 0.20, 0.05, 0.05, 0.5, 0.30, 0.04, 0.015, 0.015, 0.05, 0.35, 0.005,
        0.15, 0.08,
    ),
    "education": AgencyRules(
        "E", 0.20, 1.0, 0.06, 0.02, 0.02, 0.4, 0.0, 0.005, 0.01, 0.01, 0.02, 0.20, 0.001,
        0.03, 0.04,
    ),
    "csc": AgencyRules(
        "C", 0.60, 0.50, 0.10, 0.03, 0.03, 0.6, 0.05, 0.03, 0.01, 0.01, 0.04, 0.20, 0.004,
        0.06, 0.05,
    ),
}  # fmt: skip


def _to_date(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    months = ((y - 1970) * 12 + (m - 1)).astype("datetime64[M]").astype("datetime64[D]")
    return months + (d - 1).astype("timedelta64[D]")


def _fmt_dates(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """ISO strings of (valid) calendar dates given as year, month, day arrays."""
    return np.datetime_as_string(_to_date(y, m, d), unit="D").astype(object)


def _ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    return np.char.add(prefix, np.char.zfill(numbers.astype(str), width)).astype(object)


def _messy_dob(
    rng: np.random.Generator, dob: np.ndarray, r: AgencyRules, k: float, last: np.datetime64
) -> np.ndarray:
    """Recorded dob strings: digit-off, day/month swap, missing; an error that would put the dob
    after `last` (the day before the extract) is not made."""
    true = dob
    n = len(dob)
    digit = rng.random(n) < r.dob_digit * k
    part = rng.integers(0, 3, n)
    step = np.where(rng.random(n) < 0.5, -1, 1)
    dob = np.where(digit & (part == 0), dob + step.astype("timedelta64[D]"), dob)
    y, m, d = pr.ymd(dob)
    mm = digit & (part == 1)
    m = np.where(mm, (m - 1 + step) % 12 + 1, m)
    d = np.where(mm, np.minimum(d, 28), d)
    yy = digit & (part == 2)
    y = np.where(yy, y + step, y)
    d = np.where(yy & (m == 2) & (d == 29), 28, d)
    swap = (rng.random(n) < r.dob_swap * k) & (d <= 12) & (d != m)
    m, d = np.where(swap, d, m), np.where(swap, m, d)
    future = _to_date(y, m, d) > last
    y, m, d = (np.where(future, a, b) for a, b in zip(pr.ymd(true), (y, m, d), strict=True))
    out = _fmt_dates(y, m, d)
    out[rng.random(n) < r.dob_missing * k] = ""
    return out


def _change_digit(rng: np.random.Generator, v: str) -> str:
    i = int(rng.integers(len(v) - 9 if v[0].isalpha() else 0, len(v)))
    return v[:i] + str((int(v[i]) + int(rng.integers(1, 10))) % 10) + v[i + 1 :]


def make_people(
    rng: np.random.Generator, agency: str, kids: pd.DataFrame, child: np.ndarray, extract_date: str
) -> pd.DataFrame:
    """The agency's people rows (raw contract columns) for the given children (indices), with
    duplicates, shuffled; column `child` = child index of each row (for truth and events)."""
    r = RULES[agency]
    dup = child[rng.random(len(child)) < r.duplicate]
    rec_child = np.concatenate([child, dup])
    n = len(rec_child)
    k = np.where(np.arange(n) < len(child), 1.0, 2.0)  # duplicates are messier
    rnd = lambda: rng.random(n)  # noqa: E731
    c = kids.iloc[rec_child]

    first = c.first_name.to_numpy(dtype=object).copy()
    nick = pd.Series(first).map(nm.NICKNAMES).to_numpy(dtype=object)
    use = (rnd() < r.nickname * k) & pd.notna(nick)
    first[use] = nick[use]
    first = nm.apply_typos(first, rnd() < r.typo_first * k, rng)

    surname = c.surname.to_numpy(dtype=object).copy()
    alt = c.alt_surname.to_numpy(dtype=object)
    use = pd.notna(alt) & (rnd() < r.later_surname)
    surname[use] = alt[use]
    surname = nm.apply_typos(surname, rnd() < r.typo_surname * k, rng)
    up = rnd() < r.upper_surname
    surname[up] = pd.Series(surname[up], dtype=object).str.upper().to_numpy(dtype=object)

    dob_true = c.dob.to_numpy().astype("datetime64[D]")
    dob = _messy_dob(rng, dob_true, r, k, np.datetime64(extract_date) - np.timedelta64(1, "D"))

    sex = c.sex.to_numpy(dtype=object).copy()
    sex[rnd() < r.sex_unknown * k] = "U"

    postcode = c.postcode.to_numpy(dtype=object).copy()
    old = c.old_postcode.to_numpy(dtype=object)
    mv = c.move_month.to_numpy()
    born_before = (mv >= 0) & (dob_true < pr.month_start(np.maximum(mv, 0)))
    keep_old = born_before & (rnd() < r.old_postcode * k)
    postcode[keep_old] = old[keep_old]
    postcode[rnd() < r.postcode_missing * k] = ""

    eth_codes = np.array(contract.ETHNICITIES[:5], dtype=object)
    eth = c.ethnicity.to_numpy(dtype=object).copy()
    idx = pd.Series(eth).map({e: i for i, e in enumerate(eth_codes)}).to_numpy()
    other = rnd() < r.eth_other * np.where(eth == "MIXED", 3.0, 1.0) * k
    eth[other] = eth_codes[(idx[other] + rng.integers(1, 5, int(other.sum()))) % 5]
    eth[rnd() < r.eth_unknown * k] = "UNK"

    nhs = c.nhs_number.to_numpy(dtype=object).copy()
    nhs[~(rnd() < r.nhs)] = ""
    for i in np.flatnonzero((nhs != "") & (rnd() < r.nhs_typo * k)):
        nhs[i] = _change_digit(rng, nhs[i])

    upn = c.upn.to_numpy(dtype=object).copy()
    upn[pd.isna(upn) | ~(rnd() < r.upn)] = ""
    for i in np.flatnonzero((upn != "") & (rnd() < r.upn_typo * k)):
        upn[i] = _change_digit(rng, upn[i])

    people = pd.DataFrame(
        {
            "source_id": "",
            "first_name": first,
            "surname": surname,
            "dob": dob,
            "sex": sex,
            "postcode": postcode,
            "ethnicity": eth,
            "nhs_number": nhs,
            "upn": upn,
            "extract_date": extract_date,
            "child": rec_child.astype(np.int32),
            "is_duplicate": k > 1,
        }
    )
    people = people.iloc[rng.permutation(n)].reset_index(drop=True)
    base = int(rng.integers(1, 10)) * 1_000_000
    people["source_id"] = _ids(r.prefix, np.arange(n) + base + 1, 7)
    return people


def assign_events(
    rng: np.random.Generator, agency: str, people: pd.DataFrame, ev: pd.DataFrame
) -> pd.DataFrame:
    """Each event gets the source_id of one of its child's records (duplicates: split at random),
    sorted by date, with event_ids; columns = contract.RAW_EVENT_COLUMNS + child."""
    r = RULES[agency]
    n_child = int(max(people.child.max(), ev.child.max())) + 1 if len(people) else 0
    main = np.full(n_child, -1, dtype=np.int64)
    second = np.full(n_child, -1, dtype=np.int64)
    rows = np.arange(len(people))
    is_dup = people.is_duplicate.to_numpy()
    main[people.child.to_numpy()[~is_dup]] = rows[~is_dup]
    second[people.child.to_numpy()[is_dup]] = rows[is_dup]
    child = ev.child.to_numpy()
    rec = main[child]
    to_second = (second[child] >= 0) & (rng.random(len(child)) < 0.5)
    rec = np.where(to_second, second[child], rec)
    if (rec < 0).any():
        raise AssertionError(f"{agency}: events for children without a record")
    value = ev.value.to_numpy()
    val_str = np.full(len(value), "", dtype=object)
    has = ~np.isnan(value)
    val_str[has] = np.round(value[has], 1).astype(str)
    out = pd.DataFrame(
        {
            "event_id": "",
            "source_id": people.source_id.to_numpy()[rec],
            "event_date": ev.event_date.to_numpy(),
            "event_type": ev.event_type.to_numpy(dtype=object),
            "value": val_str,
            "child": child,
        }
    )
    out = out.sort_values(["event_date", "source_id"], kind="stable").reset_index(drop=True)
    out["event_date"] = np.datetime_as_string(out.event_date.to_numpy(), unit="D").astype(object)
    out["event_id"] = _ids(r.prefix + "E", np.arange(len(out)) + 1, 8)
    return out
