"""What each page reads from the read models: the analysts' list, a child, the link queue, the
engineers' tables.  SQL lives here, views stay thin.

Owns the list filters (`ListFilters`, parsed and validated from a query string: an unknown band
or a malformed child id is refused with a message, never echoed into SQL) and the queries.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from dashboard import readmodels as rm
from joinedup import contract

BANDS = {
    "within_capacity": "Within capacity",
    "next_capacity": "Next capacity",
    "below_capacity": "Below capacity",
}
AGE_BANDS = ("0-4", "5-9", "10-15", "16-17", "unknown")
AGENCIES = ("health", "police", "education", "csc")
AGENCY_NAMES = {
    "health": "Health",
    "police": "Police",
    "education": "Education",
    "csc": "Children's social care",
}
#: the data contract's event types in plain words (docs/data-contract.md, section 2)
EVENT_LABELS = {
    "gp_registration": "GP registration",
    "ae_attendance": "A&E attendance",
    "ae_injury": "A&E attendance with an injury",
    "teen_parent": "Is or is about to become a parent",
    "mental_health_referral": "Mental health referral",
    "domestic_abuse_household": "Domestic abuse incident at home (child present)",
    "missing_episode": "Missing episode",
    "arrest": "Arrest",
    "asb": "Anti-social behaviour",
    "attendance": "School attendance",
    "suspension": "Suspension",
    "exclusion": "Exclusion",
    "sen_support": "SEN support",
    "ehcp": "Education, health and care plan",
    "free_school_meals": "Free school meals",
    "school_move": "School move",
    "contact": "Contact with children's social care",
    "referral": "Referral to children's social care",
    "assessment": "Social care assessment",
    "child_in_need": "Child in need",
    "cp_plan_start": "Child protection plan started",
    "looked_after_start": "Became looked after",
    "placement_start": "Placement started",
    "looked_after_end": "Left care",
}
#: placement kinds in words, by the contract's code
PLACEMENT_NAMES = {code: f"{kind} placement" for code, kind in contract.PLACEMENT_KINDS.items()}
CHILD_ID = re.compile(r"^C[0-9A-Za-z]{1,40}$")
SORTS = ("rank", "change")


@dataclass
class ListFilters:
    band: str = ""
    ward: str = ""
    age_band: str = ""
    agency: str = ""
    rising: bool = False
    q: str = ""
    sort: str = "rank"
    page: int = 1
    errors: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, params) -> ListFilters:
        f = cls()
        f.band = params.get("band", "")
        if f.band and f.band not in BANDS:
            f.errors.append("Unknown score band: choose one from the list.")
            f.band = ""
        f.age_band = params.get("age_band", "")
        if f.age_band and f.age_band not in AGE_BANDS:
            f.errors.append("Unknown age band: choose one from the list.")
            f.age_band = ""
        f.agency = params.get("agency", "")
        if f.agency and f.agency not in AGENCIES:
            f.errors.append("Unknown agency: choose one from the list.")
            f.agency = ""
        f.ward = params.get("ward", "")
        if f.ward and not re.fullmatch(r"[A-Za-z0-9]{1,12}", f.ward):
            f.errors.append("Unknown ward: choose one from the list.")
            f.ward = ""
        f.rising = params.get("rising") in ("1", "on", "true")
        f.q = params.get("q", "").strip()
        if f.q and not CHILD_ID.fullmatch(f.q):
            f.errors.append("Search takes a pseudonymous child id: C followed by hex digits.")
            f.q = ""
        f.sort = params.get("sort", "rank")
        if f.sort not in SORTS:
            f.sort = "rank"
        try:
            f.page = max(1, int(params.get("page", "1")))
        except ValueError:
            f.page = 1
        return f

    def _filters(self) -> dict[str, str]:
        """The filters as query-string values ('' when not set)."""
        return {
            "band": self.band,
            "ward": self.ward,
            "age_band": self.age_band,
            "agency": self.agency,
            "rising": "1" if self.rising else "",
            "q": self.q,
        }

    def as_query(self, **override) -> str:
        from urllib.parse import urlencode

        d = {
            **self._filters(),
            "sort": self.sort if self.sort != "rank" else "",
            "page": str(self.page) if self.page > 1 else "",
        }
        d.update({k: str(v) for k, v in override.items()})
        return urlencode({k: v for k, v in d.items() if v})

    def active(self) -> dict[str, str]:
        """The filters in force, for the audit log (a child id search is kept: it is the target)."""
        return {k: v for k, v in self._filters().items() if v}


def parse_reasons(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {"up": [], "down": [], "method": ""}
    d = json.loads(raw) if isinstance(raw, str) else raw
    return {"up": d.get("up") or [], "down": d.get("down") or [], "method": d.get("method", "")}


#: the list's index: one short row per scored child, in rank order, with what the list shows
#: (the top two reasons as text, not the whole reasons JSON); see `readmodels.frame`
_INDEX_SQL = (
    "SELECT s.child_id, s.rank, s.score, s.band, s.score_change, c.ward_code, c.ward_name, "
    "c.age_band, c.agencies, json_extract_string(s.reasons, '$.up[0].text') AS reason_1, "
    "json_extract_string(s.reasons, '$.up[1].text') AS reason_2, "
    + ", ".join(f"list_contains(string_split(c.agencies, ','), '{a}') AS has_{a}" for a in AGENCIES)
    + " FROM scores s JOIN children c USING (child_id) ORDER BY s.rank"
)
_ROW_COLUMNS = [
    "child_id", "rank", "score", "band", "score_change", "ward_code", "ward_name", "age_band",
    "agencies", "reason_1", "reason_2",
]  # fmt: skip


def ranked(f: ListFilters, page_size: int) -> tuple[list[dict], int]:
    """One page of scored children in rank order (or by rise), and how many match.

    Filtering, ordering and the page itself come from an in-memory index of the snapshot built
    once per process and publish (~2 ms for 100,000 children, no query per request)."""
    idx = rm.frame("analysts", "ranked_index", _INDEX_SQL)
    mask = None

    def both(m):
        return m if mask is None else mask & m

    if f.band:
        mask = both(idx["band"].to_numpy() == f.band)
    if f.ward:
        mask = both(idx["ward_code"].to_numpy() == f.ward)
    if f.age_band:
        mask = both(idx["age_band"].to_numpy() == f.age_band)
    if f.agency:
        mask = both(idx[f"has_{f.agency}"].to_numpy(dtype=bool))
    if f.rising:
        mask = both(idx["score_change"].fillna(0).to_numpy() > 0)
    if f.q:
        mask = both(idx["child_id"].to_numpy() == f.q)
    sel = idx if mask is None else idx[mask]
    total = len(sel)
    if f.sort == "change":
        sel = sel.sort_values(["score_change", "rank"], ascending=[False, True], na_position="last")
    start = (f.page - 1) * page_size
    page = sel.iloc[start : start + page_size][_ROW_COLUMNS]
    rows = []
    for r in page.to_dict("records"):
        change = r["score_change"]
        r["score_change"] = None if change != change else change  # NaN -> None
        r["reasons_text"] = [t for t in (r.pop("reason_1"), r.pop("reason_2")) if t]
        r["band_label"] = BANDS.get(r["band"], r["band"])
        r["score_text"] = f"{r['score']:.3f}"
        r["change_text"] = "new" if r["score_change"] is None else f"{r['score_change']:+.3f}"
        rows.append(r)
    return rows, total


def warm() -> None:
    """Build the list index and ward list now (a server worker calls this at start)."""
    try:
        rm.frame("analysts", "ranked_index", _INDEX_SQL)
        wards()
    except rm.SnapshotUnavailable:
        pass


def unscored_search(child_id: str) -> dict | None:
    return rm.one("analysts", "SELECT * FROM children WHERE child_id = ?", [child_id])


def wards() -> list[dict]:
    df = rm.frame(
        "analysts",
        "wards",
        "SELECT ward_code, any_value(ward_name) AS ward_name FROM children "
        "WHERE ward_code IS NOT NULL GROUP BY ward_code ORDER BY ward_name",
    )
    return df.to_dict("records")


def child(child_id: str) -> dict | None:
    """The child's attributes and current score (None when the id is not in the snapshot)."""
    c = rm.one("analysts", "SELECT * FROM children WHERE child_id = ?", [child_id])
    if c is None:
        return None
    s = rm.one("analysts", "SELECT * FROM scores WHERE child_id = ?", [child_id])
    if s is not None:
        s["reasons"] = parse_reasons(s["reasons"])
        s["band_label"] = BANDS.get(s["band"], s["band"])
    c["score"] = s
    c["agency_list"] = [a for a in (c.get("agencies") or "").split(",") if a]
    return c


def timeline(child_id: str) -> list[dict]:
    rows = rm.query(
        "analysts",
        "SELECT agency, CAST(event_month AS DATE) AS month, event_type, value, match_probability "
        "FROM timeline WHERE child_id = ? ORDER BY event_month, agency, event_type",
        [child_id],
    )
    for r in rows:
        r["event_label"] = EVENT_LABELS.get(r["event_type"], r["event_type"])
        r["agency_label"] = AGENCY_NAMES.get(r["agency"], r["agency"])
        if r["event_type"] == "attendance" and r["value"] is not None:
            r["value_text"] = f"{r['value']:.0f}%"
        elif r["event_type"] == "placement_start" and r["value"] is not None:
            r["value_text"] = PLACEMENT_NAMES.get(int(r["value"]), f"code {r['value']:g}")
        elif r["value"] is not None:
            r["value_text"] = f"{r['value']:g}"
        else:
            r["value_text"] = ""
    return rows


def score_history(child_id: str) -> list[dict]:
    """The child's scores at earlier scoring dates (empty for a snapshot before schema 1.2)."""
    if not rm.has_table("analysts", "score_history"):
        return []
    return rm.query(
        "analysts",
        "SELECT as_of, score, rank, model_version FROM score_history WHERE child_id = ? "
        "ORDER BY as_of",
        [child_id],
    )


def score_counts() -> dict[str, Any]:
    """Scored children per band, the score histogram (20 bins on a log scale of odds is hard to
    read; plain 0.01-wide bins up to the 99th percentile, then one open bin)."""
    by_band = rm.query(
        "analysts", "SELECT band, count(*) AS n FROM scores GROUP BY band ORDER BY band"
    )
    hist = rm.query(
        "analysts",
        "WITH b AS (SELECT least(floor(score * 50), 49)::INT AS bin FROM scores) "
        "SELECT bin, count(*) AS n FROM b GROUP BY bin ORDER BY bin",
    )
    return {"by_band": by_band, "hist": hist}


def models() -> list[dict]:
    rows = rm.query("analysts", "SELECT * FROM models ORDER BY created_at DESC")
    for r in rows:
        r["gate_reasons"] = json.loads(r["gate_reasons"]) if r.get("gate_reasons") else []
        raw = r.get("calibration_deciles")
        r["calibration_deciles"] = json.loads(raw) if isinstance(raw, str) else (raw or [])
    return rows


def model(version: str) -> dict | None:
    for m in models():
        if m["version"] == version:
            return m
    return None


def link_queue(status: str, page: int, page_size: int) -> tuple[list[dict], int]:
    """Pairs in the clerical review queue (pending or decided at the linkage unit)."""
    if not rm.has_table("analysts", "link_review"):
        return [], 0
    where = "decision IS NULL" if status == "pending" else "decision IS NOT NULL"
    total = rm.scalar("analysts", f"SELECT count(*) FROM link_review WHERE {where}")
    rows = rm.query(
        "analysts",
        f"SELECT * FROM link_review WHERE {where} ORDER BY rank LIMIT ? OFFSET ?",
        [page_size, (page - 1) * page_size],
    )
    for r in rows:
        r["evidence"] = _evidence(r.get("evidence_json"))
    return rows, int(total or 0)


def link_pair(pair_id: str) -> dict | None:
    if not rm.has_table("analysts", "link_review"):
        return None
    r = rm.one("analysts", "SELECT * FROM link_review WHERE pair_id = ?", [pair_id])
    if r is not None:
        r["evidence"] = _evidence(r.get("evidence_json"))
    return r


def _evidence(raw: Any) -> list[dict]:
    if not raw:
        return []
    items = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(items, dict):
        return []
    return [
        {"comparison": name, "label": v.get("level", ""), "weight": v.get("weight")}
        for name, v in items.items()
        if isinstance(v, dict)
    ]
