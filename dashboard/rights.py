"""Subject access at the dashboard: what the app's own database holds about one child.

Owns `child_records` (decisions, judge-first views, identification requests and audit entries
naming the child) and `write_report` (JSON, mode 0600, `<home>/dashboard/rights/<id>.json`).
The hub's `joinedup rights access` answers for the warehouse and names the child id; this answers
for the app, which keeps its state apart (docs/dashboard.md, "Data-subject rights").  Every
request is itself audited.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings

from dashboard.files import write_atomic
from dashboard.models import AuditEntry, IdentificationRequest, JudgeFirstView, ReviewDecision


def child_records(child_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of the app's database about the child."""
    return {
        "decisions": [
            {"decision": d.decision, "reason": d.reason, "analyst": d.analyst.get_username(),
             "decided_at": d.decided_at, "score": d.score, "rank": d.rank, "band": d.band,
             "model_version": d.model_version, "as_of": d.as_of}
            for d in ReviewDecision.objects.filter(child_id=child_id).select_related("analyst")
        ],
        "judge_first_views": [
            {"concern": v.concern, "note": v.note, "analyst": v.analyst.get_username(),
             "recorded_at": v.recorded_at}
            for v in JudgeFirstView.objects.filter(child_id=child_id).select_related("analyst")
        ],
        "identification_requests": [
            {"purpose": r.purpose, "agencies": r.agencies,
             "requested_by": r.requested_by.get_username(), "requested_at": r.requested_at}
            for r in IdentificationRequest.objects.filter(child_id=child_id).select_related("requested_by")
        ],
        "audit_entries": [
            {"at": e.at, "username": e.username, "role": e.role, "action": e.action,
             "detail": e.detail}
            for e in AuditEntry.objects.filter(target=child_id).order_by("at", "id")
        ],
    }  # fmt: skip


def write_report(child_id: str, requested_by: str, request_id: str | None = None) -> dict:
    """Answer a subject access request for one child id: the report file and counts."""
    from dashboard import audit
    from dashboard.queries import CHILD_ID

    if not CHILD_ID.fullmatch(child_id):
        raise ValueError(
            "--child-id must be a pseudonymous child id (C followed by letters/digits)"
        )
    if not requested_by.strip():
        raise ValueError("--by must name who makes the request")
    request_id = request_id or "S" + secrets.token_hex(6)
    records = child_records(child_id)
    body = {"request_id": request_id, "child_id": child_id, **records}
    path = write_atomic(
        Path(settings.APP_DIR) / "rights" / f"{request_id}.json",
        json.dumps(body, indent=2, default=str).encode("utf-8"),
        mode=0o600,
    )
    counts = {k: len(v) for k, v in records.items()}
    audit.record(None, "subject_access", target=child_id, username=requested_by[:150],
                 request_id=request_id, counts=counts)  # fmt: skip
    return {"request_id": request_id, "report": str(path), "counts": counts}
