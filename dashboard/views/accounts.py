"""Signing in and out, and the second factor (TOTP through django-otp).

Owns the login page (Django's `LoginView`, throttled by django-axes), the TOTP verification and
enrolment pages, sign-out (POST only), the landing page that sends each role to its area, and the
health check.  A password sign-in reaches nothing else until a TOTP code is verified
(`middleware.SecondFactorMiddleware`); enrolment shows the secret once, as a QR code and as text.
"""

from __future__ import annotations

import base64

import segno
from django import forms
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from dashboard import audit
from dashboard.roles import roles_of, second_factor_done


class TokenForm(forms.Form):
    token = forms.CharField(
        label="Six-digit code from your authenticator app",
        min_length=6,
        max_length=8,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "pattern": "[0-9]*"}
        ),
    )


class SignIn(LoginView):
    template_name = "dashboard/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        from django.conf import settings

        ctx = super().get_context_data(**kwargs)
        ctx["expired"] = self.request.GET.get("expired") == "1"
        ctx["oidc_enabled"] = settings.OIDC_ENABLED
        return ctx


def _confirmed_device(user) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


@login_required
def mfa(request: HttpRequest) -> HttpResponse:
    """Verify a TOTP code, or send a user without a device to enrolment."""
    if second_factor_done(request):
        return redirect("home")
    device = _confirmed_device(request.user)
    if device is None:
        return redirect("mfa_setup")
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        allowed, why = device.verify_is_allowed()
        if allowed and device.verify_token(form.cleaned_data["token"]):
            otp_login(request, device)
            audit.record(request, "mfa_verified")
            return redirect("home")
        audit.record(request, "mfa_failed", throttled=not allowed)
        if not allowed:
            form.add_error("token", "Too many wrong codes: wait a few seconds, then try again.")
        else:
            form.add_error("token", "That code is not right, or has expired. Try the next one.")
    return render(request, "dashboard/mfa.html", {"form": form})


@login_required
def mfa_setup(request: HttpRequest) -> HttpResponse:
    """Enrol a TOTP device: shown once, confirmed with a first code."""
    if _confirmed_device(request.user) is not None:
        return redirect("mfa")
    device = TOTPDevice.objects.filter(user=request.user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=request.user, name="authenticator", confirmed=False)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if device.verify_token(form.cleaned_data["token"]):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            otp_login(request, device)
            audit.record(request, "mfa_enrolled")
            messages.success(request, "Your authenticator is set up.")
            return redirect("home")
        form.add_error("token", "That code is not right. Check the time on your device.")
    qr = segno.make(device.config_url, error="m")
    svg = qr.svg_data_uri(scale=4, dark="#000", light="#fff")
    secret = base64.b32encode(device.bin_key).decode().rstrip("=")
    return render(
        request,
        "dashboard/mfa_setup.html",
        {
            "form": form,
            "qr": svg,
            "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        },
    )


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect("login")


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Send each role to its own area (an admin to the audit log)."""
    roles = roles_of(request.user)
    for role, target in (
        ("analyst", "children"),
        ("engineer", "runs"),
        ("planner", "planning"),
        ("admin", "audit_log"),
    ):
        if role in roles:
            return redirect(target)
    return render(request, "dashboard/no_role.html", status=403)


def health(request: HttpRequest) -> JsonResponse:
    """Liveness for the server and load balancers: no data, no database write."""
    return JsonResponse({"status": "ok"})
