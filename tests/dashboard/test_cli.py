"""`joinedup dashboard adduser | code | serve` and the end of `joinedup demo` (demo accounts shown
once, then a real gunicorn server)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from joinedup import cli as joinedup_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_adduser_generates_a_password_shown_once_and_stores_only_its_hash(
    capsys, tmp_path, monkeypatch
):
    monkeypatch.setenv("JOINEDUP_HOME", str(tmp_path))  # restored after: the CLI sets it
    code = joinedup_cli.main(
        ["--home", str(tmp_path), "--json", "dashboard", "adduser", "--username", "a.analyst",
         "--role", "analyst"]
    )  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["role"] == "analyst" and len(out["password"]) == 16
    user = get_user_model().objects.get(username="a.analyst")
    assert user.check_password(out["password"])
    assert user.password.startswith("argon2$") and out["password"] not in user.password
    assert [g.name for g in user.groups.all()] == ["analyst"]


@pytest.mark.django_db
def test_adduser_refuses_an_unknown_role(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("JOINEDUP_HOME", str(tmp_path))
    code = joinedup_cli.main(
        ["--home", str(tmp_path), "dashboard", "adduser", "--username", "x", "--role", "root"]
    )
    assert code == 2
    assert "--role must be one of analyst, planner, engineer, admin" in capsys.readouterr().err


@pytest.mark.django_db
def test_demo_ends_with_one_account_per_role_then_serves(monkeypatch, capsys, tmp_path):
    from dashboard import cli
    from joinedup import dashboard_cmd
    from joinedup.config import Settings

    monkeypatch.setenv("JOINEDUP_HOME", str(tmp_path))
    served = []
    monkeypatch.setattr(cli, "serve", lambda host, port, *a: served.append((host, port)))
    dashboard_cmd.serve_demo(Settings.from_env(tmp_path), 8123)
    assert served == [("127.0.0.1", 8123)]
    out = capsys.readouterr().out
    for role in ("analyst", "planner", "engineer", "admin"):
        user = get_user_model().objects.get(username=f"{role}-demo")
        line = next(x for x in out.splitlines() if f"user {role}-demo " in x)
        password = line.split(" password ")[1].split()[0]
        assert user.check_password(password) and password not in user.password
        assert [g.name for g in user.groups.all()] == [role]
        device = TOTPDevice.objects.get(user=user, confirmed=True)
        assert cli.demo_code(f"{role}-demo") == f"{totp(device.bin_key):06d}"
    # the code helper works for demo accounts only
    get_user_model().objects.create_user("real.person", password="x" * 16)
    with pytest.raises(ValueError, match="not a demo account"):
        cli.demo_code("real.person")


def test_demo_has_a_no_serve_switch():
    args = joinedup_cli._parser().parse_args(["demo", "--no-serve", "--port", "8001"])
    assert args.no_serve and args.port == 8001


@pytest.mark.slow
def test_serve_runs_a_real_wsgi_server(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOINEDUP_OIDC_", "DJANGO_"))}
    env["JOINEDUP_HOME"] = str(tmp_path)
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("joinedup")), "--home", str(tmp_path), "dashboard",
         "serve", "--port", str(port), "--workers", "1", "--threads", "2"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    health = json.loads(r.read())
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("the server did not answer")
        assert health == {"status": "ok"}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=5) as r:
            assert r.status == 200
            assert r.headers["Server"].startswith("gunicorn")
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/static/dashboard/app.css", timeout=5
        ) as r:
            assert r.status == 200 and b"--focus" in r.read()
        assert (tmp_path / "dashboard" / "app.sqlite3").exists(), "the embedded app database"
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in out


@pytest.mark.django_db
def test_subject_access_reports_what_the_app_holds_about_a_child(as_role, capsys, tmp_path):
    import stat

    from django.test import override_settings

    from dashboard.models import AuditEntry

    client, user = as_role("analyst")
    client.get("/children/C00002/")
    client.post("/children/C00002/decide/", {"decision": "no_action", "reason": "known to school"})
    client.get("/children/C00003/")
    with override_settings(APP_DIR=tmp_path):
        code = joinedup_cli.main(
            ["--home", str(tmp_path), "--json", "dashboard", "access", "--child-id", "C00002",
             "--by", "DPO office", "--request-id", "S1"]
        )  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    report = Path(out["report"])
    assert report == tmp_path / "rights" / "S1.json"
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    body = json.loads(report.read_text())
    assert [d["reason"] for d in body["decisions"]] == ["known to school"]
    assert {e["action"] for e in body["audit_entries"]} == {"view_child", "decision"}
    assert "C00003" not in report.read_text()
    assert AuditEntry.objects.filter(action="subject_access", target="C00002").exists()
