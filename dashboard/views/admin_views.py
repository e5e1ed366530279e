"""Admins' pages: the audit log (read-only, filterable) and its CSV export, and the users and
roles list (changes go through Django's admin, itself behind the admin role and the second
factor).  Exporting the log is itself audited."""

from __future__ import annotations

import csv
import json

from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from dashboard import audit
from dashboard.models import AuditEntry
from dashboard.roles import ROLE_HELP, role_required, roles_of

FILTERS = ("username", "action", "target")


def _filtered(request: HttpRequest):
    qs = AuditEntry.objects.all()
    for key in FILTERS:
        value = request.GET.get(key, "").strip()
        if value:
            qs = qs.filter(**{key: value})
    return qs


@role_required("audit")
def audit_log(request: HttpRequest) -> HttpResponse:
    qs = _filtered(request)
    page = Paginator(qs, 100).get_page(request.GET.get("page"))
    audit.record(
        request,
        "view_audit_log",
        filters={k: request.GET.get(k) for k in FILTERS if request.GET.get(k)},
    )
    actions = AuditEntry.objects.order_by().values_list("action", flat=True).distinct()
    return render(
        request,
        "dashboard/audit_log.html",
        {
            "page": page,
            "actions": sorted(set(actions)),
            "values": {k: request.GET.get(k, "") for k in FILTERS},
            "query": "&".join(f"{k}={request.GET[k]}" for k in FILTERS if request.GET.get(k)),
        },
    )


class _Echo:
    def write(self, value):
        return value


@role_required("audit")
def audit_export(request: HttpRequest) -> StreamingHttpResponse:
    qs = _filtered(request).order_by("at", "id")
    audit.record(request, "export_audit_log", rows=qs.count())
    writer = csv.writer(_Echo())
    header = [
        "id",
        "at",
        "username",
        "role",
        "action",
        "target",
        "detail",
        "ip_address",
        "path",
        "status",
    ]

    def rows():
        yield writer.writerow(header)
        for e in qs.iterator(chunk_size=2000):
            yield writer.writerow(
                [
                    e.id,
                    e.at.isoformat(),
                    e.username,
                    e.role,
                    e.action,
                    e.target,
                    json.dumps(e.detail, sort_keys=True),
                    e.ip_address or "",
                    e.path,
                    e.status or "",
                ]
            )

    stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="joinedup-audit-{stamp}.csv"'
    return response


@role_required("users")
def users(request: HttpRequest) -> HttpResponse:
    from django_otp.plugins.otp_totp.models import TOTPDevice

    with_mfa = set(TOTPDevice.objects.filter(confirmed=True).values_list("user_id", flat=True))
    people = [
        {"u": u, "roles": sorted(roles_of(u)), "mfa": u.pk in with_mfa}
        for u in get_user_model().objects.order_by("username").prefetch_related("groups")
    ]
    audit.record(request, "view_users")
    return render(request, "dashboard/users.html", {"people": people, "role_help": ROLE_HELP})
