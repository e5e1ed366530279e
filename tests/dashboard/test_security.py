"""Sign-in, second factor, lockout, CSRF, session expiry, security headers, password hashing and
the append-only audit log."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from dashboard.models import AppendOnlyError, AuditEntry
from tests.dashboard.conftest import PASSWORD, sign_in

pytestmark = pytest.mark.django_db


def _code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


def test_password_then_totp_signs_in(client, make_user):
    user = make_user("analyst")
    device = TOTPDevice.objects.get(user=user)
    r = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert r.status_code == 302
    assert client.get("/children/")["Location"].startswith("/accounts/mfa")
    r = client.post(
        "/accounts/mfa/", {"token": "000000" if _code(device) != "000000" else "111111"}
    )
    assert r.status_code == 200 and b"not right" in r.content
    r = client.post("/accounts/mfa/", {"token": _code(device)})
    assert r.status_code == 200 and b"Too many wrong codes" in r.content, (
        "throttled after a failure"
    )
    time.sleep(1.1)  # django-otp's throttle: 1 s after one failure
    r = client.post("/accounts/mfa/", {"token": _code(device)})
    assert r.status_code == 302
    assert client.get("/children/").status_code == 200
    actions = list(
        AuditEntry.objects.filter(username=user.username).values_list("action", flat=True)
    )
    assert {"login", "mfa_failed", "mfa_verified", "list"} <= set(actions)


def test_first_sign_in_enrols_an_authenticator(client, make_user):
    user = make_user("engineer", mfa=False)
    client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    r = client.get("/accounts/mfa/")
    assert r["Location"] == "/accounts/mfa/setup/"
    r = client.get("/accounts/mfa/setup/")
    assert r.status_code == 200 and b"data:image/svg+xml" in r.content
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    r = client.post("/accounts/mfa/setup/", {"token": _code(device)})
    assert r.status_code == 302
    device.refresh_from_db()
    assert device.confirmed
    assert client.get("/pipeline/runs/").status_code == 200


def test_passwords_are_stored_with_argon2(make_user):
    user = make_user("analyst")
    assert user.password.startswith("argon2$argon2id$")
    assert PASSWORD not in user.password


def test_lockout_after_repeated_failures(make_user):
    from django.conf import settings

    user = make_user("analyst")
    client = Client(REMOTE_ADDR="10.1.2.3")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        r = client.post(
            "/accounts/login/", {"username": user.username, "password": "wrong password!"}
        )
        assert r.status_code in (200, 429)
    r = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert r.status_code == 429, "the right password is refused while locked"
    assert b"Too many failed sign-ins" in r.content
    assert "_auth_user_id" not in client.session
    assert (
        AuditEntry.objects.filter(action="login_failed", username=user.username).count()
        >= settings.AXES_FAILURE_LIMIT
    )
    assert AuditEntry.objects.filter(action="locked_out", username=user.username).exists()
    # another address is not locked out for this user (lockout by user name and address)
    other = Client(REMOTE_ADDR="10.9.9.9")
    r = other.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert r.status_code == 302


def test_csrf_is_enforced_and_logged(make_user):
    user = make_user("analyst")
    client = Client(enforce_csrf_checks=True)
    sign_in(client, user)
    r = client.post(
        "/children/C00001/decide/", {"decision": "no_action", "reason": "a long enough reason"}
    )
    assert r.status_code == 403
    assert AuditEntry.objects.filter(action="csrf_failed", username=user.username).exists()
    assert not AuditEntry.objects.filter(action="decision").exists()
    # with the token from the page, the same post goes through
    page = client.get("/children/C00001/")
    token = (
        page.cookies["csrftoken"].value
        if "csrftoken" in page.cookies
        else client.cookies["csrftoken"].value
    )
    import re

    form_token = (
        re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1).decode()
    )
    r = client.post(
        "/children/C00001/decide/",
        {
            "decision": "no_action",
            "reason": "a long enough reason",
            "csrfmiddlewaretoken": form_token,
        },
    )
    assert token and r.status_code == 302
    assert AuditEntry.objects.filter(action="decision").count() == 1


def test_session_expires_when_idle(client, make_user):
    from django.conf import settings

    user = make_user("analyst")
    sign_in(client, user)
    assert client.get("/children/").status_code == 200
    session = client.session
    session["joinedup_seen_at"] = time.time() - settings.IDLE_SECONDS - 5
    session.save()
    r = client.get("/children/")
    assert r.status_code == 302 and "expired=1" in r["Location"]
    assert client.get("/children/")["Location"].startswith("/accounts/login/")
    e = AuditEntry.objects.get(action="session_expired")
    assert e.detail == {"reason": "idle"} and e.username == user.username


def test_session_has_a_maximum_length(client, make_user):
    from django.conf import settings

    user = make_user("analyst")
    sign_in(client, user)
    session = client.session
    session["joinedup_login_at"] = time.time() - settings.MAX_SESSION_SECONDS - 5
    session.save()
    r = client.get("/children/")
    assert r.status_code == 302 and "expired=1" in r["Location"]
    assert AuditEntry.objects.get(action="session_expired").detail == {"reason": "maximum_length"}


def test_session_cookie_settings():
    from django.conf import settings

    assert settings.SESSION_COOKIE_HTTPONLY and settings.SESSION_EXPIRE_AT_BROWSER_CLOSE
    assert settings.IDLE_SECONDS <= 3600
    assert settings.SESSION_COOKIE_AGE <= settings.IDLE_SECONDS + 120
    assert settings.SESSION_COOKIE_SAMESITE == "Lax"


def test_security_headers(as_role):
    client, _ = as_role("analyst")
    for path in ("/children/", "/children/C00001/", "/accounts/login/"):
        r = client.get(path)
        csp = r["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
        assert directives["default-src"] == "'self'"
        assert directives["script-src"] == "'self'", "no inline script, nothing from a CDN"
        assert directives["style-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'"
        assert directives["object-src"] == "'none'"
        assert "unsafe" not in csp and "http" not in csp
        assert r["X-Frame-Options"] == "DENY"
        assert r["X-Content-Type-Options"] == "nosniff"
        assert r["Referrer-Policy"] == "same-origin"
        assert r["Cross-Origin-Opener-Policy"] == "same-origin"
        assert "camera=()" in r["Permissions-Policy"]
        assert "no-store" in r["Cache-Control"]
    # pages have no inline script or style at all
    body = client.get("/children/").content
    assert b"<script" not in body and b"style=" not in body


def test_https_settings_follow_the_environment(monkeypatch):
    import importlib

    import dashboard.settings as s

    monkeypatch.setenv("JOINEDUP_DASHBOARD_HTTPS", "1")
    monkeypatch.setenv("JOINEDUP_DASHBOARD_SECRET_KEY", "x" * 50)
    try:
        importlib.reload(s)
        assert s.SESSION_COOKIE_SECURE and s.CSRF_COOKIE_SECURE and s.SECURE_SSL_REDIRECT
        assert s.SECURE_HSTS_SECONDS >= 31536000
    finally:
        monkeypatch.delenv("JOINEDUP_DASHBOARD_HTTPS")
        importlib.reload(s)


def test_audit_log_is_append_only(as_role):
    client, user = as_role("analyst")
    client.get("/children/C00001/")
    entry = AuditEntry.objects.get(action="view_child")
    entry.target = "C99999"
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    for sql in (
        "UPDATE dashboard_auditentry SET target = 'C99999'",
        "DELETE FROM dashboard_auditentry",
    ):
        with pytest.raises(Exception, match="append-only"), connection.cursor() as cur:
            from django.db import transaction

            with transaction.atomic():
                cur.execute(sql)
    assert AuditEntry.objects.get(pk=entry.pk).target == "C00001"


def test_child_views_searches_and_decisions_are_audited(as_role):
    client, user = as_role("analyst")
    client.get("/children/", {"q": "C00003"})
    client.get("/children/", {"band": "within_capacity", "ward": "W1"})
    client.get("/children/C00003/", HTTP_USER_AGENT="TestBrowser/1.0")
    client.post(
        "/children/C00003/decide/",
        {"decision": "already_known", "reason": "known to the school nurse"},
    )
    entries = list(AuditEntry.objects.filter(username=user.username).order_by("id"))
    by_action = {e.action: e for e in entries}
    assert by_action["search"].target == "C00003"
    assert by_action["list"].detail["filters"] == {"band": "within_capacity", "ward": "W1"}
    view = by_action["view_child"]
    assert view.target == "C00003" and view.user_agent == "TestBrowser/1.0"
    assert view.ip_address == "127.0.0.1" and view.role == "analyst"
    decision = by_action["decision"]
    assert decision.target == "C00003" and decision.detail["decision"] == "already_known"
    assert decision.detail["score"] is not None
