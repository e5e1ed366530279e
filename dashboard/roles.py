"""Roles and the server-side permission rules.

Owns the four roles (Django groups `analyst`, `planner`, `engineer`, `admin`), which pages each
may open (`ACCESS`), the `role_required` decorator every view uses, and the template context that
shows a user their own roles.  A request for a page the user's roles do not open gets 403 and an
audit entry (`denied`); hiding a link is never the control.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.models import Group
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

ROLES: tuple[str, ...] = ("analyst", "planner", "engineer", "admin")
ROLE_HELP = {
    "analyst": "reviews children: ranked list, child pages, decisions, the link queue",
    "planner": "service planning: care demand, scenarios and exports (aggregates only)",
    "engineer": "pipeline health: runs, validation, quarantine, linkage quality, models",
    "admin": "users and roles, the audit log and its exports",
}
#: which roles open which area of the app (checked on the server by `role_required`)
ACCESS: dict[str, tuple[str, ...]] = {
    "children": ("analyst",),
    "link_queue": ("analyst",),
    "models": ("analyst", "engineer"),
    "pipeline": ("engineer",),
    "planning": ("planner",),
    "audit": ("admin",),
    "users": ("admin",),
}


def roles_of(user) -> set[str]:
    """The roles a user holds (empty for anonymous or inactive users)."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return set()
    cached = getattr(user, "_joinedup_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        user._joinedup_roles = cached
    return cached


def second_factor_done(request: HttpRequest) -> bool:
    """The user verified a TOTP code this session, or signed in through the council's provider
    (whose own second factor stands in)."""
    return bool(request.session.get("joinedup_sso")) or request.user.is_verified()


def may(user, area: str) -> bool:
    """Whether the user's roles open `area` (a key of `ACCESS`)."""
    return bool(roles_of(user) & set(ACCESS[area]))


def role_required(area: str) -> Callable:
    """View decorator: log in first; then 403 (and an audit entry) unless a role opens `area`."""
    if area not in ACCESS:
        raise ValueError(f"unknown area {area!r}")

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not may(request.user, area):
                from dashboard import audit

                audit.record(
                    request,
                    "denied",
                    target=request.path,
                    status=403,
                    area=area,
                    needs=list(ACCESS[area]),
                )
                raise PermissionDenied(f"your role does not open {area}")
            return view(request, *args, **kwargs)

        wrapped.joinedup_area = area  # route tests check every view declares one
        return wrapped

    return decorate


def ensure_groups() -> None:
    """Create the four role groups if missing (idempotent)."""
    for role in ROLES:
        Group.objects.get_or_create(name=role)


def set_role(user, role: str) -> None:
    """Give a user exactly one role; admins also get the Django admin (staff, superuser)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    ensure_groups()
    user.groups.set([Group.objects.get(name=role)])
    user.is_staff = role == "admin"
    user.is_superuser = role == "admin"
    user.save(update_fields=["is_staff", "is_superuser"])
    user._joinedup_roles = {role}


def context(request: HttpRequest) -> dict:
    """Template context: the user's roles and which areas they open (for navigation only)."""
    user = getattr(request, "user", None)
    roles = roles_of(user) if user is not None else set()
    return {
        "user_roles": sorted(roles),
        "nav": {area: bool(roles & set(allowed)) for area, allowed in ACCESS.items()},
    }
