"""Writing the audit log: every child-level view, search and decision, every denial and login.

Owns `record` (one append-only `AuditEntry` per call: who, when, what, from where) and the
sign-in signal handlers.  An entry names a child id, a pair id or a page, never a search's
results; a search term is kept only when it is a child id (the thing searched for), else only
its length.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from dashboard.models import AuditEntry
from dashboard.roles import roles_of


def client_ip(request: HttpRequest | None) -> str | None:
    """The client's address: REMOTE_ADDR, or the proxy's forwarded address when the app is
    configured to sit behind `AXES_IPWARE_PROXY_COUNT` trusted proxies."""
    if request is None:
        return None
    meta = request.META
    if settings.AXES_IPWARE_PROXY_COUNT and meta.get("HTTP_X_FORWARDED_FOR"):
        hops = [h.strip() for h in meta["HTTP_X_FORWARDED_FOR"].split(",") if h.strip()]
        if len(hops) >= settings.AXES_IPWARE_PROXY_COUNT:
            return hops[-settings.AXES_IPWARE_PROXY_COUNT]
    return meta.get("REMOTE_ADDR") or None


def record(
    request: HttpRequest | None,
    action: str,
    target: str = "",
    *,
    username: str | None = None,
    status: int | None = None,
    **detail: Any,
) -> AuditEntry:
    """Append one audit entry for `request`'s user (or `username` when nobody is logged in)."""
    user = getattr(request, "user", None) if request is not None else None
    if username is None:
        username = user.get_username() if user is not None and user.is_authenticated else ""
    roles = sorted(roles_of(user)) if user is not None else []
    meta = request.META if request is not None else {}
    return AuditEntry.objects.create(
        username=username[:150],
        role=",".join(roles)[:20],
        action=action[:40],
        target=str(target)[:200],
        detail=detail,
        ip_address=client_ip(request),
        user_agent=str(meta.get("HTTP_USER_AGENT", ""))[:300],
        path=(request.path if request is not None else "")[:300],
        status=status,
    )


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs) -> None:
    import time

    if request is not None and hasattr(request, "session"):
        request.session["joinedup_login_at"] = time.time()
        request.session["joinedup_seen_at"] = time.time()
    record(request, "login", username=user.get_username(), backend=getattr(user, "backend", ""))


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs) -> None:
    if user is not None:
        record(request, "logout", username=user.get_username())


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs) -> None:
    record(request, "login_failed", username=str(credentials.get("username", ""))[:150])


def _locked_out(sender, request=None, username=None, ip_address=None, **kwargs) -> None:
    record(request, "locked_out", username=str(username or "")[:150], status=429)


def connect_axes() -> None:
    """Record django-axes lockouts (called from the app's ready())."""
    from axes.signals import user_locked_out

    user_locked_out.connect(_locked_out, dispatch_uid="joinedup_locked_out")
