"""Who may use the REST API's management endpoints: holders of a role that grants the action (core/roles.py,
core/authorization.py), at a scope that holds the object; superusers everywhere. Staff status and Django's
model permissions grant nothing here (docs/roles.md)."""
from __future__ import annotations

from rest_framework import permissions

from core.authorization import ADD, CHANGE, DELETE, VIEW, action_for, grants_for_request

# The viewset actions whose HTTP method says what they do.
STANDARD_VERBS = {"list": VIEW, "retrieve": VIEW, "metadata": VIEW, "create": ADD, "update": CHANGE,
                  "partial_update": CHANGE, "destroy": DELETE}


def required_action(request, view, model) -> str | None:
    """The action (``<kind>.<verb>``) this request does on ``model``'s objects; None when nothing says (refused).

    Any other viewset action (drain, registration-token) acts on an existing object whatever its method,
    and names its verb in the view's ``role_verbs`` ({viewset action: verb}); a plain APIView names it in
    ``role_verb``."""
    name = getattr(view, "action", None)
    verb = getattr(view, "role_verbs", {}).get(name) or getattr(view, "role_verb", None) or STANDARD_VERBS.get(name)
    if verb is None and name is None and request.method in permissions.SAFE_METHODS:
        verb = VIEW
    return action_for(model, verb) if verb is not None else None


class HasRole(permissions.BasePermission):
    """The endpoint needs its action held somewhere (else 403); the object needs it held at a scope that
    holds the object (else 403; an object the caller may not even read is a 404: list querysets are
    filtered by core.api.viewsets)."""

    message = "None of your roles grants this action here."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        if getattr(view, "_ignore_model_permissions", False):
            return True  # The API root: a list of links, no data.
        grants = grants_for_request(request)
        if grants.superuser:
            return True
        action = required_action(request, view, view.queryset.model)
        return action is not None and grants.anywhere(action)

    def has_object_permission(self, request, view, obj) -> bool:
        action = required_action(request, view, type(obj))
        return action is not None and grants_for_request(request).allows(action, obj)
