"""Test fixture for `models/`: a warehouse whose `linked.*` tables come straight from the synthetic
truth (child_id = person_id), so the model stages can be developed and tested while linkage is
being written.

`make_linked_warehouse(settings, children=..., seed=...)` generates a county (with
`synth.generate.run` when that module exists, else with the small stand-in generator below, which
writes the same files), then loads `reference.wards`, `linked.children` and `linked.events` from
the raw extracts and truth, in the hub's contract-v2 shape (birth year and ward, events by month).
`county_with_features(home, children=..., seed=...)` does that in a fresh home and builds `features.child_month` (with its checks): the module-scoped county of the
model tests.  It owns nothing else; it is not part of the pipeline.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from joinedup import contract
from joinedup.config import Settings
from warehouse.db import connect

HISTORY_START = "2019-01-01"


# ------------------------------------------------------------------ stand-in generator
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


#: per-agency event type -> (log base monthly rate, effect of latent state, min age, max age)
_RATES: dict[str, tuple[str, float, float, float, float]] = {
    "ae_attendance": ("health", -3.4, 0.25, 0, 18),
    "ae_injury": ("health", -5.0, 0.65, 0, 18),
    "mental_health_referral": ("health", -6.2, 0.7, 10, 18),
    "teen_parent": ("health", -8.8, 0.7, 14, 18),
    "domestic_abuse_household": ("police", -5.0, 0.9, 0, 18),
    "missing_episode": ("police", -6.5, 0.9, 11, 18),
    "arrest": ("police", -6.6, 0.8, 10, 18),
    "asb": ("police", -5.6, 0.6, 10, 18),
    "suspension": ("education", -5.6, 0.7, 5, 16),
    "exclusion": ("education", -8.0, 0.9, 5, 16),
    "school_move": ("education", -4.9, 0.3, 5, 16),
    "contact": ("csc", -4.7, 0.9, 0, 18),
    "referral": ("csc", -5.5, 1.0, 0, 18),
    "assessment": ("csc", -5.9, 1.0, 0, 18),
    "child_in_need": ("csc", -6.6, 1.1, 0, 18),
}


def _stand_in_generate(settings: Settings, children: int, seed: int) -> dict:
    """A small vectorised county: a latent monthly need state drives every agency's events and the
    outcome hazard.  Writes the files `synth.generate.run` writes (raw extracts, truth parquet,
    reference areas); the oracle is the hazard of the realised latent path."""
    rng = np.random.default_rng(seed)
    settings.ensure_dirs()
    extract = pd.Timestamp(settings.extract_date)
    months = pd.date_range(HISTORY_START, extract - pd.DateOffset(months=1), freq="MS")
    t_n, n = len(months), children

    # areas: 12 wards x 3 sectors
    sectors = [
        (f"JU{w} {s}", f"E0500{w:04d}", f"Ward {w}") for w in range(1, 13) for s in (1, 2, 3)
    ]
    ward_imd = {
        f"E0500{w:04d}": int(d) for w, d in zip(range(1, 13), rng.integers(1, 11, 12), strict=True)
    }
    areas = pd.DataFrame(sectors, columns=["postcode_sector", "ward_code", "ward_name"])
    areas["imd_decile"] = [
        int(np.clip(ward_imd[w] + rng.integers(-1, 2), 1, 10)) for w in areas.ward_code
    ]
    settings.reference_dir.mkdir(parents=True, exist_ok=True)
    areas.to_csv(settings.reference_dir / "areas.csv", index=False)

    person_id = np.array([f"P{i:07d}" for i in range(n)])
    lo, hi = pd.Timestamp("2002-01-01").value // 86400e9, (extract.value // 86400e9) - 15
    dob = pd.to_datetime(rng.integers(lo, hi, n), unit="D")
    sex = rng.choice(["M", "F", "U"], n, p=[0.505, 0.49, 0.005])
    eth = rng.choice(list(contract.ETHNICITIES), n, p=[0.72, 0.06, 0.1, 0.05, 0.03, 0.04])
    area_idx = rng.integers(0, len(areas), n)
    sector = areas.postcode_sector.to_numpy()[area_idx]
    imd = areas.imd_decile.to_numpy()[area_idx]
    r = rng.normal(0, 1, n) + 0.15 * (5.5 - imd)

    # months x children
    age = ((months.to_numpy()[:, None] - dob.to_numpy()[None, :]) / np.timedelta64(1, "D")) / 365.25
    s = np.empty((t_n, n))
    s[0] = r + rng.normal(0, 0.9, n)
    for t in range(1, t_n):
        shock = (rng.random(n) < 0.008) * 2.0
        s[t] = 0.92 * s[t - 1] + 0.08 * r + 0.35 * rng.normal(0, 1, n) + shock
    h = _sigmoid(-8.7 + 1.4 * s)
    in_care = np.zeros(n, bool)
    out_rows = []
    for t in range(t_n):
        at_risk = (age[t] >= 0) & (age[t] < 18) & ~in_care
        hit = at_risk & (rng.random(n) < h[t])
        la = hit & (rng.random(n) < 0.3)
        for idx, kind in (
            (np.flatnonzero(hit & ~la), "cp_plan_start"),
            (np.flatnonzero(la), "looked_after_start"),
        ):
            day = rng.integers(0, 28, len(idx))
            out_rows.append(
                pd.DataFrame(
                    {"i": idx, "date": months[t] + pd.to_timedelta(day, "D"), "type": kind}
                )
            )
        in_care |= la
    outcomes = pd.concat(out_rows, ignore_index=True)
    # oracle: P(outcome within 12 months | realised latent path), for children at risk
    logq = np.log1p(-h)
    cs = np.vstack([np.zeros((1, n)), np.cumsum(logq, axis=0)])
    end = np.minimum(np.arange(t_n) + 12, t_n)
    p_true = 1 - np.exp(cs[end] - cs[np.arange(t_n)])
    ok = (age >= 0) & (age < 18)
    ti, ci = np.nonzero(ok)
    oracle = pd.DataFrame(
        {
            "person_id": person_id[ci],
            "month": months[ti].date,
            "p_true": p_true[ti, ci],
            "state": s[ti, ci],
        }
    )

    ev = []
    for etype, (agency, b0, b1, amin, amax) in _RATES.items():
        lam = np.exp(b0 + b1 * s) * ((age >= amin) & (age < amax))
        if etype == "ae_injury":
            lam *= np.where(age < 2, 2.0, 1.0)
        k = rng.poisson(lam)
        if etype == "teen_parent":
            k = np.minimum(k, 1)
        ti, ci = np.nonzero(k)
        reps = k[ti, ci]
        ti, ci = np.repeat(ti, reps), np.repeat(ci, reps)
        ev.append(
            pd.DataFrame({"i": ci, "t": ti, "agency": agency, "event_type": etype, "value": np.nan})
        )
    # attendance at the end of each term (Dec, Apr, Jul) for school-age children
    term = np.isin(months.month, [12, 4, 7])
    school = (age >= 5) & (age < 16) & term[:, None]
    ti, ci = np.nonzero(school)
    sv = s[ti, ci]
    val = np.clip(
        95 - 2.5 * sv - 4 * np.maximum(sv - 1, 0) + rng.normal(0, 3, len(ti)), 15, 100
    ).round(1)
    ev.append(
        pd.DataFrame(
            {"i": ci, "t": ti, "agency": "education", "event_type": "attendance", "value": val}
        )
    )
    # one-off education flags at a random school-age month
    for etype, p_base in (("free_school_meals", None), ("sen_support", 0.14), ("ehcp", 0.03)):
        school_any = school.any(axis=0)
        prob = _sigmoid(-1.6 + 0.9 * r) if p_base is None else np.full(n, p_base)
        who = np.flatnonzero(school_any & (rng.random(n) < prob))
        first = school.argmax(axis=0)[who]
        ev.append(
            pd.DataFrame(
                {"i": who, "t": first, "agency": "education", "event_type": etype, "value": np.nan}
            )
        )
    # the outcomes themselves are CSC events, with an assessment shortly before
    oc = outcomes.assign(
        t=((outcomes.date.dt.year - 2019) * 12 + outcomes.date.dt.month - 1).to_numpy()
    )
    ev.append(
        pd.DataFrame(
            {
                "i": oc.i,
                "t": oc.t,
                "agency": "csc",
                "event_type": oc.type,
                "value": np.nan,
                "date": oc.date,
            }
        )
    )
    ev.append(
        pd.DataFrame(
            {
                "i": oc.i,
                "t": oc.t,
                "agency": "csc",
                "event_type": "assessment",
                "value": np.nan,
                "date": oc.date - pd.Timedelta(days=1),
            }
        )
    )
    events = pd.concat(ev, ignore_index=True)
    nodate = events["date"].isna() if "date" in events else np.ones(len(events), bool)
    day = rng.integers(0, 28, len(events))
    events["date"] = events["date"].where(
        ~nodate, months[events.t.to_numpy()] + pd.to_timedelta(day, "D")
    )
    events = events[events.date >= dob[events.i.to_numpy()]]
    # gp registration at birth for everyone (health knows every child)
    gp = pd.DataFrame(
        {
            "i": np.arange(n),
            "agency": "health",
            "event_type": "gp_registration",
            "value": np.nan,
            "date": dob + pd.Timedelta(days=14),
        }
    )
    events = pd.concat([events, gp[gp.date < extract]], ignore_index=True)
    events = events.sort_values(["agency", "date", "i"], kind="stable").reset_index(drop=True)

    ed = settings.extract_date
    names = np.array(["Alex", "Sam", "Jo", "Ria", "Tom", "Mia", "Leo", "Ava"])
    surnames = np.array(["Smith", "Jones", "Khan", "Brown", "Patel", "Evans", "Ali", "Wood"])
    for agency in contract.AGENCIES:
        known = np.unique(events.loc[events.agency == agency, "i"].to_numpy())
        sid = np.array([f"{agency[0].upper()}{j:07d}" for j in range(len(known))])
        people = pd.DataFrame(
            {
                "source_id": sid,
                "first_name": names[known % 8],
                "surname": surnames[(known // 8) % 8],
                "dob": dob[known].strftime("%Y-%m-%d"),
                "sex": sex[known],
                "postcode": [f"{sector[k]}AB" for k in known],
                "ethnicity": eth[known],
                "nhs_number": [f"{9000000000 + k}" for k in known] if agency == "health" else "",
                "upn": "",
                "extract_date": ed,
            }
        )
        people.to_csv(settings.agency_dir / contract.file_name(agency, "people"), index=False)
        pd.DataFrame(
            {"row_number": np.arange(1, len(known) + 1), "person_id": person_id[known]}
        ).to_parquet(settings.truth_dir / f"people_{agency}.parquet", index=False)
        e = events[events.agency == agency]
        pos = np.searchsorted(known, e.i.to_numpy())
        pd.DataFrame(
            {
                "event_id": [f"{agency[0].upper()}E{j:08d}" for j in range(len(e))],
                "source_id": sid[pos],
                "event_date": e.date.dt.strftime("%Y-%m-%d").to_numpy(),
                "event_type": e.event_type.to_numpy(),
                "value": e.value.to_numpy(),
                "extract_date": ed,
            }
        ).to_csv(settings.agency_dir / contract.file_name(agency, "events"), index=False)

    pd.DataFrame(
        {
            "person_id": person_id,
            "sex": sex,
            "ethnicity": eth,
            "dob": dob.date,
            "postcode": [f"{x}AB" for x in sector],
            "ward_code": areas.ward_code.to_numpy()[area_idx],
            "imd_decile": imd,
            "latent_risk": r,
        }
    ).to_parquet(settings.truth_dir / "children.parquet", index=False)
    pd.DataFrame(
        {
            "person_id": person_id[outcomes.i.to_numpy()],
            "date": outcomes.date.dt.date,
            "type": outcomes.type,
        }
    ).to_parquet(settings.truth_dir / "outcomes.parquet", index=False)
    oracle.to_parquet(settings.truth_dir / "oracle.parquet", index=False)
    return {
        "generator": "stand-in",
        "children": n,
        "events": int(len(events)),
        "outcomes": int(len(outcomes)),
    }


# ------------------------------------------------------------------ loading linked.* from truth
def _token(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[: contract.TOKEN_HEX_LENGTH]


def _synth_available() -> bool:
    return (Path(__file__).resolve().parent.parent / "synth" / "generate.py").exists() and (
        importlib.util.find_spec("synth.generate") is not None
    )


def generate(settings: Settings, children: int, seed: int, use_synth: bool | None = None) -> dict:
    """Raw extracts + truth for a county: `synth.generate.run` when it exists, else the stand-in."""
    if use_synth is None:
        use_synth = _synth_available()
    if use_synth:
        from synth.generate import run as synth_run

        figures = dict(synth_run(settings, children=children, seed=seed) or {})
        figures["generator"] = "synth"
        return figures
    return _stand_in_generate(settings, children, seed)


def load_linked_from_truth(settings: Settings) -> dict:
    """Write `reference.wards`, `linked.mapping`, `linked.children` and `linked.events` from the
    raw extracts and the truth, with child_id = person_id (perfect linkage), in the hub's v2 shape: children carry the
    birth year and the ward (no birth year-month, no postcode sector), the ward's deprivation
    decile comes from `reference.wards`, and events are dated to the first day of their month."""
    people, events = [], []
    for agency in contract.AGENCIES:
        p_path = settings.agency_dir / contract.file_name(agency, "people")
        if not p_path.exists():
            continue
        p = pd.read_csv(p_path, dtype=str, keep_default_na=False)
        truth = pd.read_parquet(settings.truth_dir / f"people_{agency}.parquet")
        p["row_number"] = np.arange(1, len(p) + 1)
        p = p.merge(truth[["row_number", "person_id"]], on="row_number", how="left")
        p["agency"] = agency
        p["record_token"] = [_token(agency, x) for x in p.source_id]
        people.append(
            p[["agency", "source_id", "record_token", "person_id", "dob", "sex", "ethnicity",
               "postcode"]]
        )  # fmt: skip
        e = pd.read_csv(
            settings.agency_dir / contract.file_name(agency, "events"),
            dtype=str,
            keep_default_na=False,
        )
        e["row_number"] = np.arange(1, len(e) + 1)
        e = e.merge(p[["source_id", "person_id"]], on="source_id", how="inner")
        # what validation would quarantine: bad dates, unknown types, impossible values
        e["event_date"] = pd.to_datetime(e.event_date, format="%Y-%m-%d", errors="coerce")
        val = pd.to_numeric(e.value, errors="coerce")
        ok = (
            e.event_date.notna()
            & (e.event_date < pd.Timestamp(settings.extract_date))
            & e.event_type.isin(contract.EVENT_TYPES[agency])
            & ~((e.event_type == "attendance") & ~val.between(0, 100))
        )
        e, val = e[ok], val[ok]
        events.append(
            pd.DataFrame(
                {
                    "child_id": e.person_id.astype(str),
                    "agency": agency,
                    "event_token": [_token(agency, x) for x in e.event_id],
                    "record_token": [_token(agency, x) for x in e.source_id],
                    # the hub receives the event month only (staged as its first day)
                    "event_date": e.event_date.dt.to_period("M").dt.start_time.dt.date,
                    "event_type": e.event_type,
                    "value": val,
                    "load_id": f"Lfixture{agency}",
                    "row_number": e.row_number.astype("int64"),
                }
            )
        )
    people_df = pd.concat(people, ignore_index=True)
    events_df = pd.concat(events, ignore_index=True)
    truth_children = pd.read_parquet(settings.truth_dir / "children.parquet")
    areas = pd.read_csv(settings.reference_dir / "areas.csv", dtype={"imd_decile": "int64"})
    # the hub's public reference: one row per ward (as `warehouse.ingest.load_reference`)
    wards = areas.drop_duplicates("ward_code")[["ward_code", "ward_name", "imd_decile"]]

    with connect(settings) as con:
        con.register("areas_df", areas)
        con.register("wards_df", wards)
        con.register("people_df", people_df)
        con.register("events_df", events_df)
        con.register("truth_children", truth_children)
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM reference.wards")
        con.execute(
            "INSERT INTO reference.wards SELECT ward_code, ward_name, imd_decile FROM wards_df"
        )
        # the linkage unit's hand-off as the hub keeps it (perfect linkage: no probability)
        con.execute(
            "CREATE OR REPLACE TABLE linked.mapping AS SELECT agency, record_token, "
            "person_id AS child_id, NULL::DOUBLE AS match_probability_max FROM people_df "
            "WHERE person_id IS NOT NULL ORDER BY agency, record_token"
        )
        con.execute("CREATE OR REPLACE TABLE linked.events AS SELECT * FROM events_df")
        con.execute(
            """
            CREATE OR REPLACE TABLE linked.children AS
            WITH recs AS (
                SELECT person_id, count(*) AS n_records,
                       string_agg(DISTINCT agency, ',' ORDER BY agency) AS agencies
                FROM people_df GROUP BY person_id
            ), t AS (
                SELECT person_id, sex, ethnicity, CAST(dob AS DATE) AS dob,
                       split_part(trim(postcode), ' ', 1) || ' '
                           || left(split_part(trim(postcode), ' ', 2), 1) AS sector,
                       ward_code
                FROM truth_children
            ), placed AS (
                SELECT t.*, coalesce(a.ward_code, t.ward_code) AS ward
                FROM t LEFT JOIN areas_df a ON a.postcode_sector = t.sector
            )
            SELECT p.person_id AS child_id, p.sex, year(p.dob)::INTEGER AS birth_year,
                   p.ethnicity, p.ward AS ward_code, w.imd_decile::INTEGER AS imd_decile,
                   r.n_records, r.agencies
            FROM placed p JOIN recs r USING (person_id)
            LEFT JOIN wards_df w ON w.ward_code = p.ward
            ORDER BY child_id
            """
        )
        con.execute("COMMIT")
        n_children = con.execute("SELECT count(*) FROM linked.children").fetchone()[0]
        n_events = con.execute("SELECT count(*) FROM linked.events").fetchone()[0]
    return {
        "children": int(n_children),
        "events": int(n_events),
        "truth_children": len(truth_children),
    }


def make_linked_warehouse(
    settings: Settings, children: int = 2500, seed: int = 7, use_synth: bool | None = None
) -> dict:
    """Generate a county and load its linked tables from truth. Returns figures."""
    figures = {"generate": generate(settings, children, seed, use_synth)}
    figures["load"] = load_linked_from_truth(settings)
    return figures


def county_with_features(home: Path, children: int, seed: int) -> Settings:
    """Settings for `home` with a linked county from truth and features built (checked)."""
    from models import features

    settings = Settings.from_env(home)
    make_linked_warehouse(settings, children=children, seed=seed)
    features.run(settings)
    return settings
