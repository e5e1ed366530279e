"""Analysts' pages: the ranked list, a child's page, review decisions, judge-first, requests for
identification, the model registry and cards.

Every child-level view, search and decision is written to the audit log; a child page shows the
score only after the analyst's own view is recorded when judge-first mode is on (the Allegheny
lesson: a score seen first anchors the judgement it was meant to inform).
"""

from __future__ import annotations

import math
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from dashboard import audit, charts, queries
from dashboard import readmodels as rm
from dashboard.forms import DecisionForm, IdentificationForm, JudgeFirstForm
from dashboard.models import (
    IdentificationRequest,
    JudgeFirstView,
    Preference,
    ReviewDecision,
)
from dashboard.roles import role_required


def _report_errors(request: HttpRequest, form) -> None:
    """A refused form's errors as messages on the child page it redirects back to."""
    for errors in form.errors.values():
        for e in errors:
            messages.error(request, e)


def _judge_first(request: HttpRequest) -> bool:
    pref = Preference.objects.filter(user=request.user).first()
    return bool(pref and pref.judge_first)


@role_required("children")
def children(request: HttpRequest) -> HttpResponse:
    f = queries.ListFilters.parse(request.GET)
    judge_first = _judge_first(request)
    manifest = rm.manifest("analysts")
    if judge_first:
        f.sort = "rank"
    rows, total = queries.ranked(f, settings.PAGE_SIZE)
    if judge_first:
        # scores hidden: the page's children in child-id order, so the order tells nothing
        rows = sorted(rows, key=lambda r: r["child_id"])
    wards = queries.wards()
    n_scored = manifest["tables"].get("scores", 0)
    for e in f.errors:
        messages.error(request, e)
    pages = max(1, math.ceil(total / settings.PAGE_SIZE))
    audit.record(
        request,
        "search" if f.q else "list",
        target=f.q,
        filters=f.active(),
        page=f.page,
        results=total,
    )
    unscored = None
    if f.q and total == 0:
        unscored = queries.unscored_search(f.q)
    return render(
        request,
        "dashboard/children.html",
        {
            "rows": rows,
            "total": total,
            "f": f,
            "pages": pages,
            "prev_q": f.as_query(page=f.page - 1) if f.page > 1 else None,
            "next_q": f.as_query(page=f.page + 1) if f.page < pages else None,
            "bands": queries.BANDS,
            "age_bands": queries.AGE_BANDS,
            "agencies": queries.AGENCY_NAMES,
            "wards": wards,
            "judge_first": judge_first,
            "manifest": manifest,
            "n_scored": n_scored,
            "unscored": unscored,
        },
    )


@role_required("children")
@require_POST
def judge_first_mode(request: HttpRequest) -> HttpResponse:
    pref, _ = Preference.objects.get_or_create(user=request.user)
    pref.judge_first = request.POST.get("on") == "1"
    pref.save()
    audit.record(request, "judge_first_mode", on=pref.judge_first)
    return redirect("children")


@role_required("children")
def child(request: HttpRequest, child_id: str) -> HttpResponse:
    if not queries.CHILD_ID.fullmatch(child_id):
        raise Http404("no such child")
    manifest = rm.manifest("analysts")
    c = queries.child(child_id)
    events = queries.timeline(child_id) if c else []
    history = queries.score_history(child_id) if c else []
    if c is None:
        audit.record(request, "view_child", target=child_id, status=404, found=False)
        raise Http404("no such child")
    publish_id = manifest["publish_id"]
    own_view = JudgeFirstView.objects.filter(
        child_id=child_id, analyst=request.user, publish_id=publish_id
    ).first()
    hide_score = _judge_first(request) and own_view is None and c["score"] is not None
    audit.record(
        request,
        "view_child",
        target=child_id,
        score_shown=not hide_score and c["score"] is not None,
        publish_id=publish_id,
    )
    model = queries.model(c["score"]["model_version"]) if c["score"] else None
    by_agency: dict[str, int] = {}
    for e in events:
        by_agency[e["agency"]] = by_agency.get(e["agency"], 0) + 1
    return render(
        request,
        "dashboard/child.html",
        {
            "c": c,
            "events": events,
            "by_agency": by_agency,
            "timeline_svg": charts.timeline_chart("tl", events, list(queries.AGENCIES)),
            "history": history,
            "history_svg": charts.bar_chart(
                "hist",
                "Score at each scoring date",
                [f"{h['as_of']:%b %Y}" for h in history],
                [float(h["score"]) for h in history],
                y_label="probability",
                x_label="scoring date",
                height=200,
                every=max(1, len(history) // 8),
            )
            if len(history) > 1 and not hide_score
            else "",
            "hide_score": hide_score,
            "own_view": own_view,
            "model": model,
            "decision_form": DecisionForm(),
            "judge_form": JudgeFirstForm(),
            "id_form": IdentificationForm(),
            "decisions": ReviewDecision.objects.filter(child_id=child_id).select_related("analyst")[
                :20
            ],
            "requests": IdentificationRequest.objects.filter(child_id=child_id)[:10],
            "manifest": manifest,
        },
    )


def _current(child_id: str) -> tuple[dict, dict]:
    manifest = rm.manifest("analysts")
    c = queries.child(child_id)
    if c is None:
        raise Http404("no such child")
    return c, manifest


@role_required("children")
@require_POST
def record_view(request: HttpRequest, child_id: str) -> HttpResponse:
    """Judge-first: the analyst's own view, recorded before the score is shown."""
    c, manifest = _current(child_id)
    form = JudgeFirstForm(request.POST)
    if not form.is_valid():
        _report_errors(request, form)
        return redirect("child", child_id=child_id)
    v = form.save(commit=False)
    v.child_id, v.analyst, v.publish_id = child_id, request.user, manifest["publish_id"]
    v.save()
    audit.record(request, "judge_first_view", target=child_id, concern=v.concern, view_id=v.pk)
    messages.success(request, "Your view is recorded. The score is now shown.")
    return redirect("child", child_id=child_id)


@role_required("children")
@require_POST
def decide(request: HttpRequest, child_id: str) -> HttpResponse:
    c, manifest = _current(child_id)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        _report_errors(request, form)
        return redirect("child", child_id=child_id)
    d = form.save(commit=False)
    d.child_id, d.analyst, d.publish_id = child_id, request.user, manifest["publish_id"]
    s = c["score"]
    if s is not None:
        d.score, d.rank, d.band = s["score"], s["rank"], s["band"]
        d.model_version, d.as_of = s["model_version"], str(s["as_of"])
    d.judged_first = JudgeFirstView.objects.filter(
        child_id=child_id, analyst=request.user, publish_id=manifest["publish_id"]
    ).first()
    if _judge_first(request) and d.judged_first is None and s is not None:
        messages.error(request, "Judge-first mode: record your own view before deciding.")
        return redirect("child", child_id=child_id)
    d.save()
    audit.record(
        request,
        "decision",
        target=child_id,
        decision=d.decision,
        decision_id=d.pk,
        score=d.score,
        model_version=d.model_version,
    )
    messages.success(request, f"Decision recorded: {d.get_decision_display()}.")
    return redirect("child", child_id=child_id)


@role_required("children")
@require_POST
def request_identification(request: HttpRequest, child_id: str) -> HttpResponse:
    c, _ = _current(child_id)
    form = IdentificationForm(request.POST)
    if not form.is_valid():
        _report_errors(request, form)
        return redirect("child", child_id=child_id)
    agencies = ",".join(c["agency_list"])
    r = IdentificationRequest.objects.create(
        child_id=child_id,
        requested_by=request.user,
        purpose=form.cleaned_data["purpose"],
        agencies=agencies,
    )
    audit.record(
        request, "identification_request", target=child_id, request_id=r.pk, agencies=agencies
    )
    names = ", ".join(queries.AGENCY_NAMES.get(a, a) for a in c["agency_list"])
    messages.success(
        request,
        f"Request {r.pk} recorded for {names}. The app does not identify children: the agencies "
        "holding the records answer it under your council's information-sharing agreement.",
    )
    return redirect("child", child_id=child_id)


@role_required("children")
def overview(request: HttpRequest) -> HttpResponse:
    """Score distribution and the current model's headline figures."""
    counts = queries.score_counts()
    models = queries.models()
    manifest = rm.manifest("analysts")
    current = next((m for m in models if m["is_current"]), None)
    deciles = (current or {}).get("calibration_deciles") or []
    calibration_svg = (
        charts.calibration_chart(
            "cal",
            f"Calibration of model {current['version']} by tenth of scores",
            [d["mean_predicted"] for d in deciles],
            [d["observed_rate"] for d in deciles],
        )
        if deciles
        else ""
    )
    hist = {r["bin"]: r["n"] for r in counts["hist"]}
    last = max(hist, default=0)
    labels = [f"{b * 2}%" for b in range(last + 1)]
    values = [hist.get(b, 0) for b in range(last + 1)]
    svg = charts.bar_chart(
        "dist",
        "Children by score",
        labels,
        values,
        y_label="children",
        x_label="score (2-point bins, lower edge)",
        every=max(1, len(labels) // 10),
    )
    audit.record(request, "view_overview")
    return render(
        request,
        "dashboard/overview.html",
        {
            "svg": svg,
            "rows": list(zip(labels, values, strict=True)),
            "by_band": counts["by_band"],
            "models": models,
            "manifest": manifest,
            "bands": queries.BANDS,
            "calibration_svg": calibration_svg,
            "deciles": deciles,
            "current": current,
        },
    )


@role_required("models")
def models_page(request: HttpRequest) -> HttpResponse:
    models = queries.models()
    return render(request, "dashboard/models.html", {"models": models})


@role_required("models")
def model_card(request: HttpRequest, version: str) -> HttpResponse:
    """The model card (HTML written by the pipeline), served from the model registry only."""
    m = queries.model(version)
    if m is None or not m.get("card_path"):
        raise Http404("no card")
    path = Path(m["card_path"]).resolve()
    root = Path(settings.MODELS_DIR).resolve()
    if root not in path.parents or not path.is_file():
        raise Http404("no card")
    audit.record(request, "view_model_card", target=version)
    response = FileResponse(path.open("rb"), content_type="text/html; charset=utf-8")
    # the card is a self-contained page with its own styles: allow them, still no script
    response["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
    )
    return response
