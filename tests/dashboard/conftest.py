"""Fixtures of the dashboard tests: real published read models (the hub fixture of
tests/test_read_models.py, published by `warehouse.publish`), one user per role, and signing in.

The read models are built once per session; every test gets its own app database (pytest-django)
and its own hand-off folders.
"""

from __future__ import annotations

import time

import pytest
from django.test import override_settings

PASSWORD = "correct horse battery staple 42"


@pytest.fixture(scope="session")
def published_home(tmp_path_factory):
    from joinedup.config import Settings
    from tests.test_read_models import _make_hub
    from warehouse import publish

    settings = Settings.from_env(tmp_path_factory.mktemp("dashboard-hub") / "home")
    settings.ensure_dirs()
    _make_hub(settings)
    from tests.planning_fixture import make_forecast_tables

    make_forecast_tables(settings)
    from models.card import CARD_NAME

    card = settings.models_dir / "v1" / f"{CARD_NAME}.html"
    card.write_text("<!doctype html><title>Model card v1</title><h1>Model card v1</h1>")
    figures = publish.run(settings)
    assert set(figures["checks"].values()) == {"passed"}, figures["checks"]
    return settings


@pytest.fixture(autouse=True)
def read_models(published_home, tmp_path):
    from dashboard import readmodels

    w = published_home.home / "warehouse"
    with override_settings(
        READ_MODELS={a: w / f"published_{a}.duckdb" for a in ("analysts", "planners", "engineers")},
        MODELS_DIR=published_home.models_dir,
        DATA_DOCS_DIR=published_home.outputs_dir / "validation" / "data_docs",
        LINKAGE_REPORT=tmp_path / "no-report.html",
        LINK_DECISIONS_OUTBOX=tmp_path / "outbox",
        LINK_DECISIONS_INBOX=tmp_path / "linkage_inbox",
    ):
        readmodels.reset()
        yield published_home
        readmodels.reset()


@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from dashboard.roles import set_role

    def make(role: str | None, username: str | None = None, mfa: bool = True):
        user = get_user_model().objects.create_user(username or f"{role}1", password=PASSWORD)
        if role:
            set_role(user, role)
        if mfa:
            TOTPDevice.objects.create(user=user, name="test", confirmed=True)
        return user

    return make


def sign_in(client, user) -> None:
    """Sign in with the second factor verified (the full password + TOTP flow has its own test)."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    client.force_login(user)
    session = client.session
    device = TOTPDevice.objects.get(user=user, confirmed=True)
    session["otp_device_id"] = device.persistent_id
    session["joinedup_login_at"] = time.time()
    session["joinedup_seen_at"] = time.time()
    session.save()


@pytest.fixture
def as_role(make_user, client):
    """A test client signed in (second factor verified) with one role."""

    def signed(role: str):
        user = make_user(role)
        sign_in(client, user)
        return client, user

    return signed


@pytest.fixture
def settings_override():
    """`override_settings` as a context manager (pytest-django's `settings` fixture is shadowed
    by the pipeline's `settings` fixture in tests/conftest.py)."""
    return override_settings
