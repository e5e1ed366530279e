"""URL routes of the dashboard.  Every view except sign-in, the second factor and the health
check is wrapped in `roles.role_required` (tests/test_dashboard_routes.py checks that)."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from dashboard.admin_site import site as admin_site
from dashboard.views import accounts, admin_views, analysts, engineers, errors, links, planners

urlpatterns = [
    path("", accounts.home, name="home"),
    path("health", accounts.health, name="health"),
    path("accounts/login/", accounts.SignIn.as_view(), name="login"),
    path("accounts/logout/", accounts.sign_out, name="logout"),
    path("accounts/mfa/", accounts.mfa, name="mfa"),
    path("accounts/mfa/setup/", accounts.mfa_setup, name="mfa_setup"),
    # analysts
    path("children/", analysts.children, name="children"),
    path("children/overview/", analysts.overview, name="overview"),
    path("children/judge-first/", analysts.judge_first_mode, name="judge_first_mode"),
    path("children/<str:child_id>/", analysts.child, name="child"),
    path("children/<str:child_id>/decide/", analysts.decide, name="decide"),
    path("children/<str:child_id>/my-view/", analysts.record_view, name="record_view"),
    path("children/<str:child_id>/identify/", analysts.request_identification, name="identify"),
    path("links/", links.queue, name="link_queue"),
    path("links/<str:pair_id>/", links.pair, name="link_pair"),
    path("models/", analysts.models_page, name="models"),
    path("models/<str:version>/card/", analysts.model_card, name="model_card"),
    # engineers
    path("pipeline/runs/", engineers.runs, name="runs"),
    path("pipeline/validations/", engineers.validations, name="validations"),
    path("pipeline/validations/<str:validation_id>/", engineers.validation, name="validation"),
    path("pipeline/data-docs/", engineers.data_docs, name="data_docs"),
    path("pipeline/data-docs/<path:path>", engineers.data_docs, name="data_docs_file"),
    path("pipeline/quarantine/", engineers.quarantine, name="quarantine"),
    path("pipeline/linkage/", engineers.linkage, name="linkage"),
    path("pipeline/linkage/report/", engineers.linkage_report, name="linkage_report"),
    path("pipeline/models/", engineers.models, name="pipeline_models"),
    # planners
    path("planning/", planners.overview, name="planning"),
    path("planning/scenario/", planners.scenario, name="planning_scenario"),
    path("planning/export/<str:name>.<str:fmt>", planners.export, name="planning_export"),
    # admins
    path("admin-area/audit/", admin_views.audit_log, name="audit_log"),
    path("admin-area/audit/export.csv", admin_views.audit_export, name="audit_export"),
    path("admin-area/users/", admin_views.users, name="users"),
    path("admin/", admin_site.urls),
]
if settings.OIDC_ENABLED:
    urlpatterns.append(path("oidc/", include("mozilla_django_oidc.urls")))

handler403 = errors.forbidden
handler404 = errors.not_found
handler500 = errors.server_error
_ = admin  # Django's admin module registers the stock models on import
