"""`joinedup dashboard ...`: set up the app database, add users, serve with gunicorn.

Owns `setup_django` (points Django at the data home's app database and migrates it), `adduser`
(a password is generated when none is given, shown once and stored only as an argon2 hash),
`demo_accounts` (one account per role, each with a TOTP authenticator whose key is shown once),
`demo_code` (the current TOTP code of a *demo* account, for trying the demo without an
authenticator app; refused for any other account) and `serve` (gunicorn, a real WSGI server:
threads in worker processes, no access log, since paths hold child ids and the audit log records
every child-level request anyway).
"""

from __future__ import annotations

import os
import secrets
import string
import sys
from pathlib import Path

DEMO_DEVICE = "demo authenticator"


def setup_django(home: Path | None = None, migrate: bool = True) -> None:
    """Configure Django for the data home (idempotent), migrate the app database, create roles."""
    if home is not None:
        os.environ["JOINEDUP_HOME"] = str(home)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django
    from django.conf import settings as dj

    if not dj.configured or not getattr(setup_django, "_done", False):
        django.setup()
        setup_django._done = True  # type: ignore[attr-defined]
    if migrate:
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)
        from dashboard.roles import ensure_groups

        ensure_groups()


def _password() -> str:
    alphabet = string.ascii_letters + string.digits
    while True:
        p = "".join(secrets.choice(alphabet) for _ in range(16))
        if any(c.isdigit() for c in p) and any(c.isalpha() for c in p):
            return p


def adduser(username: str, role: str, password: str | None = None, email: str = "") -> dict:
    """Create (or reset) a user with one role; returns the password only when generated."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.password_validation import validate_password

    from dashboard.roles import ROLES, set_role

    if role not in ROLES:
        raise ValueError(f"--role must be one of {', '.join(ROLES)} (got {role!r})")
    if not username or not all(c.isalnum() or c in "-_.@" for c in username):
        raise ValueError("--username: letters, digits and - _ . @ only")
    generated = password is None
    password = password or _password()
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username, defaults={"email": email})
    validate_password(password, user)
    user.set_password(password)
    user.is_active = True
    user.save()
    set_role(user, role)
    out = {"username": username, "role": role, "created": created}
    if generated:
        out["password"] = password
    return out


def enrol_authenticator(username: str, name: str) -> bytes:
    """Give a user one confirmed TOTP authenticator (replacing any they had); returns its key."""
    from django.contrib.auth import get_user_model
    from django_otp.plugins.otp_totp.models import TOTPDevice

    user = get_user_model().objects.get(username=username)
    TOTPDevice.objects.filter(user=user).delete()
    return TOTPDevice.objects.create(user=user, name=name, confirmed=True).bin_key


def demo_accounts() -> list[dict]:
    """One account per role for the demo: new passwords and authenticator keys, shown once."""
    import base64

    from dashboard.roles import ROLES

    out = []
    for role in ROLES:
        acc = adduser(f"{role}-demo", role)
        key = enrol_authenticator(acc["username"], DEMO_DEVICE)
        acc["totp_key"] = base64.b32encode(key).decode().rstrip("=")
        out.append(acc)
    return out


def demo_code(username: str) -> str:
    """The current six-digit code of a demo account's authenticator (demo accounts only)."""
    from django_otp.oath import totp
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user__username=username, name=DEMO_DEVICE).first()
    if device is None:
        raise ValueError(f"{username!r} is not a demo account (made by `joinedup demo`)")
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


def _warm(worker) -> None:
    """Build each worker's in-memory list index before it takes requests (~1 s at 100,000
    children), so no user waits for it; a later publish rebuilds it on first use."""
    from dashboard import queries

    queries.warm()


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 2, threads: int = 8) -> None:
    """Serve the app with gunicorn until interrupted."""
    from gunicorn.app.base import BaseApplication

    from dashboard.wsgi import application

    class _App(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("accesslog", None)
            self.cfg.set("errorlog", "-")
            self.cfg.set("loglevel", "warning")
            self.cfg.set("timeout", 60)
            self.cfg.set("keepalive", 5)
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("proc_name", "joinedup-dashboard")
            self.cfg.set("post_worker_init", _warm)

        def load(self):
            return application

    print(f"Joined-Up dashboard: http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    sys.argv = sys.argv[:1]
    _App().run()
