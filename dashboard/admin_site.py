"""Django's admin, behind the admin role and a verified second factor.

Owns the admin site used for users and roles (`auth.User`, `auth.Group`) and a read-only view of
the audit log (no add, change or delete, whatever the user's permissions).
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User

from dashboard.models import AuditEntry
from dashboard.roles import roles_of, second_factor_done


class JoinedUpAdminSite(admin.AdminSite):
    site_header = "Joined-Up administration"
    site_title = "Joined-Up admin"

    def has_permission(self, request) -> bool:
        user = request.user
        return bool(user.is_active and "admin" in roles_of(user) and second_factor_done(request))


site = JoinedUpAdminSite(name="joinedup_admin")
site.register(User, UserAdmin)
site.register(Group, GroupAdmin)


@admin.register(AuditEntry, site=site)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("at", "username", "role", "action", "target", "ip_address", "status")
    list_filter = ("action", "role")
    search_fields = ("username", "target")
    readonly_fields = [f.name for f in AuditEntry._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def _login(request, extra_context=None):
    """The admin's sign-in is the app's own (lockout, second factor, audit)."""
    from django.contrib.auth.views import redirect_to_login

    return redirect_to_login(request.get_full_path())


site.login = _login
