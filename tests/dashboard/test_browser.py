"""End-to-end journeys in headless Chromium (Debian's `chromium`, driven by Playwright), with an
axe-core accessibility check on every main page: no serious or critical violation.

Each role signs in through the real pages (password, then a TOTP code) on a live server and walks
its journeys: find a child, read why, record a decision, judge-first, work the link queue, check
a failed validation, read the audit log.  Screenshots go to `$JOINEDUP_SCREENSHOTS` (default: the
test's temporary folder).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.dashboard.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), "Debian's chromium is installed by `make browser-deps`"
    assert AXE.exists(), "axe-core is installed by `make browser-deps` (npm ci)"
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs a loop
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(autouse=True)
def flushable_audit_log(transactional_db):
    """Transactional tests end by emptying every table; the audit log's database triggers refuse
    that (as they should), so they are lifted after each test and restored before the next."""
    import importlib

    from django.db import connection

    m = importlib.import_module("dashboard.migrations.0002_audit_append_only")
    with connection.schema_editor() as editor:
        m.backwards(None, editor)
        m.forwards(None, editor)
    yield
    with connection.schema_editor() as editor:
        m.backwards(None, editor)


@pytest.fixture
def shots(tmp_path):
    folder = Path(os.environ.get("JOINEDUP_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.console_errors = errors
    yield pg
    context.close()


def _code(user) -> str:
    d = TOTPDevice.objects.get(user=user, confirmed=True)
    return f"{totp(d.bin_key, d.step, d.t0, d.digits, d.drift):06d}"


def sign_in(page, live_server, user) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("User name").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/accounts/mfa/.*"))
    page.get_by_label("Six-digit code").fill(_code(user))
    page.get_by_role("button", name="Continue").click()
    page.wait_for_load_state()
    assert "/accounts/" not in page.url, page.url


def check_accessibility(page, label: str) -> None:
    """axe-core on the page as rendered; serious and critical violations fail the test."""
    page.evaluate(AXE.read_text())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} x{len(v['nodes'])}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"{label}: {bad}"


def test_analyst_journeys(page, live_server, make_user, shots):
    analyst = make_user("analyst")
    sign_in(page, live_server, analyst)
    # find a child: filter by ward, open the first
    page.goto(f"{live_server.url}/children/")
    check_accessibility(page, "children list")
    page.get_by_label("Ward").select_option(label="Northfield")
    page.get_by_role("button", name="Apply").click()
    assert "25 children matching the filters" in page.locator("caption").first.inner_text()
    page.screenshot(path=shots / "analyst-list.png", full_page=True)
    page.locator("tbody a").first.click()
    page.wait_for_url(re.compile(r".*/children/C\d+/$"))
    child_url = page.url
    # read why
    assert page.get_by_role("heading", name="What raises it").is_visible()
    assert "1 A&E visit" in page.locator("main").inner_text()
    assert page.locator("svg.chart").count() == 1
    check_accessibility(page, "child page")
    page.screenshot(path=shots / "analyst-child.png", full_page=True)
    # record a decision
    page.get_by_label("Refer to early help").check()
    page.get_by_label(re.compile("^Reason")).fill("Repeated A&E visits and a new school move")
    page.get_by_role("button", name="Record decision").click()
    assert "Decision recorded" in page.locator(".messages").inner_text()
    assert "Repeated A&E visits" in page.locator("main").inner_text()
    # judge-first: turn on, the next child's score is hidden until the view is recorded
    page.goto(f"{live_server.url}/children/")
    page.get_by_role("button", name="Turn on").click()
    assert page.get_by_role("columnheader", name="Probability").count() == 0
    page.locator("tbody a").nth(3).click()
    assert page.get_by_text("record your own view from the timeline first").is_visible()
    assert page.get_by_role("heading", name="What raises it").count() == 0
    check_accessibility(page, "judge-first child page")
    page.get_by_label("Some concern").check()
    page.get_by_role("button", name="Record my view").click()
    assert page.get_by_role("heading", name="What raises it").is_visible()
    assert "Your view, recorded before the score was shown" in page.locator("main").inner_text()
    # work the link queue
    page.get_by_role("link", name="Link queue").click()
    check_accessibility(page, "link queue")
    page.locator("tbody a").first.click()
    check_accessibility(page, "link pair")
    assert "dob" in page.locator("table").first.inner_text()
    page.get_by_label("Same child (accept the link)").check()
    page.get_by_role("button", name="Send decision to the linkage unit").click()
    assert "applies at its next run" in page.locator(".messages").inner_text()
    page.screenshot(path=shots / "analyst-link-queue.png", full_page=True)
    # overview and models
    page.get_by_role("link", name="Scores overview").click()
    check_accessibility(page, "scores overview")
    page.get_by_role("link", name="Models").click()
    check_accessibility(page, "models")
    assert page.console_errors == [], page.console_errors
    assert child_url


def test_engineer_checks_a_failed_validation(page, live_server, make_user, shots):
    engineer = make_user("engineer")
    sign_in(page, live_server, engineer)
    assert page.url.endswith("/pipeline/runs/")
    check_accessibility(page, "runs")
    page.get_by_role("link", name="Validation", exact=True).click()
    check_accessibility(page, "validations")
    page.get_by_role("link", name="Show only batches that did not pass").click()
    rows = page.locator("tbody tr")
    assert rows.count() >= 1
    outcome = rows.first.locator("td").nth(3).inner_text()
    assert outcome != "passed"
    rows.first.locator("a").click()
    check_accessibility(page, "validation")
    assert page.get_by_role("heading", level=1).is_visible()
    page.screenshot(path=shots / "engineer-validation.png", full_page=True)
    page.get_by_role("link", name="Quarantine").click()
    check_accessibility(page, "quarantine")
    assert "Smithson" not in page.content()
    page.get_by_role("link", name="Linkage").click()
    check_accessibility(page, "linkage")
    # a child page is refused
    response = page.goto(f"{live_server.url}/children/C00001/")
    assert response.status == 403
    assert page.console_errors == [] or all("403" in e for e in page.console_errors)


def test_admin_reads_the_audit_log(page, live_server, make_user, shots):
    from dashboard.models import AuditEntry

    admin = make_user("admin")
    AuditEntry.objects.create(username="someone", action="view_child", target="C00004")
    sign_in(page, live_server, admin)
    assert page.url.endswith("/admin-area/audit/")
    check_accessibility(page, "audit log")
    page.get_by_label("Action").select_option("view_child")
    page.get_by_role("button", name="Apply").click()
    assert "C00004" in page.locator("tbody").inner_text()
    page.screenshot(path=shots / "admin-audit.png", full_page=True)
    page.get_by_role("link", name="Users").click()
    check_accessibility(page, "users")
    assert "admin1" in page.locator("tbody").inner_text()


def test_planner_journey(page, live_server, make_user, shots):
    """Log in, read the forecast, run a scenario, save it, export what is shown."""
    planner = make_user("planner")
    sign_in(page, live_server, planner)
    assert page.url.endswith("/planning/")
    check_accessibility(page, "planning")
    main = page.locator("main").inner_text()
    assert "Entries to care" in main and "Top-down" in main and "Bottom-up" in main
    assert "suppressed" in main
    assert page.locator("svg.chart").count() >= 3  # two outcomes' fan charts and children in care
    page.screenshot(path=shots / "planner-forecast.png", full_page=True)
    # export what is shown
    with page.expect_download() as dl:
        page.get_by_role("link", name="Excel").first.click()
    assert dl.value.suggested_filename == "joinedup-all.xlsx"
    # run a scenario: early help for the top 100 children a month, 25% less risk
    page.get_by_role("link", name=re.compile("Run a scenario")).click()
    check_accessibility(page, "scenario")
    page.get_by_label("Early help reaches the top k children each month (k)").fill("100")
    page.get_by_label("and reduces their risk by (%)").fill("25")
    page.get_by_role("button", name="Run scenario").click()
    page.wait_for_load_state()
    cost = page.locator("table", has=page.locator("caption", has_text="Cost over the next 12"))
    total = cost.locator("tr", has_text="total").inner_text().split("\t")
    assert float(total[7]) < 0, total  # the difference: early help saves money
    check_accessibility(page, "scenario result")
    page.get_by_label("Save as (name)").last.fill("Early help pilot")
    page.get_by_role("button", name="Save scenario").click()
    page.wait_for_load_state()
    assert page.get_by_role("link", name="Early help pilot").is_visible()
    page.screenshot(path=shots / "planner-scenario.png", full_page=True)
    with page.expect_download() as dl:
        page.get_by_role("link", name="CSV").last.click()
    assert dl.value.suggested_filename == "joinedup-scenario.csv"
    body = Path(dl.value.path()).read_text(encoding="utf-8-sig")
    assert "Cost over the next 12 months" in body
    assert not page.console_errors
    assert page.goto(f"{live_server.url}/children/").status == 403


def test_sign_in_pages_are_accessible(page, live_server, make_user):
    page.goto(f"{live_server.url}/accounts/login/")
    check_accessibility(page, "login")
    user = make_user("analyst", mfa=False)
    page.get_by_label("User name").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/accounts/mfa/setup/$"))
    check_accessibility(page, "authenticator set-up")
    # keyboard only: the skip link is the first stop and moves focus to the main content
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
