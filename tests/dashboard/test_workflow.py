"""The analysts' journeys at the route level: the list and its filters, a child's page, review
decisions kept with their score, judge-first, identification requests, the link queue's hand-off
to the linkage unit, and the admins' audit export."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from dashboard.models import (
    AuditEntry,
    IdentificationRequest,
    JudgeFirstView,
    LinkDecision,
    ReviewDecision,
)

pytestmark = pytest.mark.django_db


def test_ranked_list_filters_and_pages(as_role, settings_override):
    client, _ = as_role("analyst")
    with settings_override(PAGE_SIZE=15):
        r = client.get("/children/")
        assert r.status_code == 200
        assert r.context["total"] == 40 and r.context["pages"] == 3
        ranks = [row["rank"] for row in r.context["rows"]]
        assert ranks == list(range(1, 16))
        assert r.context["next_q"] == "page=2"
        r2 = client.get("/children/?page=3")
        assert [row["rank"] for row in r2.context["rows"]] == list(range(31, 41))
        w1 = client.get("/children/", {"ward": "W1"})
        assert w1.context["total"] == 25
        assert all(row["ward_code"] == "W1" for row in w1.context["rows"])
        none = client.get("/children/", {"agency": "police"})
        assert none.context["total"] == 0
        bad = client.get("/children/", {"band": "'; DROP TABLE scores; --", "q": "not-an-id"})
        assert bad.status_code == 200 and bad.context["total"] == 40
        msgs = [str(m) for m in bad.context["messages"]]
        assert any("Unknown score band" in m for m in msgs)
        assert not any("DROP" in m for m in msgs), "bad input is never echoed"


def test_child_page_shows_timeline_reasons_and_links(as_role):
    client, _ = as_role("analyst")
    r = client.get("/children/C00002/")
    assert r.status_code == 200
    body = r.content.decode()
    assert "1 A&amp;E visit" in body  # the reason, in words
    assert "A&amp;E attendance" in body  # the event, in words
    assert "Joined-up timeline" in body and "<svg" in body
    assert len(r.context["events"]) == 2
    assert "How sure the link is" in body
    assert client.get("/children/C99999/").status_code == 404
    assert AuditEntry.objects.filter(action="view_child", target="C99999", status=404).exists()


def test_decision_is_kept_with_the_score_that_prompted_it(as_role):
    client, user = as_role("analyst")
    r = client.post(
        "/children/C00010/decide/",
        {"decision": "refer_early_help", "reason": "pattern of A&E visits"},
    )
    assert r.status_code == 302
    d = ReviewDecision.objects.get()
    assert (d.child_id, d.decision, d.analyst) == ("C00010", "refer_early_help", user)
    assert d.score == pytest.approx(0.010) and d.rank == 31 and d.model_version == "v1"
    assert d.publish_id and d.as_of.startswith("2026-10-01")
    # a reason is required and may not hold identifiers
    for reason in ("", "short", "born 03/04/2015 at home", "NHS 9434765919 seen"):
        client.post("/children/C00010/decide/", {"decision": "no_action", "reason": reason})
    assert ReviewDecision.objects.count() == 1
    page = client.get("/children/C00010/").content.decode()
    assert "pattern of A&amp;E visits" in page


def test_judge_first_hides_the_score_until_the_analysts_view_is_recorded(as_role):
    client, user = as_role("analyst")
    client.post("/children/judge-first/", {"on": "1"})
    listing = client.get("/children/")
    assert b"Probability" not in listing.content and b"band-within" not in listing.content
    ids = [row["child_id"] for row in listing.context["rows"]]
    assert ids == sorted(ids), "the page's order tells nothing about the score"
    page = client.get("/children/C00005/")
    assert page.context["hide_score"]
    body = page.content.decode()
    assert "0.005" not in body and "1 A&amp;E visit" not in body and "Rank " not in body
    # deciding before recording a view is refused
    client.post(
        "/children/C00005/decide/", {"decision": "no_action", "reason": "nothing of concern here"}
    )
    assert not ReviewDecision.objects.exists()
    client.post("/children/C00005/my-view/", {"concern": "some", "note": "several A&E visits"})
    view = JudgeFirstView.objects.get()
    assert (view.child_id, view.concern, view.analyst) == ("C00005", "some", user)
    page = client.get("/children/C00005/")
    assert not page.context["hide_score"] and "1 A&amp;E visit" in page.content.decode()
    client.post(
        "/children/C00005/decide/", {"decision": "no_action", "reason": "nothing of concern here"}
    )
    d = ReviewDecision.objects.get()
    assert d.judged_first == view
    audit = list(
        AuditEntry.objects.filter(target="C00005").order_by("id").values_list("action", "detail")
    )
    shown = [det["score_shown"] for a, det in audit if a == "view_child"]
    assert shown == [False, True]


def test_identification_is_a_recorded_request_naming_the_agencies(as_role):
    client, user = as_role("analyst")
    r = client.post(
        "/children/C00007/identify/", {"purpose": "Early help panel needs to contact the family."}
    )
    assert r.status_code == 302
    req = IdentificationRequest.objects.get()
    assert req.agencies == "health" and req.requested_by == user
    e = AuditEntry.objects.get(action="identification_request")
    assert e.target == "C00007" and e.detail["agencies"] == "health"
    page = client.get("/children/C00007/").content.decode()
    assert f"Request {req.pk} by {user.username}" in page


def test_link_queue_decision_is_handed_to_the_linkage_unit_as_a_file(as_role, tmp_path):
    from django.conf import settings

    client, user = as_role("analyst")
    queue = client.get("/links/")
    pending = [r["pair_id"] for r in queue.context["rows"]]
    assert len(pending) == 4 and queue.context["total"] == 4  # one of five is decided
    pair = pending[0]
    page = client.get(f"/links/{pair}/")
    assert page.status_code == 200 and b"dob" in page.content and b"exact" in page.content
    r = client.post(f"/links/{pair}/", {"decision": "reject", "reason": "different school years"})
    assert r.status_code == 302
    d = LinkDecision.objects.get()
    files = list(settings.LINK_DECISIONS_OUTBOX.glob("link_decisions_*.csv"))
    assert [f.name for f in files] == [d.exported_file]
    delivered = settings.LINK_DECISIONS_INBOX / d.exported_file
    assert delivered.read_bytes() == files[0].read_bytes()
    rows = list(csv.reader(io.StringIO(files[0].read_text())))
    assert rows[0] == ["decision_id", "pair_id", "decision", "reviewer", "reason", "decided_at"]
    assert rows[1][:5] == [d.decision_id, pair, "reject", user.username, "different school years"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", rows[1][5])
    assert AuditEntry.objects.get(action="link_decision").target == pair
    # nothing else was written: the app never writes the warehouse
    assert client.get("/links/?status=decided").context["total"] == 1


def test_the_decisions_file_is_what_the_linkage_unit_imports(as_role, monkeypatch):
    """The file the app writes passes the linkage unit's own import check."""
    import duckdb
    from django.conf import settings

    from linkage import review, review_import

    client, user = as_role("analyst")
    pair = client.get("/links/").context["rows"][0]["pair_id"]
    client.post(f"/links/{pair}/", {"decision": "accept", "reason": "same school and GP"})
    path = next(settings.LINK_DECISIONS_OUTBOX.glob("*.csv"))
    con = duckdb.connect()
    con.execute(
        "CREATE SCHEMA linked; CREATE TABLE linked.review_decisions (decision_id VARCHAR, "
        "pair_id VARCHAR, decision VARCHAR, reviewer VARCHAR, decided_at TIMESTAMP)"
    )
    # the linkage unit knows the pair (its queue is not part of this test)
    monkeypatch.setattr(
        review, "pair_identity", lambda con, p: ("health:a", "police:b") if p == pair else None
    )
    out, n_rows, skipped = review_import.check_file(con, path)
    assert n_rows == 1 and skipped == 0
    assert [(o[1], o[3], o[4], o[5]) for o in out] == [
        (pair, "accept", user.username, "same school and GP")
    ]


def test_admin_exports_the_audit_log(as_role):
    client, user = as_role("admin")
    client.get("/admin-area/audit/")
    r = client.get("/admin-area/audit/export.csv")
    assert r["Content-Type"].startswith("text/csv")
    assert "attachment" in r["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(r.streaming_content).decode())))
    assert rows[0][:5] == ["id", "at", "username", "role", "action"]
    assert "view_audit_log" in {row[4] for row in rows[1:]}
    assert AuditEntry.objects.filter(action="export_audit_log", username=user.username).exists()
    filtered = client.get("/admin-area/audit/", {"action": "export_audit_log"})
    assert filtered.context["page"].paginator.count == 1


def test_engineer_pages_show_runs_validations_quarantine(as_role):
    client, _ = as_role("engineer")
    quarantine = client.get("/pipeline/quarantine/")
    assert quarantine.status_code == 200
    assert quarantine.context["q"]["rows"], "the fixture's quarantined rows are listed"
    assert b"Smithson" not in quarantine.content, "reasons never quote a value"
    v = client.get("/pipeline/validations/")
    assert v.context["rows"]
    vid = v.context["rows"][0]["validation_id"]
    assert client.get(f"/pipeline/validations/{vid}/").status_code == 200
    models = client.get("/pipeline/models/")
    assert models.context["models"][0]["version"] == "v1"
    linkage = client.get("/pipeline/linkage/")
    assert dict(linkage.context["headline"])["threshold"] == 0.95


def test_overview_shows_calibration_and_child_page_score_history(as_role, tmp_path):
    import duckdb
    from django.conf import settings

    from dashboard import readmodels

    client, _ = as_role("analyst")
    r = client.get("/children/overview/")
    assert r.status_code == 200 and r.context["deciles"] == []  # the fixture model has none
    # a snapshot with a second scoring date and calibration figures (a copy; the fixture's
    # own files are shared by every test)
    copy = tmp_path / "published_analysts.duckdb"
    copy.write_bytes(settings.READ_MODELS["analysts"].read_bytes())
    con = duckdb.connect(str(copy))
    con.execute(
        "INSERT INTO score_history SELECT child_id, DATE '2026-09-01', score / 2, rank, "
        "'v0' FROM score_history"
    )
    deciles = [{"bin": b, "n": 100, "mean_predicted": 0.01 * b, "observed_rate": 0.012 * b}
               for b in range(10)]  # fmt: skip
    con.execute("UPDATE models SET calibration_deciles = ?", [json.dumps(deciles)])
    con.close()
    from django.test import override_settings

    with override_settings(READ_MODELS={**settings.READ_MODELS, "analysts": copy}):
        readmodels.reset()
        r = client.get("/children/overview/")
        assert len(r.context["deciles"]) == 10
        assert 'aria-labelledby="cal-t cal-d"' in r.content.decode()
        page = client.get("/children/C00004/")
        history = page.context["history"]
        assert [float(h["score"]) for h in history] == pytest.approx([0.002, 0.004])
        assert "Score history" in page.content.decode()
    readmodels.reset()


def test_long_user_names_fit_the_linkage_units_reviewer_field():
    from dashboard.handoff import REVIEWER_MAX, reviewer_name
    from linkage import review

    assert REVIEWER_MAX == review.REVIEWER_MAX
    long_a, long_b = "oidc:" + "a" * 140, "oidc:" + "a" * 139 + "b"
    assert len(reviewer_name(long_a)) == REVIEWER_MAX
    assert reviewer_name(long_a) != reviewer_name(long_b)
    assert reviewer_name("analyst1") == "analyst1"


def test_pipeline_reports_run_sandboxed(as_role, tmp_path, settings_override):
    client, _ = as_role("engineer")
    report = tmp_path / "report.html"
    report.write_text("<!doctype html><title>Linkage report</title><script>1</script>")
    docs = tmp_path / "data_docs"
    (docs / "validations").mkdir(parents=True)
    (docs / "index.html").write_text("<title>Data Docs</title>")
    (docs / "validations" / "a.html").write_text("<title>one run</title>")
    with settings_override(LINKAGE_REPORT=report, DATA_DOCS_DIR=docs):
        for path in ("/pipeline/linkage/report/", "/pipeline/data-docs/",
                     "/pipeline/data-docs/validations/a.html"):  # fmt: skip
            r = client.get(path)
            assert r.status_code == 200, path
            csp = r["Content-Security-Policy"]
            assert csp.startswith("sandbox allow-scripts;") and "default-src 'none'" in csp
            assert "http" not in csp and "allow-same-origin" not in csp
        assert client.get("/pipeline/data-docs/../../secret_key").status_code == 404
        assert client.get("/pipeline/data-docs/%2e%2e/report.html").status_code == 404


def test_a_missing_read_model_is_a_503_page_on_every_view(as_role, tmp_path, settings_override):
    from django.conf import settings

    from dashboard import readmodels

    client, _ = as_role("analyst")
    missing = {**settings.READ_MODELS, "analysts": tmp_path / "absent.duckdb"}
    with settings_override(READ_MODELS=missing):
        readmodels.reset()
        for r in (
            client.get("/children/"),
            client.get("/children/C00001/"),
            client.get("/links/"),
            client.post(
                "/children/C00001/decide/", {"decision": "no_action", "reason": "a reason"}
            ),
        ):
            assert r.status_code == 503
            assert b"No published data" in r.content and b"absent.duckdb" in r.content
    readmodels.reset()
