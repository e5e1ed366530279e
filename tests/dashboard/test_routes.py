"""Every permission rule, enforced on the server: each role against every page.

The expected status of each (role, page) comes from `dashboard.roles.ACCESS`, and the test also
checks that every route but sign-in, the second factor and the health check declares its area,
so a new page without a rule fails here.
"""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from dashboard.models import AuditEntry
from dashboard.roles import ACCESS, ROLES

#: views open without a role (they handle sign-in themselves)
OPEN = {"home", "health", "login", "logout", "mfa", "mfa_setup"}
CHILD = "C00001"
PAIR = "R000000000002"

#: one concrete GET path per routed page, and its area
PAGES = {
    "children": ("/children/", "children"),
    "overview": ("/children/overview/", "children"),
    "child": (f"/children/{CHILD}/", "children"),
    "link_queue": ("/links/", "link_queue"),
    "link_pair": (f"/links/{PAIR}/", "link_queue"),
    "models": ("/models/", "models"),
    "model_card": ("/models/v1/card/", "models"),
    "runs": ("/pipeline/runs/", "pipeline"),
    "validations": ("/pipeline/validations/", "pipeline"),
    "quarantine": ("/pipeline/quarantine/", "pipeline"),
    "linkage": ("/pipeline/linkage/", "pipeline"),
    "pipeline_models": ("/pipeline/models/", "pipeline"),
    "planning": ("/planning/", "planning"),
    "planning_scenario": ("/planning/scenario/?early_help_k=20&risk_reduction=10", "planning"),
    "planning_export": ("/planning/export/forecast.csv", "planning"),
    "audit_log": ("/admin-area/audit/", "audit"),
    "audit_export": ("/admin-area/audit/export.csv", "audit"),
    "users": ("/admin-area/users/", "users"),
}
POSTS = {
    "decide": (f"/children/{CHILD}/decide/", "children"),
    "record_view": (f"/children/{CHILD}/my-view/", "children"),
    "identify": (f"/children/{CHILD}/identify/", "children"),
    "judge_first_mode": ("/children/judge-first/", "children"),
}


def _named_patterns(resolver=None, out=None):
    out = {} if out is None else out
    for p in (resolver or get_resolver()).url_patterns:
        if isinstance(p, URLResolver):
            if p.app_name in ("admin", "joinedup_admin") or getattr(p, "namespace", None):
                continue
            _named_patterns(p, out)
        elif isinstance(p, URLPattern) and p.name:
            out[p.name] = p.callback
    return out


def test_every_route_declares_its_area():
    patterns = _named_patterns()
    for name, callback in patterns.items():
        if name in OPEN or name.startswith("oidc"):
            continue
        assert getattr(callback, "joinedup_area", None) in ACCESS, f"{name} has no role rule"
    tested = (
        set(PAGES) | set(POSTS) | {"validation", "data_docs", "data_docs_file", "linkage_report"}
    )
    missing = set(patterns) - OPEN - tested - {n for n in patterns if n.startswith("oidc")}
    assert not missing, f"routes without a permission test: {missing}"


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_each_role_opens_exactly_its_pages(role, as_role):
    client, user = as_role(role)
    for name, (path, area) in PAGES.items():
        response = client.get(path)
        allowed = role in ACCESS[area]
        if allowed:
            assert response.status_code == 200, (role, name, response.status_code)
        else:
            assert response.status_code == 403, (role, name, response.status_code)
    denied = AuditEntry.objects.filter(username=user.username, action="denied")
    n_denied = sum(1 for _, area in PAGES.values() if role not in ACCESS[area])
    assert denied.count() == n_denied
    assert all(e.status == 403 and e.role == role for e in denied)


@pytest.mark.django_db
@pytest.mark.parametrize("role", [r for r in ROLES if r != "analyst"])
def test_other_roles_cannot_post_child_decisions(role, as_role):
    client, user = as_role(role)
    for name, (path, _area) in POSTS.items():
        response = client.post(path, {"decision": "no_action", "reason": "a reason long enough"})
        assert response.status_code == 403, (role, name)
    assert not AuditEntry.objects.filter(action="decision").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["planner", "engineer"])
def test_planner_or_engineer_asking_for_a_child_page_is_refused_and_logged(role, as_role):
    client, user = as_role(role)
    response = client.get(f"/children/{CHILD}/")
    assert response.status_code == 403
    assert CHILD.encode() not in response.content
    entry = AuditEntry.objects.get(username=user.username, action="denied")
    assert entry.target == f"/children/{CHILD}/" and entry.role == role
    assert entry.ip_address == "127.0.0.1"


@pytest.mark.django_db
def test_anonymous_requests_go_to_sign_in(client):
    for path, _ in [*PAGES.values(), *POSTS.values()]:
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith(
            "/accounts/login/"
        ), path


@pytest.mark.django_db
def test_password_without_second_factor_reaches_nothing(client, make_user):
    user = make_user("analyst")
    client.force_login(user)  # password accepted, no TOTP verified
    for path, _ in PAGES.values():
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/mfa"), (
            path
        )


@pytest.mark.django_db
def test_a_user_without_a_role_sees_nothing(client, make_user):
    from tests.dashboard.conftest import sign_in

    user = make_user(None, username="norole")
    sign_in(client, user)
    assert client.get("/").status_code == 403
    for path, _ in PAGES.values():
        assert client.get(path).status_code == 403


@pytest.mark.django_db
def test_django_admin_needs_the_admin_role_and_second_factor(client, make_user):
    from tests.dashboard.conftest import sign_in

    engineer = make_user("engineer")
    sign_in(client, engineer)
    assert client.get("/admin/").status_code == 302  # sent to sign-in: not the admin role
    admin = make_user("admin")
    client.force_login(admin)
    assert client.get("/admin/").status_code == 302  # no second factor yet
    sign_in(client, admin)
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/dashboard/auditentry/").status_code == 200
    e = AuditEntry.objects.first()
    assert client.get(f"/admin/dashboard/auditentry/{e.pk}/delete/").status_code == 403
    assert client.get("/admin/dashboard/auditentry/add/").status_code == 403
