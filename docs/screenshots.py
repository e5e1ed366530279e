"""Make the dashboard screenshots in docs/img/ from a demo home (synthetic data only).

    .venv/bin/joinedup --home /tmp/demo demo --children 20000 --no-serve
    .venv/bin/python docs/screenshots.py --home /tmp/demo

Serves the home's dashboard with gunicorn on a free port, signs in as a new analyst (through the
real pages, password then TOTP), and saves the ranked list and a child page with Debian's chromium
(Playwright); then signs in as a new planner and saves the care-demand page and a scenario.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = ap.parse_args()
    os.environ["JOINEDUP_HOME"] = str(args.home)
    from dashboard import cli

    cli.setup_django(args.home)
    from django_otp.oath import totp

    accounts = {}
    for role in ("analyst", "planner"):
        acc = cli.adduser(f"screenshot-{role}", role)
        key = cli.enrol_authenticator(acc["username"], "screenshots")
        accounts[role] = (acc["username"], acc["password"], key)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("joinedup")), "--home", str(args.home), "dashboard",
         "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    try:
        time.sleep(4)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            for name, password, key in accounts.values():
                page = browser.new_context(viewport={"width": 1366, "height": 860}).new_page()
                page.goto(f"{base}/accounts/login/")
                page.get_by_label("User name").fill(name)
                page.get_by_label("Password").fill(password)
                page.get_by_role("button", name="Sign in").click()
                page.get_by_label("Six-digit code").fill(f"{totp(key):06d}")
                page.get_by_role("button", name="Continue").click()
                page.wait_for_load_state()
                if "planner" in name:
                    page.goto(f"{base}/planning/")
                    page.screenshot(path=args.out / "dashboard-planning.png", full_page=True)
                    page.goto(
                        f"{base}/planning/scenario/?early_help_k=100&risk_reduction=25"
                        "&residential_to_foster=20"
                    )
                    page.screenshot(path=args.out / "dashboard-scenario.png", full_page=True)
                    continue
                page.goto(f"{base}/children/?band=within_capacity")
                page.screenshot(path=args.out / "dashboard-list.png")
                href = page.locator("tbody a").nth(2).get_attribute("href")
                page.goto(base + href)
                page.screenshot(path=args.out / "dashboard-child.png", full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
    print("\n".join(str(p) for p in sorted(args.out.glob("dashboard-*.png"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
