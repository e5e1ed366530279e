"""Planners' pages: care demand by month (both views side by side, what happened, by age band and
area, children in care, backtests), scenarios with costs (run, save, reopen) and the CSV and
Excel exports of exactly what a page shows.

Reads the planners' snapshot only (`dashboard.planning`): aggregates whose counts were protected
by disclosure control at publish.  Scenario results are means and intervals of simulations over
the whole county; a pooled small placement group is never shown on its own.  Every page view,
scenario run, save and export is audited.
"""

from __future__ import annotations

import csv
import io
from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from dashboard import audit, planning
from dashboard import readmodels as rm
from dashboard.charts_forecast import fan_chart
from dashboard.forms import ScenarioForm
from dashboard.models import SavedScenario
from dashboard.roles import role_required
from forecast.scenarios import DEFAULT_COSTS

EXPORT_FORMATS = ("csv", "xlsx")


def _charts(forecast: list[dict], monthly: list[dict], quarterly: list[dict]) -> list[dict]:
    out = []
    for outcome, label in planning.OUTCOMES.items():
        views = {
            v: [r for r in forecast if r["outcome"] == outcome and r["level"] == "total"
                and r["view"] == v]
            for v in ("top_down", "bottom_up")
        }  # fmt: skip
        views = {k: v for k, v in views.items() if v}
        history = [
            {"month": r["month"], "value": None if r["suppressed"] else r["children"]}
            for r in monthly
            if r["outcome"] == outcome
        ]
        quarters = [
            {"quarter": r["quarter"], "value": None if r["suppressed"] else r["children"] / 3}
            for r in quarterly
            if r["outcome"] == outcome and r["age_band"] == "all"
        ]
        months = sorted({r["month"] for v in views.values() for r in v})
        side = [
            {
                "month": m,
                **{
                    v: next((r for r in rows if r["month"] == m), None) for v, rows in views.items()
                },
            }
            for m in months
        ]
        out.append(
            {
                "outcome": outcome,
                "label": label,
                "svg": fan_chart(
                    f"fc-{outcome}",
                    f"{label}: what happened and the next 12 months",
                    history,
                    views,
                    y_label="children a month",
                    quarters=quarters,
                ),  # fmt: skip
                "side": side,
                "has_bottom_up": "bottom_up" in views,
            }
        )
    return out


def _care_chart(snap: planning.Snapshot) -> dict:
    observed, forecast = snap.care
    history = [
        {"month": r["month"], "value": None if r["suppressed"] else r["children"]}
        for r in observed
        if r["placement_kind"] == "all"
    ]
    total = [r for r in forecast if r["placement_kind"] == "all"]
    return {
        "svg": fan_chart(
            "fc-care",
            "Children in care at the month end: what happened and the forecast",
            history,
            {"top_down": total},
            y_label="children in care",
        )  # fmt: skip
        if history or total
        else "",
    }


def _loses(backtest: list[dict]) -> list[str]:
    """Plain statements of every view that loses to the seasonal-naive baseline somewhere."""
    out = []
    for view in ("top_down", "bottom_up"):
        for outcome, label in planning.OUTCOMES.items():
            rows = [r for r in backtest if r["view"] == view and r["outcome"] == outcome]
            lost = [r["horizon"] for r in rows if r["beats_baseline"] is False]
            if lost:
                out.append(
                    f"The {planning.VIEW_NAMES[view].lower()} view of {label.lower()} loses to "
                    f"the seasonal-naive baseline at {len(lost)} of {len(rows)} horizons "
                    f"({', '.join(str(h) for h in lost)} months ahead)."
                )
    return out


@role_required("planning")
def overview(request: HttpRequest) -> HttpResponse:
    snap = planning.Snapshot()
    backtest = snap.backtest
    tables = planning.tables(snap)
    coverage = {}
    for r in backtest:
        if r["view"] in ("top_down", "bottom_up"):
            coverage.setdefault((r["view"], r["outcome"]), []).append(r["coverage_80"])
    audit.record(request, "view_planning", target="planning")
    return render(
        request,
        "dashboard/planning.html",
        {
            "charts": _charts(snap.forecast, snap.monthly, snap.quarterly),
            "care": _care_chart(snap),
            "views": planning.views_rows(),
            "tables": tables,
            "loses": _loses(backtest),
            "coverage": [
                {
                    "view": planning.VIEW_NAMES[v],
                    "outcome": planning.OUTCOMES[o],
                    "mean": sum(c) / len(c),
                    "within": sum(0.75 <= x <= 0.85 for x in c),
                    "n": len(c),
                }
                for (v, o), c in sorted(coverage.items())
            ],
            "manifest": rm.manifest("planners"),
            "threshold": _threshold(),
        },
    )


def _threshold() -> int:
    from django.conf import settings

    return int(settings.SMALL_NUMBER_THRESHOLD)


def _run(form: ScenarioForm) -> tuple[list[planning.Table], list[str]]:
    from forecast import scenarios

    inputs = planning.scenario_inputs()
    result = scenarios.run(inputs, form.scenario(), seed=0)
    shown = [k for k in inputs.stock_now if k != scenarios.POOLED]
    notes = list(result.notes)
    if scenarios.POOLED in inputs.stock_now:
        notes.append(
            "Placement kinds with small numbers are followed together and costed as 'other'; "
            "they are in the total only."
        )
    return planning.scenario_tables(result, shown), notes


@role_required("planning")
def scenario(request: HttpRequest) -> HttpResponse:
    """GET: run the scenario of the levers given (missing ones at their defaults); POST with a
    name: save it for this user and show it; `?saved=<id>` reopens one of the user's own."""
    saved = SavedScenario.objects.filter(owner=request.user)
    data = request.POST.dict() if request.method == "POST" else request.GET.dict()
    if "saved" in request.GET:
        mine = get_object_or_404(SavedScenario, pk=request.GET["saved"], owner=request.user)
        data = {**mine.params, "name": mine.name}
    # no levers given: the baseline, so the page opens with the forecast's costs
    form = ScenarioForm.with_defaults(data)
    tables, notes = [], []
    if form.is_valid():
        if request.method == "POST":  # save, then show it by GET (run there, once)
            name = form.cleaned_data["name"] or "Untitled scenario"
            SavedScenario.objects.update_or_create(
                owner=request.user, name=name, defaults={"params": form.params()}
            )
            audit.record(request, "save_scenario", target="planning", name=name)
            messages.success(request, f"Scenario “{name}” saved.")
            return redirect(f"{request.path}?{urlencode(form.params())}")
        tables, notes = _run(form)
        audit.record(request, "run_scenario", target="planning", levers=form.params())
    query = urlencode(form.params()) if form.is_valid() else ""
    return render(
        request,
        "dashboard/planning_scenario.html",
        {
            "form": form,
            "tables": tables,
            "notes": notes,
            "saved": saved,
            "query": query,
            "costs": [(k.replace("_", " "), c) for k, c in DEFAULT_COSTS.items()],
        },
    )


def _csv(tables: list[planning.Table]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    for i, t in enumerate(tables):
        if i:
            w.writerow([])
        w.writerow([t.title])
        w.writerow(t.columns)
        w.writerows(t.rows)
        if t.note:
            w.writerow([t.note])
    return buf.getvalue().encode("utf-8-sig")


def _xlsx(tables: list[planning.Table]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    wb.remove(wb.active)
    for t in tables:
        ws = wb.create_sheet(t.name[:31])
        ws.append([t.title])
        ws["A1"].font = Font(bold=True)
        ws.append(t.columns)
        for row in t.rows:
            ws.append(row)
        if t.note:
            ws.append([])
            ws.append([t.note])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


@role_required("planning")
def export(request: HttpRequest, name: str, fmt: str) -> HttpResponse:
    """A planner output as CSV or Excel: one of `planning.TABLES`, `all`, or `scenario` (the
    levers in the query string, as the scenario page links them)."""
    if fmt not in EXPORT_FORMATS:
        raise Http404("unknown format")
    if name == "scenario":
        form = ScenarioForm.with_defaults(request.GET.dict())
        if not form.is_valid():
            raise Http404("the scenario's levers are not valid")
        tables, _ = _run(form)
    elif name == "all":
        tables = list(planning.tables().values())
    elif name in planning.TABLES:
        tables = [planning.TABLES[name](planning.Snapshot())]
    else:
        raise Http404("unknown output")
    body = _csv(tables) if fmt == "csv" else _xlsx(tables)
    audit.record(request, "export_planning", target=name, format=fmt)
    kind = (
        "text/csv; charset=utf-8"
        if fmt == "csv"
        else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    response = HttpResponse(body, content_type=kind)
    response["Content-Disposition"] = f'attachment; filename="joinedup-{name}.{fmt}"'
    return response
