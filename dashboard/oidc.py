"""Single sign-on through the council's OpenID Connect provider (mozilla-django-oidc).

Owns `RoleMappingOIDCBackend`: a user signs in with the provider, and their role comes from the
provider's groups claim (`OIDC_ROLES_CLAIM`, groups named in `OIDC_ROLE_GROUPS`), re-read at every
sign-in so that a role removed at the council is removed here.  A user with no mapped group is
refused.  Users are matched by the provider's subject (`sub`), stored as the user name
`oidc:<sub>`; the provider's own second factor stands in for the app's TOTP (the session is marked
`joinedup_sso`).
"""

from __future__ import annotations

from django.conf import settings
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from dashboard.roles import ROLES, set_role


def role_from_claims(claims: dict) -> str | None:
    """The one role the claims grant (the most privileged when several: admin, engineer,
    analyst, planner), or None."""
    groups = claims.get(settings.OIDC_ROLES_CLAIM) or []
    if isinstance(groups, str):
        groups = [groups]
    granted = {role for role, group in settings.OIDC_ROLE_GROUPS.items() if group in groups}
    for role in ("admin", "engineer", "analyst", "planner"):
        if role in granted:
            return role
    return None


class RoleMappingOIDCBackend(OIDCAuthenticationBackend):
    def verify_claims(self, claims: dict) -> bool:
        return bool(claims.get("sub")) and role_from_claims(claims) is not None

    def filter_users_by_claims(self, claims: dict):
        sub = claims.get("sub")
        if not sub:
            return self.UserModel.objects.none()
        return self.UserModel.objects.filter(username=f"oidc:{sub}"[:150])

    def create_user(self, claims: dict):
        user = self.UserModel.objects.create_user(
            f"oidc:{claims['sub']}"[:150], email=claims.get("email", "")
        )
        user.set_unusable_password()
        user.save()
        return self.update_user(user, claims)

    def update_user(self, user, claims: dict):
        role = role_from_claims(claims)
        if role in ROLES:
            set_role(user, role)
        return user

    def authenticate(self, request, **kwargs):
        user = super().authenticate(request, **kwargs)
        if user is not None and request is not None:
            request.session["joinedup_sso"] = True
        return user
