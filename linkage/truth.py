"""Synthetic ground truth for linkage evaluation (never ingested; synthetic data only).

`truth_dir/people_<agency>.parquet(row_number, person_id)` gives the person behind each data row
of the agency's raw people file; the pseudonymiser keeps row order in both files it makes of it
(the linkage unit's people file and the hub's attributes file) and ingest keeps `row_number`, so
truth joins to records via the latest load of each agency in `raw.loads` and `raw.people` (at the
linkage unit) or `raw.attributes` (at the hub).
"""

from __future__ import annotations

import duckdb
import pandas as pd

from joinedup import contract
from joinedup.config import Settings

_EMPTY = pd.DataFrame(columns=["agency", "record_token", "person_id"])


def has_truth(settings: Settings) -> bool:
    return any((settings.truth_dir / f"people_{a}.parquet").is_file() for a in contract.AGENCIES)


def record_truth(settings: Settings, con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """`(agency, record_token, person_id[, sex, ethnicity, imd_decile])` for every record of
    each agency's latest people load; the attributes are the true person's."""
    frames = []
    kind = "people" if settings.unit == "linkage" else "attributes"
    for agency in contract.AGENCIES:
        path = settings.truth_dir / f"people_{agency}.parquet"
        if not path.is_file():
            continue
        truth = pd.read_parquet(path, columns=["row_number", "person_id"])
        truth["row_number"] = truth["row_number"].astype("int64")
        rows = con.execute(
            f"""
            SELECT p.row_number, p.record_token FROM raw.{kind} p
            WHERE p.load_id = (SELECT load_id FROM raw.loads
                               WHERE agency = ? AND kind = ? AND status = 'loaded'
                               ORDER BY loaded_at DESC, load_id DESC LIMIT 1)
            """,
            [agency, kind],
        ).df()
        if rows.empty:
            continue
        rows["row_number"] = rows["row_number"].astype("int64")
        merged = rows.merge(truth, on="row_number", how="inner")
        merged["agency"] = agency
        frames.append(merged[["agency", "record_token", "person_id"]])
    if not frames:
        return _EMPTY.copy()
    out = pd.concat(frames, ignore_index=True).drop_duplicates(["agency", "record_token"])
    attrs = person_attributes(settings)
    if attrs is not None:
        out = out.merge(attrs, on="person_id", how="left")
    return out


#: true person attributes used to break linkage quality down by group
ATTRIBUTE_COLUMNS: tuple[str, ...] = ("sex", "ethnicity", "imd_decile")


def person_attributes(settings: Settings) -> pd.DataFrame | None:
    """`(person_id, sex, ethnicity, imd_decile)` from `children.parquet` (None without it)."""
    path = settings.truth_dir / "children.parquet"
    if not path.is_file():
        return None
    ch = pd.read_parquet(path)
    cols = [c for c in ATTRIBUTE_COLUMNS if c in ch.columns]
    if not cols:
        return None
    return ch[["person_id", *cols]].drop_duplicates("person_id")


def child_truth(settings: Settings, con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """`(child_id, person_id)`: the majority person among each linked child's records."""
    rec = record_truth(settings, con)
    linked = con.execute("SELECT agency, record_token, child_id FROM linked.records").df()
    m = linked.merge(rec, on=["agency", "record_token"])
    if m.empty:
        return pd.DataFrame(columns=["child_id", "person_id"])
    counts = m.groupby(["child_id", "person_id"]).size().reset_index(name="n")
    counts = counts.sort_values(["child_id", "n", "person_id"], ascending=[True, False, True])
    return counts.drop_duplicates("child_id")[["child_id", "person_id"]].reset_index(drop=True)


def twins(settings: Settings) -> pd.DataFrame:
    """`(person_a, person_b)` twin pairs (a < b) from `children.parquet`'s `twin_of`."""
    path = settings.truth_dir / "children.parquet"
    if not path.is_file():
        return pd.DataFrame(columns=["person_a", "person_b"])
    ch = pd.read_parquet(path)
    if "twin_of" not in ch.columns:
        return pd.DataFrame(columns=["person_a", "person_b"])
    ch = ch.dropna(subset=["twin_of"])
    a = ch["person_id"].astype(str)
    b = ch["twin_of"].astype(str)
    pairs = pd.DataFrame({"person_a": a.where(a < b, b), "person_b": b.where(a < b, a)})
    return pairs.drop_duplicates().reset_index(drop=True)
