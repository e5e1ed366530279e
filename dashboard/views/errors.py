"""Error pages: 403 (with an audit entry for a failed CSRF check), 404, 500."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard import audit


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    audit.record(request, "csrf_failed", target=request.path, status=403)
    return render(
        request,
        "dashboard/error.html",
        {
            "title": "Form expired",
            "message": "The form was too old or came from elsewhere. Go back, reload the page and try again.",
        },
        status=403,
    )


def forbidden(request: HttpRequest, exception=None) -> HttpResponse:
    return render(
        request,
        "dashboard/error.html",
        {
            "title": "Not for your role",
            "message": "Your role does not open this page. The request has been recorded.",
        },
        status=403,
    )


def not_found(request: HttpRequest, exception=None) -> HttpResponse:
    return render(
        request,
        "dashboard/error.html",
        {
            "title": "Not found",
            "message": "There is no such page, or the record is not in the current snapshot.",
        },
        status=404,
    )


def server_error(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "dashboard/error.html",
        {
            "title": "Something went wrong",
            "message": "The error has been logged. Try again, or tell your system administrator.",
        },
        status=500,
    )
