"""Request middleware of the dashboard: session limits, the second factor, caching, headers.

Owns:

* `SessionLimitsMiddleware`: a session ends after `IDLE_SECONDS` (to the minute) without a request and after
  `MAX_SESSION_SECONDS` in all, whatever the cookie says (both audited as `session_expired`);
* `SecondFactorMiddleware`: a user signed in with a password reaches nothing but the second-factor
  pages until a TOTP code is verified (single sign-on users bring the provider's own);
* `NoStoreMiddleware`: pages for signed-in users are never cached by browsers or proxies;
* `PermissionsPolicyMiddleware`: turns off browser features the app never uses;
* `SnapshotUnavailableMiddleware`: a page whose read model is missing or of an unknown schema
  answers 503 with the reason (one place, not a try in every view).
"""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib.auth import logout
from django.shortcuts import redirect
from django.urls import reverse

from dashboard.roles import second_factor_done

#: how often a request refreshes the session's last-seen time (so idle expiry is exact to this
#: many seconds, and a burst of requests costs one session write, not one each)
SEEN_RESOLUTION = 60

#: paths reachable before the second factor (sign-in, sign-out, the factor itself, assets)
_OPEN_PREFIXES = ("/accounts/", "/static/", "/oidc/", "/health")


class SessionLimitsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            now = time.time()
            s = request.session
            seen = s.get("joinedup_seen_at", now)
            started = s.get("joinedup_login_at", now)
            why = None
            if now - seen > settings.IDLE_SECONDS:
                why = "idle"
            elif now - started > settings.MAX_SESSION_SECONDS:
                why = "maximum_length"
            if why:
                from dashboard import audit

                audit.record(request, "session_expired", reason=why)
                logout(request)
                return redirect(f"{reverse('login')}?expired=1")
            if now - seen >= SEEN_RESOLUTION:
                s["joinedup_seen_at"] = now  # a session write at most once a minute
        return self.get_response(request)


class SecondFactorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and not request.path.startswith(_OPEN_PREFIXES)
            and not second_factor_done(request)
        ):
            return redirect("mfa")
        return self.get_response(request)


class NoStoreMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not request.path.startswith("/static/"):
            response["Cache-Control"] = "no-store, max-age=0"
            response["Pragma"] = "no-cache"
        return response


class PermissionsPolicyMiddleware:
    POLICY = (
        "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
        "microphone=(), payment=(), usb=(), interest-cohort=()"
    )

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Permissions-Policy", self.POLICY)
        response.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        return response


class SnapshotUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        from dashboard.readmodels import SnapshotUnavailable

        if isinstance(exception, SnapshotUnavailable):
            from dashboard.views.errors import snapshot_unavailable

            return snapshot_unavailable(request, exception)
        return None
