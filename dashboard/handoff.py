"""The hand-off of link decisions to the linkage unit: the app never writes the warehouse.

Owns the decisions file (`link_decisions_<UTC time>_<decision id>.csv`, header
`decision_id,pair_id,decision,reviewer,reason,decided_at`, docs/linkage.md "Decisions from the
dashboard"): one file per decision, written atomically into `settings.LINK_DECISIONS_OUTBOX`
and, in the embedded default, copied atomically into the linkage unit's inbox
(`settings.LINK_DECISIONS_INBOX`), where the next link run imports it.  In a deployment the
outbox is carried to the linkage unit by the organisations' secure file exchange instead.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from dashboard.files import write_atomic
from dashboard.models import LinkDecision

HEADER = ("decision_id", "pair_id", "decision", "reviewer", "reason", "decided_at")
#: the linkage unit takes reviewer names of at most this many characters (linkage.review)
REVIEWER_MAX = 80


def reviewer_name(username: str) -> str:
    """The user name as the linkage unit records it: as is when it fits, else shortened with a
    hash of the whole name so that two long names stay distinct."""
    if len(username) <= REVIEWER_MAX:
        return username
    import hashlib

    digest = hashlib.sha256(username.encode()).hexdigest()[:12]
    return f"{username[: REVIEWER_MAX - 13]}~{digest}"


def write(decision: LinkDecision) -> Path:
    """Write one decision's file to the outbox (and deliver it in the embedded default)."""
    outbox = Path(settings.LINK_DECISIONS_OUTBOX)
    stamp = decision.decided_at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S")
    name = f"link_decisions_{stamp}_{decision.decision_id}.csv"
    buffer = io.StringIO(newline="")
    w = csv.writer(buffer)
    w.writerow(HEADER)
    w.writerow(
        [
            decision.decision_id,
            decision.pair_id,
            decision.decision,
            reviewer_name(decision.reviewer.get_username()),
            " ".join(decision.reason.split()),
            decision.decided_at.astimezone(dt.UTC).isoformat(timespec="seconds"),
        ]
    )
    data = buffer.getvalue().encode("utf-8")
    path = write_atomic(outbox / name, data)
    if settings.LINK_DECISIONS_INBOX:
        write_atomic(Path(settings.LINK_DECISIONS_INBOX) / name, data)
    decision.exported_file = name
    decision.exported_at = timezone.now()
    decision.save(update_fields=["exported_file", "exported_at"])
    return path
