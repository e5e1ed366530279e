"""Engineers' pages: recent runs and their stages, validation results (linking to Data Docs),
quarantine contents and reasons, linkage quality (with the linkage report), the model registry
with gate status and reasons.  Nothing here shows a child id or a cell value."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard import charts, engineering
from dashboard import readmodels as rm
from dashboard.roles import role_required

#: Reports the pipeline wrote (Data Docs, the linkage report with its inline Vega charts) run
#: their own inline scripts in a sandbox: an opaque origin without the app's cookies or pages,
#: and nothing loaded from anywhere else.
SANDBOXED_REPORT = (
    "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; frame-ancestors 'none'"
)


@role_required("pipeline")
def runs(request: HttpRequest) -> HttpResponse:
    runs = engineering.runs()
    trend = engineering.stage_trend()
    manifest = rm.manifest("engineers")
    svg = charts.bar_chart(
        "runs",
        "Pipeline run time",
        [str(t["run_id"])[-6:] for t in trend],
        [float(t["seconds"] or 0) for t in trend],
        y_label="seconds",
        x_label="run (last six characters of its id), oldest first",
        every=max(1, len(trend) // 8),
    )
    return render(
        request,
        "dashboard/runs.html",
        {"runs": runs, "svg": svg, "trend": trend, "manifest": manifest},
    )


@role_required("pipeline")
def validations(request: HttpRequest) -> HttpResponse:
    failed = request.GET.get("failed") == "1"
    rows = engineering.validations(failed_only=failed)
    return render(
        request,
        "dashboard/validations.html",
        {"rows": rows, "failed": failed, "data_docs": _data_docs_index() is not None},
    )


@role_required("pipeline")
def validation(request: HttpRequest, validation_id: str) -> HttpResponse:
    v = engineering.validation(validation_id)
    if v is None:
        raise Http404("no such validation")
    return render(
        request, "dashboard/validation.html", {"v": v, "data_docs": _data_docs_index() is not None}
    )


def _data_docs_index() -> Path | None:
    p = Path(settings.DATA_DOCS_DIR) / "index.html"
    return p if p.is_file() else None


@role_required("pipeline")
def data_docs(request: HttpRequest, path: str = "index.html") -> HttpResponse:
    """Great Expectations Data Docs, served read-only from the hub's validation outputs."""
    root = Path(settings.DATA_DOCS_DIR).resolve()
    target = (root / path).resolve()
    if root not in target.parents or not target.is_file():
        raise Http404("no such page")
    ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    response = FileResponse(target.open("rb"), content_type=ctype)
    response["Content-Security-Policy"] = SANDBOXED_REPORT
    return response


@role_required("pipeline")
def quarantine(request: HttpRequest) -> HttpResponse:
    q = engineering.quarantine()
    load = request.GET.get("load", "")
    rows = engineering.quarantined_rows(load) if load else []
    return render(request, "dashboard/quarantine.html", {"q": q, "load": load, "rows": rows})


@role_required("pipeline")
def linkage(request: HttpRequest) -> HttpResponse:
    quality = engineering.linkage_quality()
    loads = engineering.loads()
    headline_keys = [
        "records", "children", "threshold", "pairs_scored", "pairs_above_threshold",
        "truth.precision", "truth.recall", "truth.f1", "truth.twin_false_merges",
        "review.queued", "review.pending", "review.decisions", "review.model_agreement",
        "review.precision_on_reviewed", "review.recall_on_reviewed",
    ]  # fmt: skip
    headline = [(k, quality[k]) for k in headline_keys if k in quality]
    others = [(k, v) for k, v in quality.items() if k not in dict(headline)]
    report = Path(settings.LINKAGE_REPORT)
    return render(
        request,
        "dashboard/linkage.html",
        {"headline": headline, "others": others, "loads": loads, "report": report.is_file()},
    )


@role_required("pipeline")
def linkage_report(request: HttpRequest) -> HttpResponse:
    report = Path(settings.LINKAGE_REPORT)
    if not report.is_file():
        raise Http404("no linkage report")
    response = FileResponse(report.open("rb"), content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = SANDBOXED_REPORT
    return response


@role_required("pipeline")
def models(request: HttpRequest) -> HttpResponse:
    rows = engineering.models()
    return render(request, "dashboard/models.html", {"models": rows})
