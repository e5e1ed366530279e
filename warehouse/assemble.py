"""Stage `assemble` (analytics hub): the linkage unit's hand-off + the hub's own records -> one
picture per child.

The hub never links: it receives from the linkage unit only record token -> child id
(`linkage.handoff.MAPPING_FILE` in `settings.handoff_inbox`) and joins that with what the
agencies sent the hub directly (coarse attributes and events), in one checked transaction:

- `linked.mapping`: the hand-off as received (agency, record_token, child_id,
  match_probability_max), checked row by row first (a bad row refuses the whole hand-off with the
  file, row and rule, never the value);
- `linked.records`: every current attributes record the linkage unit gave a child;
- `linked.children`: one row per child, clear attributes by majority (ward: most recent), the
  ward's deprivation decile, the number of records and the agencies that hold them;
- `linked.events`: every current event, with its child (NULL when the record has no child);
- `linked.link_review`: the linkage unit's clerical review queue
  (`linkage.handoff.REVIEW_QUEUE_FILE`: pair id, agencies, child ids, probability, weight,
  evidence labels and weights, latest decision; never a token), checked row by row like the
  mapping (`read_review_queue`); an absent file (an older linkage unit) is an empty queue.
  Decisions are never made here: the dashboard hands them back to the linkage unit.

The linked_records / linked_children / linked_events suites run before COMMIT.  Every run also
reports how identifying the hub's clear demographics are (`privacy_risk`): the share of children
unique (k = 1), in groups under 5 and under 10 on sex, birth year, ethnicity and ward
(`outputs/privacy/uniqueness.json`), against the 5% target in docs/privacy.md.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from joinedup import contract
from joinedup.config import Settings
from linkage.handoff import (
    MAPPING_COLUMNS,
    MAPPING_FILE,
    PAIR_ID_PATTERN,
    QUALITY_FILE,
    REVIEW_QUEUE_COLUMNS,
    REVIEW_QUEUE_FILE,
)
from warehouse.db import connect

#: the clear demographics a motivated intruder could know, held at the hub per child
QUASI_IDENTIFIERS: tuple[str, ...] = ("sex", "birth_year", "ethnicity", "ward_code")
#: the target: at most this share of children unique on the quasi-identifiers
UNIQUE_TARGET = 0.05
_RULES: tuple[tuple[str, str, str], ...] = (
    ("agency", rf"^({'|'.join(contract.AGENCIES)})$", "agency must be an agency code"),
    ("record_token", rf"^[0-9a-f]{{{contract.TOKEN_HEX_LENGTH}}}$", "record_token must be a token"),
    ("child_id", r"^C[0-9a-f]{10}$", "child_id must be C and 10 lowercase hex characters"),
)
_CHILD_ID = r"^C[0-9a-f]{10}$"
_AGENCY = rf"^({'|'.join(contract.AGENCIES)})$"
_QUEUE_RULES: tuple[tuple[str, str, str], ...] = (
    ("pair_id", PAIR_ID_PATTERN, "pair_id must be R and 12 lowercase hex characters"),
    ("rank", r"^[1-9][0-9]{0,8}$", "rank must be a positive whole number"),
    ("agency_l", _AGENCY, "agency_l must be an agency code"),
    ("child_id_l", _CHILD_ID, "child_id_l must be C and 10 lowercase hex characters"),
    ("agency_r", _AGENCY, "agency_r must be an agency code"),
    ("child_id_r", _CHILD_ID, "child_id_r must be C and 10 lowercase hex characters"),
    ("model_side", r"^(link|no link)$", "model_side must be link or no link"),
    ("decision", r"^(accept|reject)?$", "decision must be accept, reject or empty"),
    ("run_id", r"^[A-Za-z0-9_.:+-]{1,100}$", "run_id must be 1-100 letters, digits, _ . : + -"),
)
#: a run of hex digits long enough to be (part of) a token or Bloom filter
_HEX_RUN = re.compile(r"[0-9a-fA-F]{16,}")


class HandoffError(ValueError):
    """The linkage unit's hand-off is missing or malformed (file, row, rule; never a value)."""


def _first_bad(bad: pd.Series) -> int | None:
    """The 1-based data row of the first True in `bad`, or None."""
    return int(bad.to_numpy().argmax()) + 1 if bad.any() else None


def read_mapping(path: Path) -> pd.DataFrame:
    """The hand-off mapping, checked: exact columns, every value of its shape, one row per
    record.  Raises HandoffError naming the file, the first bad row and the rule."""
    if not path.is_file():
        raise HandoffError(
            f"{path.name}: no hand-off from the linkage unit in {path.parent} "
            "(run the linkage unit's link stage first)"
        )
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if tuple(frame.columns) != MAPPING_COLUMNS:
        raise HandoffError(
            f"{path.name} row 0: columns must be exactly {', '.join(MAPPING_COLUMNS)} "
            "(rule: header)"
        )
    for col, pattern, rule in _RULES:
        if row := _first_bad(~frame[col].str.fullmatch(pattern)):
            raise HandoffError(f"{path.name} row {row}: {rule} (rule: {col})")
    given = frame["match_probability_max"] != ""  # empty: a record with no scored pair
    prob = pd.to_numeric(frame["match_probability_max"].where(given), errors="coerce")
    if row := _first_bad(given & ~prob.between(0.0, 1.0)):
        raise HandoffError(
            f"{path.name} row {row}: match_probability_max must be a probability "
            "(rule: match_probability_max)"
        )
    if row := _first_bad(frame.duplicated(["agency", "record_token"])):
        raise HandoffError(f"{path.name} row {row}: a record appears twice (rule: unique)")
    frame["match_probability_max"] = prob
    return frame


def _evidence_ok(text: str) -> bool:
    """Empty (evidence unavailable), or a JSON object {comparison: {level, weight}} of labels
    and numbers only, with no run of hex digits a token could hide in."""
    if text == "":
        return True
    if _HEX_RUN.search(text):
        return False
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and all(
        isinstance(v, dict)
        and set(v) == {"level", "weight"}
        and isinstance(v["level"], str)
        and isinstance(v["weight"], int | float)
        and not isinstance(v["weight"], bool)
        for v in value.values()
    )


def read_review_queue(path: Path, mapping: pd.DataFrame) -> pd.DataFrame:
    """The hand-off review queue, checked: exact columns (`REVIEW_QUEUE_COLUMNS`: never a token),
    every value of its shape, probability in [0, 1], evidence labels and weights only, both child
    ids in the hand-off `mapping`, one row per pair.  An absent file is an empty queue.  Raises
    HandoffError naming the file, the first bad row and the rule, never the value."""
    if not path.is_file():
        return pd.DataFrame(columns=list(REVIEW_QUEUE_COLUMNS))
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if tuple(frame.columns) != REVIEW_QUEUE_COLUMNS:
        raise HandoffError(
            f"{path.name} row 0: columns must be exactly {', '.join(REVIEW_QUEUE_COLUMNS)} "
            "(rule: header)"
        )
    children = set(mapping["child_id"])
    prob = pd.to_numeric(frame["match_probability"], errors="coerce")
    weight = pd.to_numeric(frame["match_weight"], errors="coerce")
    queued = pd.to_datetime(frame["queued_at"], format="ISO8601", utc=True, errors="coerce")
    checks: list[tuple[str, pd.Series, str]] = [
        (col, ~frame[col].str.fullmatch(pattern), rule) for col, pattern, rule in _QUEUE_RULES
    ]
    checks += [
        ("child_id_l", ~frame["child_id_l"].isin(children),
         "child_id_l must be a child of the hand-off mapping"),
        ("child_id_r", ~frame["child_id_r"].isin(children),
         "child_id_r must be a child of the hand-off mapping"),
        ("match_probability", ~prob.between(0.0, 1.0), "match_probability must be a probability"),
        ("match_weight", ~np.isfinite(weight.astype(float)), "match_weight must be a number"),
        ("evidence_json", ~frame["evidence_json"].map(_evidence_ok),
         "evidence_json must be empty or a JSON object of comparison: {level, weight}"),
        ("queued_at", queued.isna(), "queued_at must be an ISO-8601 UTC timestamp"),
        ("unique", frame.duplicated(["pair_id"]), "a pair appears twice"),
    ]  # fmt: skip
    first = [(row, col, rule) for col, bad, rule in checks if (row := _first_bad(bad))]
    if first:
        row, col, rule = min(first, key=lambda f: f[0])
        raise HandoffError(f"{path.name} row {row}: {rule} (rule: {col})")
    frame["rank"] = frame["rank"].astype(int)
    frame["match_probability"], frame["match_weight"] = prob, weight
    frame["queued_at"] = queued.dt.tz_convert("UTC").dt.tz_localize(None)
    for col in ("evidence_json", "decision"):
        frame[col] = frame[col].where(frame[col] != "", None)
    return frame


def _mode(col: str, where: str, recent_first: bool = False) -> str:
    order = "last DESC, n DESC" if recent_first else "n DESC, last DESC"
    return (
        f"SELECT child_id, v FROM (SELECT child_id, {col} AS v, count(*) AS n, "
        f"max(extract_date) AS last FROM r WHERE {where} GROUP BY ALL) "
        f"QUALIFY row_number() OVER (PARTITION BY child_id ORDER BY {order}, v) = 1"
    )


_RECORDS_SQL = """
CREATE OR REPLACE TABLE linked.records AS
SELECT a.agency, a.record_token, m.child_id, a.load_id, a.row_number,
       CAST(m.match_probability_max AS DOUBLE) AS match_probability_max
FROM staging.current_attributes a JOIN linked.mapping m USING (agency, record_token)
ORDER BY a.agency, a.load_id, a.row_number
"""

_CHILDREN_SQL = """
CREATE OR REPLACE TABLE linked.children AS
WITH r AS (
    SELECT lr.child_id, a.agency, a.sex, a.birth_year, a.ethnicity, a.ward_code, a.extract_date
    FROM linked.records lr JOIN staging.current_attributes a USING (agency, record_token)
),
sex AS ({sex}), yob AS ({yob}), eth AS ({eth}), ward AS ({ward}),
agg AS (SELECT child_id, count(*) AS n_records,
               string_agg(DISTINCT agency, ',' ORDER BY agency) AS agencies
        FROM r GROUP BY child_id)
SELECT agg.child_id, coalesce(sex.v, 'U') AS sex, yob.v AS birth_year,
       coalesce(eth.v, 'UNK') AS ethnicity, ward.v AS ward_code, w.imd_decile,
       agg.n_records, agg.agencies
FROM agg LEFT JOIN sex USING (child_id) LEFT JOIN yob USING (child_id)
LEFT JOIN eth USING (child_id) LEFT JOIN ward USING (child_id)
LEFT JOIN reference.wards w ON w.ward_code = ward.v
ORDER BY agg.child_id
"""

_EVENTS_SQL = """
CREATE OR REPLACE TABLE linked.events AS
SELECT r.child_id, e.agency, e.event_token, e.record_token, e.event_date, e.event_type, e.value,
       e.load_id, e.row_number
FROM staging.current_events e LEFT JOIN linked.records r USING (agency, record_token)
ORDER BY e.agency, e.load_id, e.row_number
"""

LINKED_TABLES = ["linked.records", "linked.children", "linked.events"]


def children_sql() -> str:
    return _CHILDREN_SQL.format(
        sex=_mode("sex", "sex IN ('M', 'F')"),
        yob=_mode("birth_year", "birth_year IS NOT NULL"),
        eth=_mode("ethnicity", "ethnicity IS NOT NULL AND ethnicity NOT IN ('', 'UNK')"),
        ward=_mode("ward_code", "coalesce(ward_code, '') <> ''", recent_first=True),
    )


def build_linked(
    con, settings: Settings | None, mapping: pd.DataFrame, queue: pd.DataFrame | None = None
) -> dict:
    """Replace linked.mapping/records/children/events (and linked.link_review, when `queue` is
    given) in one checked transaction."""
    from expectations.downstream import checked_transaction

    con.register("_mapping", mapping)
    if queue is not None:
        con.register("_link_review", queue.reindex(columns=list(REVIEW_QUEUE_COLUMNS)))
    try:
        with checked_transaction(con, settings, LINKED_TABLES, "assemble.before_commit") as checks:
            con.execute(
                "CREATE OR REPLACE TABLE linked.mapping AS SELECT agency, record_token, child_id, "
                "CAST(match_probability_max AS DOUBLE) AS match_probability_max FROM _mapping"
            )
            con.execute(_RECORDS_SQL)
            con.execute(children_sql())
            con.execute(_EVENTS_SQL)
            if queue is not None:
                cols = ", ".join(REVIEW_QUEUE_COLUMNS)
                con.execute("DELETE FROM linked.link_review")
                con.execute(
                    f"INSERT INTO linked.link_review ({cols}) SELECT {cols} FROM _link_review "
                    "ORDER BY rank"
                )
    finally:
        con.unregister("_mapping")
        if queue is not None:
            con.unregister("_link_review")
    return checks


def privacy_risk(con) -> dict:
    """Uniqueness of children on the hub's clear demographics (k-anonymity classes)."""
    cols = ", ".join(QUASI_IDENTIFIERS)
    row = con.execute(
        f"""
        WITH k AS (SELECT count(*) OVER (PARTITION BY {cols}) AS k FROM linked.children)
        SELECT count(*), count(*) FILTER (WHERE k = 1), count(*) FILTER (WHERE k < 5),
               count(*) FILTER (WHERE k < 10) FROM k
        """
    ).fetchone()
    n = int(row[0])
    share = lambda x: round(x / n, 4) if n else None  # noqa: E731
    unique = share(int(row[1]))
    return {
        "quasi_identifiers": list(QUASI_IDENTIFIERS),
        "children": n,
        "unique_k1": unique,
        "k_under_5": share(int(row[2])),
        "k_under_10": share(int(row[3])),
        "target_unique_max": UNIQUE_TARGET,
        "target_met": unique is not None and unique <= UNIQUE_TARGET,
    }


def run(settings: Settings, **options: object) -> dict:
    """Stage `assemble`: apply the linkage unit's hand-off. Figures: counts, checks, privacy risk."""
    started = time.perf_counter()
    inbox = settings.handoff_inbox
    mapping = read_mapping(inbox / MAPPING_FILE)
    queue = read_review_queue(inbox / REVIEW_QUEUE_FILE, mapping)
    with connect(settings) as con:
        checks = build_linked(con, settings, mapping, queue)
        counts = con.execute(
            "SELECT (SELECT count(*) FROM linked.records), (SELECT count(*) FROM linked.children), "
            "(SELECT count(*) FROM linked.events), "
            "(SELECT count(*) FROM linked.events WHERE child_id IS NULL), "
            "(SELECT count(*) FROM staging.current_attributes a WHERE NOT EXISTS "
            " (SELECT 1 FROM linked.mapping m WHERE m.agency = a.agency "
            "  AND m.record_token = a.record_token))"
        ).fetchone()
        risk = privacy_risk(con)
    out = settings.outputs_dir / "privacy"
    out.mkdir(parents=True, exist_ok=True)
    (out / "uniqueness.json").write_text(json.dumps(risk, indent=2))
    quality = inbox / QUALITY_FILE
    if quality.is_file():
        target = settings.outputs_dir / "linkage" / "quality.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(quality.read_text(encoding="utf-8"), encoding="utf-8")
    return {
        "mapping_rows": int(len(mapping)),
        "records": int(counts[0]),
        "children": int(counts[1]),
        "events": int(counts[2]),
        "events_without_child": int(counts[3]),
        "records_without_child": int(counts[4]),
        "review_queue": int(len(queue)),
        "review_pending": int(queue["decision"].isna().sum()) if len(queue) else 0,
        "checks": checks,
        "privacy_risk": risk,
        "seconds": round(time.perf_counter() - started, 3),
    }
