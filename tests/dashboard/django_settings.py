"""Django settings for the test run: the app's own settings, a throwaway data home, and single
sign-on switched on against the stub provider of tests/dashboard/oidc_stub.py."""

from __future__ import annotations

import os
import socket
import tempfile


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


OIDC_STUB_PORT = _free_port()
_stub = f"http://127.0.0.1:{OIDC_STUB_PORT}"
_home = tempfile.mkdtemp(prefix="joinedup-dashboard-test-")
_saved = {k: os.environ.get(k) for k in ("JOINEDUP_HOME",)}
os.environ["JOINEDUP_HOME"] = _home
os.environ.setdefault("JOINEDUP_DASHBOARD_SECRET_KEY", "tests-only-not-a-secret-" + "x" * 32)
for key, value in {
    "JOINEDUP_OIDC_CLIENT_ID": "joinedup-test",
    "JOINEDUP_OIDC_CLIENT_SECRET": "stub-secret",
    "JOINEDUP_OIDC_AUTHORIZATION_ENDPOINT": f"{_stub}/authorize",
    "JOINEDUP_OIDC_TOKEN_ENDPOINT": f"{_stub}/token",
    "JOINEDUP_OIDC_USER_ENDPOINT": f"{_stub}/userinfo",
    "JOINEDUP_OIDC_JWKS_ENDPOINT": f"{_stub}/jwks",
}.items():
    os.environ.setdefault(key, value)
try:
    from dashboard.settings import *  # noqa: F403
finally:
    for k, v in _saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v

TEST_HOME = _home
