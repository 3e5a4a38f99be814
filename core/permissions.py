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
# The viewset actions whose HTTP method says what they do; any other action (drain, registration-token)
# acts on an existing object, whatever its method, so it needs the change permission.
STANDARD_ACTIONS = {"list", "retrieve", "create", "update", "partial_update", "destroy", "metadata", None}
CHANGE_PERMS = ["%(app_label)s.change_%(model_name)s"]


class IsStaffOrModelPermission(permissions.DjangoModelPermissions):
    perms_map = PERMS_MAP

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        if user.is_staff:
            return True
        if getattr(view, "_ignore_model_permissions", False):
            return True  # The API root: a list of links, no data.
        model = self._queryset(view).model
        if getattr(view, "action", None) not in STANDARD_ACTIONS and request.method not in permissions.SAFE_METHODS:
            required = [perm % {"app_label": model._meta.app_label, "model_name": model._meta.model_name}
                        for perm in CHANGE_PERMS]
        else:
            required = self.get_required_permissions(request.method, model)
        return user.has_perms(required)
