"""Error pages: 403 (with an audit entry for a failed CSRF check), 404, 500, and 503 when a read
model cannot be read."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard import audit


def _page(request: HttpRequest, title: str, message: str, status: int) -> HttpResponse:
    return render(
        request, "dashboard/error.html", {"title": title, "message": message}, status=status
    )


def snapshot_unavailable(request: HttpRequest, exc: Exception) -> HttpResponse:
    """A read model is not published yet or has a schema this app does not read."""
    return _page(request, "No published data", str(exc), 503)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    audit.record(request, "csrf_failed", target=request.path, status=403)
    return _page(
        request,
        "Form expired",
        "The form was too old or came from elsewhere. Go back, reload the page and try again.",
        403,
    )


def forbidden(request: HttpRequest, exception=None) -> HttpResponse:
    return _page(
        request,
        "Not for your role",
        "Your role does not open this page. The request has been recorded.",
        403,
    )


def not_found(request: HttpRequest, exception=None) -> HttpResponse:
    return _page(
        request,
        "Not found",
        "There is no such page, or the record is not in the current snapshot.",
        404,
    )


def server_error(request: HttpRequest) -> HttpResponse:
    return _page(
        request,
        "Something went wrong",
        "The error has been logged. Try again, or tell your system administrator.",
        500,
    )
