"""Single sign-on through OpenID Connect (mozilla-django-oidc) against a stub provider: a real
HTTP server on 127.0.0.1 with token, userinfo and JWKS endpoints signing RS256 ID tokens."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
from django.contrib.auth import get_user_model

from dashboard.models import AuditEntry
from tests.dashboard import django_settings
from tests.dashboard.oidc_stub import StubProvider

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def provider():
    stub = StubProvider(django_settings.OIDC_STUB_PORT, "joinedup-test", "stub-secret").start()
    yield stub
    stub.stop()


def _sign_in(client, provider, claims):
    r = client.get("/oidc/authenticate/")
    assert r.status_code == 302
    auth = urlparse(r["Location"])
    assert f"{auth.scheme}://{auth.netloc}" == provider.issuer and auth.path == "/authorize"
    q = {k: v[0] for k, v in parse_qs(auth.query).items()}
    assert q["client_id"] == "joinedup-test" and q["response_type"] == "code"
    assert q["code_challenge_method"] == "S256", "PKCE"
    code = provider.authorize(q["nonce"], claims)
    return client.get("/oidc/callback/", {"code": code, "state": q["state"]})


def test_login_page_offers_single_sign_on(client):
    assert b"Sign in with your council account" in client.get("/accounts/login/").content


def test_provider_group_gives_the_role_and_no_app_totp_is_asked(client, provider):
    claims = {"sub": "u-123", "email": "a.analyst@council.example", "groups": ["joinedup-analyst"]}
    r = _sign_in(client, provider, claims)
    assert r.status_code == 302 and not r["Location"].startswith("/oidc")
    user = get_user_model().objects.get(username="oidc:u-123")
    assert {g.name for g in user.groups.all()} == {"analyst"}
    assert not user.has_usable_password()
    assert client.get("/children/").status_code == 200, "the provider's own MFA stands in"
    assert client.get("/pipeline/runs/").status_code == 403
    login = AuditEntry.objects.get(action="login", username="oidc:u-123")
    assert login.detail["backend"].endswith("RoleMappingOIDCBackend")


def test_a_role_changed_at_the_provider_changes_here(client, provider):
    _sign_in(client, provider, {"sub": "u-9", "groups": ["joinedup-analyst"]})
    client.post("/accounts/logout/")
    _sign_in(client, provider, {"sub": "u-9", "groups": ["joinedup-engineer", "staff"]})
    user = get_user_model().objects.get(username="oidc:u-9")
    assert {g.name for g in user.groups.all()} == {"engineer"}
    assert client.get("/children/").status_code == 403
    assert client.get("/pipeline/runs/").status_code == 200


def test_no_mapped_group_no_entry(client, provider):
    r = _sign_in(client, provider, {"sub": "u-77", "groups": ["finance"]})
    assert r.status_code == 302
    assert not get_user_model().objects.filter(username="oidc:u-77").exists()
    assert client.get("/children/").status_code == 302  # still anonymous


def test_a_forged_state_is_refused(client, provider):
    client.get("/oidc/authenticate/")
    code = provider.authorize("any-nonce", {"sub": "u-5", "groups": ["joinedup-admin"]})
    before = provider.token_requests
    r = client.get("/oidc/callback/", {"code": code, "state": "forged"})
    assert r.status_code in (302, 400)
    assert provider.token_requests == before, "no code exchange on a bad state"
    assert not get_user_model().objects.filter(username="oidc:u-5").exists()
