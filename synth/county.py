"""The county: wards and postcode sectors (the public reference), households, children and their
clear identifiers (names, dob, sex, ethnicity, postcodes, house moves, NHS number, UPN).

Owns: `Areas`, `make_areas`, `County`, `make_county`, `nhs_numbers`, `upns`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from joinedup import contract
from synth import names as nm
from synth import process as pr

POSTCODE_AREA = "JU"  # not a real UK postcode area
_UNIT_LETTERS = np.array(list("ABDEFGHJLNPQRSTUWXYZ"))  # letters used in real inward codes


def dob_range(extract_date: str) -> tuple[np.datetime64, np.datetime64]:
    """Births that make a child aged 0-17 on the extract date: (extract - 18y + 1d, extract - 1d)."""
    x = np.datetime64(extract_date, "D")
    y, m, d = pr.ymd(x)
    lo = np.datetime64(f"{int(y) - 18:04d}-{int(m):02d}-{int(d):02d}") + np.timedelta64(1, "D")
    return lo, x - np.timedelta64(1, "D")


#: ethnic mix of children in England (2021 census, rounded), order = contract.ETHNICITIES[:5]
ETHNIC_BASE = np.array([0.73, 0.065, 0.115, 0.06, 0.03])
#: household sizes (children) 1..4
HOUSEHOLD_SIZE_P = np.array([0.42, 0.38, 0.14, 0.06])
TWIN_P = 0.027  # chance the 2nd child of a 2+ child household is a twin of the 1st
MOVE_P = 0.20  # households moving once in the window
HALF_SIBLING_P = 0.10  # a sibling with a different surname


@dataclass
class Areas:
    wards: pd.DataFrame  # ward_code, ward_name, imd_decile, d, diverse
    sectors: pd.DataFrame  # postcode_sector, ward_code, imd_decile, ward_name

    def reference(self) -> pd.DataFrame:
        return self.sectors[["postcode_sector", "ward_code", "ward_name", "imd_decile"]]


def make_areas(rng: np.random.Generator, children: int, names: nm.NameLists) -> Areas:
    n_wards = max(8, round(children / 1000))
    deciles = (np.arange(n_wards) * 10 // n_wards) + 1  # spread evenly over 1..10
    rng.shuffle(deciles)
    wards = pd.DataFrame(
        {
            "ward_code": [f"W{900000 + i:06d}" for i in range(1, n_wards + 1)],
            "ward_name": nm.ward_names(n_wards, rng, names),
            "imd_decile": deciles.astype(np.int8),
        }
    )
    wards["d"] = pr.deprivation(wards.imd_decile.to_numpy())
    per_ward = rng.integers(3, 7, n_wards)
    n_sectors = int(per_ward.sum())
    n_districts = -(-n_sectors // 10) + 1
    # districts JU1.., each with sectors 0..9 in a random order; wards take contiguous runs
    codes = [
        f"{POSTCODE_AREA}{dist} {sec}"
        for dist in range(1, n_districts + 1)
        for sec in rng.permutation(10)
    ][:n_sectors]
    ward_idx = np.repeat(np.arange(n_wards), per_ward)
    sectors = pd.DataFrame(
        {
            "postcode_sector": codes,
            "ward_code": wards.ward_code.to_numpy()[ward_idx],
            "ward_name": wards.ward_name.to_numpy()[ward_idx],
            "imd_decile": wards.imd_decile.to_numpy()[ward_idx],
            "ward": ward_idx,
        }
    )
    return Areas(wards, sectors)


def random_postcodes(rng: np.random.Generator, areas: Areas, ward: np.ndarray) -> np.ndarray:
    """A full postcode ("JU4 7QB") in a random sector of each given ward."""
    sec = areas.sectors
    counts = np.bincount(sec.ward.to_numpy(), minlength=len(areas.wards))
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pick = first[ward] + (rng.random(len(ward)) * counts[ward]).astype(int)
    l1 = rng.choice(_UNIT_LETTERS, len(ward))
    l2 = rng.choice(_UNIT_LETTERS, len(ward))
    sector = sec.postcode_sector.to_numpy()[pick].astype(str)
    return np.char.add(np.char.add(sector, l1), l2).astype(object)


def nhs_numbers(rng: np.random.Generator, n: int) -> np.ndarray:
    """n distinct 10-digit NHS numbers with a valid modulus-11 check digit."""
    out = np.empty(0, dtype=np.int64)
    while len(out) < n:
        base = rng.integers(400_000_000, 700_000_000, 2 * (n - len(out)) + 16)
        digits = (base[:, None] // 10 ** np.arange(8, -1, -1)) % 10
        rem = (digits * np.arange(10, 1, -1)).sum(axis=1) % 11
        check = (11 - rem) % 11
        ok = check != 10
        cand = base[ok] * 10 + check[ok]
        out = np.unique(np.concatenate([out, cand]))
    return rng.permutation(out)[:n].astype(str).astype(object)


def nhs_valid(nhs: np.ndarray) -> np.ndarray:
    """Vectorised modulus-11 check of 10-digit strings."""
    s = pd.Series(nhs, dtype=object).fillna("")
    ok = s.str.fullmatch(r"\d{10}").to_numpy()
    out = np.zeros(len(s), dtype=bool)
    if ok.any():
        v = s[ok].astype(np.int64).to_numpy()
        digits = (v[:, None] // 10 ** np.arange(9, -1, -1)) % 10
        rem = (digits[:, :9] * np.arange(10, 1, -1)).sum(axis=1) % 11
        check = (11 - rem) % 11
        out[ok] = (check != 10) & (check == digits[:, 9])
    return out


_UPN_CHECK = np.array(list("ABCDEFGHJKLMNPQRTUVWXYZ"))


def upns(rng: np.random.Generator, n: int, la_code: int = 990) -> np.ndarray:
    """n distinct unique pupil numbers: check letter + LA code + 9 digits (DfE check-letter rule:
    sum of digit * position weight 2..13, modulo 23, indexes ABCDEFGHJKLMNPQRTUVWXYZ)."""
    nums = np.empty(0, dtype=np.int64)
    while len(nums) < n:
        nums = np.unique(np.concatenate([nums, rng.integers(0, 10**9, 2 * n + 16)]))
    nums = rng.permutation(nums)[:n]
    full = la_code * 10**9 + nums
    digits = (full[:, None] // 10 ** np.arange(11, -1, -1)) % 10
    check = _UPN_CHECK[(digits * np.arange(2, 14)).sum(axis=1) % 23]
    body = pd.Series(full).astype(str).str.zfill(12).to_numpy()
    return np.char.add(check.astype(str), body.astype(str)).astype(object)


def household_births(
    rng: np.random.Generator, children: int, dob_min: np.datetime64, dob_max: np.datetime64
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Families of 1-4 children with 400-1800 days between births (twins: 0), one random member
    placed uniformly in [dob_min - 5y, dob_max + 5y] and the rest around it; children born outside
    [dob_min, dob_max] (adult or not yet born at the extract) are not in the county.  Families are
    taken in order until there are `children` children (the last one cut short).

    Returns (sizes per household, birth order, twin flag = second of a twin pair, dob)."""
    total = int((dob_max - dob_min).astype(int))
    # ~64% of births fall inside the dob range: generate twice the families needed
    n0 = int(2.0 * children / float(HOUSEHOLD_SIZE_P @ np.arange(1, 5))) + 10
    sizes = rng.choice(np.arange(1, 5), size=n0, p=HOUSEHOLD_SIZE_P)
    m = int(sizes.sum())
    hh = np.repeat(np.arange(n0), sizes)
    first = np.cumsum(sizes) - sizes
    order = np.arange(m) - first[hh]
    gap = rng.integers(400, 1800, m)
    twin = (order == 1) & (rng.random(m) < TWIN_P)
    gap[(order == 0) | twin] = 0
    cg = np.cumsum(gap)
    offset = cg - cg[first][hh]
    anchor = first + (rng.random(n0) * sizes).astype(np.int64)
    margin = 5 * 365
    start = (rng.random(n0) * (total + 2 * margin)).astype(np.int64) - margin - offset[anchor]
    day = start[hh] + offset
    keep = (day >= 0) & (day <= total)
    keep &= np.cumsum(keep) <= children
    twin &= keep & np.concatenate([[False], keep[:-1]])  # both twins kept
    hh, day, twin = hh[keep], day[keep], twin[keep]
    _, hh = np.unique(hh, return_inverse=True)
    sizes = np.bincount(hh)
    order = np.arange(len(hh)) - (np.cumsum(sizes) - sizes)[hh]
    twin &= order > 0
    dob = dob_min + day.astype("timedelta64[D]")
    if len(hh) < children:  # pragma: no cover - 2x over-generation makes this ~impossible
        raise RuntimeError("too few children generated")
    return sizes, order, twin, dob


@dataclass
class County:
    areas: Areas
    households: pd.DataFrame  # household_id, ward, d, size, postcode, old_postcode, move_month, fsm
    children: pd.DataFrame  # one row per child, see make_county
    states: np.ndarray  # (households, months + 1) int8; column 0 = 2018-12
    P: np.ndarray  # (households, 3, 3)
    months: int


def make_county(
    rng: np.random.Generator, children: int, extract_date: str, names: nm.NameLists
) -> County:
    areas = make_areas(rng, children, names)
    months = pr.n_months(extract_date)
    n_wards = len(areas.wards)

    # ---- households: sizes until `children` children
    sizes, order, twin_slot, dob = household_births(rng, children, *dob_range(extract_date))
    n_hh = len(sizes)
    hh = np.repeat(np.arange(n_hh), sizes)
    ward_hh = rng.integers(0, n_wards, n_hh)
    d_hh = areas.wards.d.to_numpy()[ward_hh]
    hh_id = np.array([f"HH{i:07d}" for i in range(1, n_hh + 1)], dtype=object)
    postcode = random_postcodes(rng, areas, ward_hh)
    moves = rng.random(n_hh) < MOVE_P
    move_month = np.where(moves, rng.integers(1, months, n_hh), -1)
    new_pc = random_postcodes(rng, areas, ward_hh)
    old_postcode = np.where(moves, postcode, None)
    postcode = np.where(moves, new_pc, postcode)  # postcode = current (at extract)
    fsm = rng.random(n_hh) < 1 / (1 + np.exp(-(-1.4 + 1.8 * d_hh)))
    # ethnicity of the household: ward mix = base tilted towards diversity in deprived wards
    tilt = np.exp(np.outer(d_hh * 0.6 + rng.normal(0, 0.3, n_hh), [-0.5, 0.5, 0.5, 0.5, 0.5]))
    mix = ETHNIC_BASE * tilt
    mix /= mix.sum(axis=1, keepdims=True)
    eth_hh = (rng.random(n_hh)[:, None] > np.cumsum(mix, axis=1)[:, :4]).sum(axis=1)
    surname_hh = names.surname(rng, n_hh)
    h_trait = rng.normal(0, 1, n_hh)

    households = pd.DataFrame(
        {
            "household_id": hh_id,
            "ward": ward_hh,
            "d": d_hh,
            "size": sizes,
            "postcode": postcode,
            "old_postcode": old_postcode,
            "move_month": move_month,
            "fsm": fsm,
        }
    )

    sex = np.where(rng.random(children) < 0.512, "M", "F").astype(object)
    first = names.first(rng, sex)
    # siblings (and above all twins) get different first names: redraw clashes a few times
    for _ in range(5):
        key = pd.DataFrame({"h": hh, "f": first})
        clash = key.duplicated(["h", "f"]).to_numpy()
        if not clash.any():
            break
        first[clash] = names.first(rng, sex[clash])
    surname = surname_hh[hh].copy()
    half = (order > 0) & ~twin_slot & (rng.random(children) < HALF_SIBLING_P)
    surname[half] = names.surname(rng, int(half.sum()))
    # twins share their twin's surname (the twin is the record just before)
    ti = np.flatnonzero(twin_slot)
    surname[ti] = surname[ti - 1]
    # a later name: step-parent surname or hyphenated, used by some agencies
    alt = rng.random(children) < 0.025
    alt_kind = rng.random(children) < 0.5
    other = names.surname(rng, children)
    alt_surname = np.where(alt, np.where(alt_kind, other, surname + "-" + other), None)

    eth = eth_hh[hh].copy()
    redraw = rng.random(children) < 0.05
    eth[redraw] = rng.choice(5, int(redraw.sum()), p=ETHNIC_BASE)
    ethnicity = np.array(contract.ETHNICITIES)[eth].astype(object)

    u = 0.4 * d_hh[hh] + 0.55 * h_trait[hh] + 0.8 * rng.normal(0, 1, children)
    u = (u - 0.4 * d_hh[hh]) / np.sqrt(0.55**2 + 0.8**2) + 0.4 * d_hh[hh]  # N(0.4 d, 1)

    twin_of = np.full(children, None, dtype=object)
    pid = np.array([f"child-{i:07d}" for i in range(1, children + 1)], dtype=object)
    twin_of[ti] = pid[ti - 1]
    twin_of[ti - 1] = pid[ti]

    eligible_edu = pr.age_at(dob, np.datetime64(extract_date) - 1) >= 4
    upn = np.full(children, None, dtype=object)
    upn[eligible_edu] = upns(rng, int(eligible_edu.sum()))

    kids = pd.DataFrame(
        {
            "person_id": pid,
            "household_id": hh_id[hh],
            "hh": hh,
            "birth_order": order,
            "n_siblings": sizes[hh] - 1,
            "twin_of": twin_of,
            "sex": sex,
            "ethnicity": ethnicity,
            "dob": dob,
            "first_name": first,
            "surname": surname,
            "alt_surname": alt_surname,
            "ward_code": areas.wards.ward_code.to_numpy()[ward_hh[hh]],
            "imd_decile": areas.wards.imd_decile.to_numpy()[ward_hh[hh]],
            "u": u,
            "fsm": fsm[hh],
            "postcode": postcode[hh],
            "old_postcode": old_postcode[hh],
            "move_month": move_month[hh],
            "nhs_number": nhs_numbers(rng, children),
            "upn": upn,
            "in_education": eligible_edu,
        }
    )
    P = pr.transition_matrices(d_hh)
    states = pr.simulate_states(rng, P, months)
    return County(areas, households, kids, states, P, months)
