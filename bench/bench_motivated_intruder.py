"""Motivated-intruder benchmark: how often does someone who knows a child's demographics and the
date of one A&E visit single out that child's joined-up record?  Prints figures.

The intruder knows, of a real child: sex, date of birth, ethnicity, home postcode, and the date
of one A&E attendance (as a neighbour or relative might).  They look for the child among the
hub's children with the same clear demographics and an A&E attendance on that date, as the
store lets them see it:

* **v1 hub** (contract v1): birth year-month, sex, postcode sector, exact event dates;
* **v2 hub** (contract v2): birth year, sex, ethnicity, ward, events dated to the month.

Success = exactly one candidate, and it is the child.  Linkage is taken as perfect (synthetic
truth), the intruder's best case.  Reads a synthetic county made by `joinedup synth` (its raw
agency extracts and truth; evaluation code only).  Usage:
`python bench/bench_motivated_intruder.py [--home PATH] [--children N --seed S]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd

from joinedup import contract
from joinedup.config import Settings


def persons_with_ae(settings: Settings) -> pd.DataFrame:
    """One row per (child, A&E attendance date) with the child's true demographics."""
    children = pd.read_parquet(settings.truth_dir / "children.parquet")
    areas = pd.read_csv(settings.reference_dir / "areas.csv", dtype=str)
    truth = pd.read_parquet(settings.truth_dir / "people_health.parquet")
    events = pd.read_csv(
        settings.agency_dir / contract.file_name("health", "events"),
        dtype=str,
        keep_default_na=False,
    )
    ae = events[events["event_type"].isin(["ae_attendance", "ae_injury"])]
    ae = ae.merge(truth[["source_id", "person_id"]].drop_duplicates(), on="source_id")
    c = children[["person_id", "sex", "dob", "ethnicity", "postcode", "ward_code"]].copy()
    c["dob"] = pd.to_datetime(c["dob"])
    pc = c["postcode"].str.upper().str.replace(" ", "", regex=False)
    c["sector"] = pc.str[:-3] + " " + pc.str[-3]
    c = c.merge(
        areas[["postcode_sector"]], left_on="sector", right_on="postcode_sector", how="left"
    )
    out = ae[["person_id", "event_date"]].drop_duplicates().merge(c, on="person_id")
    out["birth_year_month"] = out["dob"].dt.strftime("%Y-%m")
    out["birth_year"] = out["dob"].dt.year
    out["event_month"] = out["event_date"].str.slice(0, 7)
    return out


def singled_out(df: pd.DataFrame, keys: list[str]) -> float:
    """Share of (child, visit) cases where the intruder's keys match exactly one child."""
    per_key = df.groupby(keys)["person_id"].nunique().rename("candidates").reset_index()
    cases = df.drop_duplicates(["person_id", "event_date"]).merge(per_key, on=keys)
    return float((cases["candidates"] == 1).mean())


def measure(settings: Settings) -> dict:
    df = persons_with_ae(settings)
    v1 = ["birth_year_month", "sex", "sector", "event_date"]
    v2 = ["birth_year", "sex", "ethnicity", "ward_code", "event_month"]
    return {
        "cases": int(df.drop_duplicates(["person_id", "event_date"]).shape[0]),
        "children_with_ae": int(df["person_id"].nunique()),
        "v1_hub_singled_out": round(singled_out(df, v1), 4),
        "v2_hub_singled_out": round(singled_out(df, v2), 4),
        "v2_demographics_only_unique": round(
            singled_out(df, ["birth_year", "sex", "ethnicity", "ward_code"]), 4
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, help="a data home with a synthetic county")
    ap.add_argument("--children", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    if args.home:
        settings = Settings.from_env(args.home)
    else:
        from synth import generate

        settings = Settings.from_env(Path(tempfile.mkdtemp(prefix="intruder-")))
        settings.ensure_dirs()
        generate.run(settings, children=args.children, seed=args.seed)
    print(json.dumps(measure(settings), indent=2))


if __name__ == "__main__":
    main()
