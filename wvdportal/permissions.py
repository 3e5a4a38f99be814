"""Who may manage what: staff, or users holding the model permission for the action."""
from __future__ import annotations

from rest_framework import permissions

# Reading needs the view permission too: a plain user sees no one's data through management endpoints.
PERMS_MAP = {
    "GET": ["%(app_label)s.view_%(model_name)s"],
    "HEAD": ["%(app_label)s.view_%(model_name)s"],
    "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
    "POST": ["%(app_label)s.add_%(model_name)s"],
    "PUT": ["%(app_label)s.change_%(model_name)s"],
    "PATCH": ["%(app_label)s.change_%(model_name)s"],
    "DELETE": ["%(app_label)s.delete_%(model_name)s"],
}


class IsStaffOrModelPermission(permissions.DjangoModelPermissions):
    perms_map = PERMS_MAP

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        if user.is_staff:
            return True
        return super().has_permission(request, view)
