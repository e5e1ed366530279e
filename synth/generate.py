"""The synth stage: make a synthetic county and write the raw agency extracts, the public area
reference and the truth (see synth/README.md).

Owns: `run(settings, children=20000, seed=42) -> dict` (the stage function), `inject_entry_errors`,
`placement_events` (the episodes' csc rows).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from joinedup import contract
from joinedup.config import Settings
from synth import events as ev_mod
from synth import identifiers as ids
from synth import names as nm
from synth import placements as pl
from synth import process as pr
from synth.county import make_county
from synth.observable_oracle import observable_probability

#: share of event rows given a deliberate data-entry error
ENTRY_ERROR_RATE = 2e-4
ENTRY_ERROR_KINDS = (
    "impossible_date",
    "date_after_extract",
    "unknown_event_type",
    "attendance_out_of_range",
)
_IMPOSSIBLE = ("02-30", "02-31", "04-31", "06-31", "09-31", "11-31", "13-01", "00-12")
_UNKNOWN_TYPES = ("unknown", "ae_attendence", "refferal", "exclusion_fixed", "X99", "ASB ")


def inject_entry_errors(
    rng: np.random.Generator,
    agency: str,
    events: pd.DataFrame,
    extract_date: str,
    rate: float = ENTRY_ERROR_RATE,
) -> list[dict]:
    """Corrupt ~ENTRY_ERROR_RATE of the event rows in place (never outcome rows); return the list
    (agency, kind, row_number, column, error)."""
    n = len(events)
    n_err = int(rng.binomial(n, rate)) if n and rate > 0 else 0
    if not n_err:
        return []
    types = events.event_type.to_numpy()
    kinds = rng.choice(ENTRY_ERROR_KINDS, n_err)
    att_rows = np.flatnonzero(types == "attendance")
    if not len(att_rows):
        kinds[kinds == "attendance_out_of_range"] = "impossible_date"
    other_rows = np.flatnonzero(~np.isin(types, contract.OUTCOME_EVENT_TYPES))
    n_att = int((kinds == "attendance_out_of_range").sum())
    rows_att = rng.choice(att_rows, n_att, replace=False) if n_att else np.empty(0, int)
    taken = np.zeros(n, dtype=bool)
    taken[rows_att] = True
    pool = other_rows[~taken[other_rows]]
    rows_other = rng.choice(pool, n_err - n_att, replace=False)
    kinds = np.concatenate(
        [np.full(n_att, "attendance_out_of_range"), kinds[kinds != "attendance_out_of_range"]]
    )
    rows = np.concatenate([rows_att, rows_other])
    out: list[dict] = []
    extract = np.datetime64(extract_date)
    for row, kind in zip(rows.tolist(), kinds.tolist(), strict=True):
        if kind == "impossible_date":
            col = "event_date"
            val = events.at[row, col][:5] + str(rng.choice(_IMPOSSIBLE))
        elif kind == "date_after_extract":
            col = "event_date"
            val = str(extract + np.timedelta64(int(rng.integers(1, 400)), "D"))
        elif kind == "unknown_event_type":
            col = "event_type"
            val = str(rng.choice(_UNKNOWN_TYPES))
        else:
            col = "value"
            bad = 100 + rng.uniform(0.1, 60) if rng.random() < 0.5 else -rng.uniform(0.1, 30)
            val = f"{bad:.1f}"
        events.at[row, col] = val
        out.append(
            {
                "agency": agency,
                "kind": "events",
                "row_number": row + 1,
                "column": col,
                "error": kind,
                "bad_value": val,
            }
        )
    return out


def placement_events(
    rng: np.random.Generator, people: pd.DataFrame, events: pd.DataFrame, first_number: int
) -> pd.DataFrame:
    """The episodes' csc rows (`placement_start`, `looked_after_end`) as raw event rows, each on
    one of the child's csc records (duplicates: 50/50 from the placement generator), sorted by
    date, numbered on from `first_number` (so the other rows keep their event ids and row
    numbers: these rows follow them in the file); placement codes written as whole numbers."""
    out = ids.assign_events(rng, "csc", people, events)
    codes = pd.to_numeric(out.value.where(out.value != ""), errors="coerce")
    out["value"] = np.where(codes.notna(), codes.fillna(0).astype(np.int64).astype(str), "")
    prefix = ids.RULES["csc"].prefix + "E"
    out["event_id"] = ids._ids(prefix, np.arange(len(out)) + first_number, 8)
    return out


def _write_csv(df: pd.DataFrame, columns: tuple[str, ...], path: Path) -> None:
    table = pa.table({c: pa.array(df[c].to_numpy(dtype=object), type=pa.string()) for c in columns})
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "wb") as f:  # plain header; values never need quoting (no commas/quotes)
        f.write((",".join(columns) + "\n").encode("utf-8"))
        pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    tmp.replace(path)


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)


def run(
    settings: Settings,
    children: int = 20000,
    seed: int = 42,
    entry_error_rate: float = ENTRY_ERROR_RATE,
    placements: bool = True,
) -> dict:
    """Generate the county and write every file (see synth/README.md); returns figures.
    `placements=False` leaves out the episodes in care (`placement_start`, `looked_after_end`):
    every other file and row is the same either way (they come from their own generator)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    extract = settings.extract_date
    for d in (settings.agency_dir, settings.reference_dir, settings.truth_dir):
        d.mkdir(parents=True, exist_ok=True)

    names = nm.load_names()
    county = make_county(rng, children, extract, names)
    kids = county.children
    pid = kids.person_id.to_numpy(dtype=object)
    last = np.datetime64(extract) - np.timedelta64(1, "D")

    cm = ev_mod.child_months(county)
    outcomes = ev_mod.make_outcomes(rng, county, cm, last)
    events = ev_mod.make_events(rng, county, cm, outcomes, extract)
    del cm
    oracle = ev_mod.make_oracle(county)
    # the observable oracle: the Bayes posterior given the child's own observable history (what
    # the hub's linked timeline shows); the reachable ceiling the model is judged against
    t_obs = time.perf_counter()
    observable = observable_probability(county, events, household=False)
    oracle = oracle.merge(
        observable.rename(columns={"p_obs": "p_observable"}), on=["child", "t"], how="left"
    )
    observable_seconds = round(time.perf_counter() - t_obs, 2)

    # episodes in care, from their own generator (the main stream is untouched)
    la = outcomes[outcomes.type == "looked_after_start"]
    la_child = la.child.to_numpy()
    prng = pl.placement_rng(seed)
    care_events, episodes = pl.make_episodes(
        prng,
        la_child,
        la.date.to_numpy(),
        kids.dob.to_numpy()[la_child],
        extract,
    )

    members = {
        "health": np.arange(children),
        "education": np.flatnonzero(kids.in_education.to_numpy()),
        "police": np.unique(events.child[events.agency == "police"].to_numpy()),
        "csc": np.unique(events.child[events.agency == "csc"].to_numpy()),
    }
    figures: dict = {"records": {}, "events": {}, "duplicates": {}}
    errors: list[dict] = []
    for agency in contract.AGENCIES:
        people = ids.make_people(rng, agency, kids, members[agency], extract)
        ag_ev = events[events.agency == agency].reset_index(drop=True)
        out = ids.assign_events(rng, agency, people, ag_ev)
        out["extract_date"] = extract
        errors += inject_entry_errors(rng, agency, out, extract, entry_error_rate)
        if agency == "csc" and placements and len(care_events):
            extra = placement_events(
                prng,
                people,
                care_events.assign(agency="csc"),
                len(out) + 1,
            )
            extra["extract_date"] = extract
            out = pd.concat([out, extra], ignore_index=True)
        _write_csv(
            people,
            contract.RAW_PEOPLE_COLUMNS,
            settings.agency_dir / contract.file_name(agency, "people"),
        )
        _write_csv(
            out,
            contract.RAW_EVENT_COLUMNS,
            settings.agency_dir / contract.file_name(agency, "events"),
        )
        truth = pd.DataFrame(
            {
                "row_number": np.arange(1, len(people) + 1, dtype=np.int64),
                "person_id": pid[people.child.to_numpy()],
                "source_id": people.source_id.to_numpy(dtype=object),
                "is_duplicate": people.is_duplicate.to_numpy(),
            }
        )
        _write_parquet(truth, settings.truth_dir / f"people_{agency}.parquet")
        figures["records"][agency] = len(people)
        figures["events"][agency] = len(out)
        figures["duplicates"][agency] = int(people.is_duplicate.sum())

    county.areas.reference().to_csv(settings.reference_dir / "areas.csv", index=False)

    # ---- truth
    n_out = outcomes.groupby("child").size()
    ch = kids.drop(columns=["hh", "in_education"]).copy()
    ch["dob"] = ch.dob.dt.date
    ch["move_date"] = pd.Series(
        np.where(ch.move_month >= 0, pr.month_start(np.maximum(ch.move_month, 0)), None)
    ).map(lambda x: None if x is None else pd.Timestamp(x).date())
    ch = ch.drop(columns=["move_month"])
    ch["n_outcomes"] = n_out.reindex(np.arange(children), fill_value=0).to_numpy()
    ch["in_police"] = np.isin(np.arange(children), members["police"])
    ch["in_csc"] = np.isin(np.arange(children), members["csc"])
    _write_parquet(ch, settings.truth_dir / "children.parquet")
    _write_parquet(
        pd.DataFrame(
            {
                "person_id": pid[outcomes.child.to_numpy()],
                "date": pd.to_datetime(outcomes.date).dt.date,
                "type": outcomes.type.to_numpy(dtype=object),
            }
        ).sort_values(["date", "person_id"], ignore_index=True),
        settings.truth_dir / "outcomes.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "person_id": pa.array(pid.astype(str)).take(pa.array(oracle.child.to_numpy())),
                "month": pa.array(pr.month_start(oracle.t.to_numpy()), type=pa.date32()),
                "p_true": pa.array(oracle.p_true.to_numpy(), type=pa.float32()),
                "p_observable": pa.array(oracle.p_observable.to_numpy(), type=pa.float32()),
                "state": pa.array(oracle.state.to_numpy(), type=pa.int8()),
            }
        ),
        settings.truth_dir / "oracle.parquet",
    )
    hh_ids = county.households.household_id.to_numpy(dtype=object)
    n_hh, cols = county.states.shape
    pq.write_table(
        pa.table(
            {
                "household_id": pa.array(hh_ids.astype(str)).take(
                    pa.array(np.repeat(np.arange(n_hh), cols - 1))
                ),
                "month": pa.array(
                    pr.month_start(np.tile(np.arange(cols - 1), n_hh)), type=pa.date32()
                ),
                "state": pa.array(county.states[:, 1:].ravel(), type=pa.int8()),
            }
        ),
        settings.truth_dir / "household_states.parquet",
    )
    if placements:
        _write_parquet(
            pd.DataFrame(
                {
                    "person_id": pid[episodes.child.to_numpy()],
                    "episode": episodes.episode.to_numpy(),
                    "start": pd.to_datetime(episodes.start).dt.date,
                    "end": pd.to_datetime(episodes.end).dt.date,
                    "end_reason": episodes.end_reason.to_numpy(dtype=object),
                    "first_kind": episodes.first_kind.to_numpy(),
                    "last_kind": episodes.last_kind.to_numpy(),
                    "n_moves": episodes.n_moves.to_numpy(),
                }
            ),
            settings.truth_dir / "episodes.parquet",
        )
    err_df = pd.DataFrame(
        errors, columns=["agency", "kind", "row_number", "column", "error", "bad_value"]
    ).astype({"row_number": "int64"})
    _write_parquet(err_df, settings.truth_dir / "entry_errors.parquet")

    # ---- figures
    months = county.months
    yearly = len(outcomes) / (months / 12)
    figures.update(
        {
            "children": children,
            "households": len(county.households),
            "twin_pairs": int(kids.twin_of.notna().sum() // 2),
            "wards": len(county.areas.wards),
            "postcode_sectors": len(county.areas.sectors),
            "months": months,
            "outcomes": len(outcomes),
            "outcomes_per_year": round(yearly, 1),
            "children_with_outcome_last_12m": int(
                outcomes[outcomes.date >= pr.month_start(months - 12)].child.nunique()
            ),
            "mean_oracle_p": round(float(oracle.p_true.mean()), 5),
            "mean_observable_oracle_p": round(float(oracle.p_observable.mean()), 5),
            "observable_oracle_seconds": observable_seconds,
            "entry_errors": len(errors),
            "care_episodes": len(episodes) if placements else 0,
            "in_care_at_extract": int((episodes.end_reason == "open").sum()) if placements else 0,
            "seed": seed,
        }
    )
    figures["seconds"] = round(time.perf_counter() - t0, 2)
    return figures
