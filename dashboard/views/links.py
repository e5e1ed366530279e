"""The clerical review queue of uncertain links, worked by analysts.

Owns the queue page (pairs nearest the threshold first, evidence per comparison as labels and
weights: never a token or a value), the pair page, and recording a decision, which is written as
a file for the linkage unit (`dashboard.handoff`): the app never writes the warehouse, and the
decision takes effect at the linkage unit's next run.
"""

from __future__ import annotations

import math
import re
import secrets

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from dashboard import audit, handoff, queries
from dashboard import readmodels as rm
from dashboard.forms import LinkDecisionForm
from dashboard.models import LinkDecision
from dashboard.roles import role_required

PAIR_ID = re.compile(r"^R[0-9a-f]{12}$")


@role_required("link_queue")
def queue(request: HttpRequest) -> HttpResponse:
    status = "decided" if request.GET.get("status") == "decided" else "pending"
    try:
        page = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        page = 1
    rows, total = queries.link_queue(status, page, settings.PAGE_SIZE)
    available = rm.has_table("analysts", "link_review")
    mine = {
        d.pair_id: d for d in LinkDecision.objects.filter(pair_id__in=[r["pair_id"] for r in rows])
    }
    for r in rows:
        r["app_decision"] = mine.get(r["pair_id"])
    pages = max(1, math.ceil(total / settings.PAGE_SIZE))
    audit.record(request, "view_link_queue", queue=status, page=page, results=total)
    return render(
        request,
        "dashboard/link_queue.html",
        {
            "rows": rows,
            "total": total,
            "status": status,
            "page": page,
            "pages": pages,
            "available": available,
        },
    )


@role_required("link_queue")
def pair(request: HttpRequest, pair_id: str) -> HttpResponse:
    if not PAIR_ID.fullmatch(pair_id):
        raise Http404("no such pair")
    p = queries.link_pair(pair_id)
    if p is None:
        raise Http404("no such pair")
    audit.record(
        request, "view_link_pair", target=pair_id, child_ids=[p["child_id_l"], p["child_id_r"]]
    )
    form = LinkDecisionForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            d = form.save(commit=False)
            d.pair_id, d.reviewer = pair_id, request.user
            d.decision_id = "D" + secrets.token_hex(8)
            d.match_probability = p["match_probability"]
            d.save()
            path = handoff.write(d)
            audit.record(
                request,
                "link_decision",
                target=pair_id,
                decision=d.decision,
                decision_id=d.decision_id,
                file=path.name,
            )
            messages.success(
                request,
                f"Recorded: {d.get_decision_display()}. It reaches the linkage unit as "
                f"{path.name} and applies at its next run.",
            )
            return redirect("link_queue")
    return render(
        request,
        "dashboard/link_pair.html",
        {
            "p": p,
            "form": form,
            "history": LinkDecision.objects.filter(pair_id=pair_id).select_related("reviewer"),
        },
    )
