"""Role assignments (docs/roles.md): who holds which built-in role where; listed, given and taken away.
Superusers only, as only AVD's Owner and User Access Administrator assign roles."""
from __future__ import annotations

import logging

from django.contrib import messages
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from core import audit, scopes
from core.models import RoleAssignment
from core.roles import ROLES
from portal import forms
from portal.access import forbidden, portal_user_required
from portal.views.responses import form_page

log = logging.getLogger(__name__)


def _scope_names(assignments: list[RoleAssignment]) -> dict[tuple[str, int], str]:
    """The name of each scope object named, one query per scope type."""
    names: dict[tuple[str, int], str] = {}
    for scope_type in {a.scope_type for a in assignments if a.scope_id is not None}:
        model = scopes.scope_model(scope_type)
        ids = {a.scope_id for a in assignments if a.scope_type == scope_type}
        for pk, obj in (model._default_manager.in_bulk(ids) if model is not None else {}).items():
            names[(scope_type, pk)] = str(obj)
    return names


@portal_user_required
def role_list(request: HttpRequest) -> HttpResponse:
    """Every role assignment, and the form that gives one (a POST here)."""
    if not request.user.is_superuser:
        return forbidden(request, "manage role assignments")
    form = forms.RoleAssignmentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():  # the grant and its audit event (core/audit.py) together
                assignment = form.save()
                audit.record_saved(assignment, None, request=request)
        except IntegrityError as exc:
            form.add_error(None, f"The role could not be given: {exc}")
        else:
            log.info("%s gave %s", request.user, assignment)
            messages.success(request, f"Given: {assignment}.")
            return redirect("portal:roles")
    assignments = list(RoleAssignment.objects.select_related("user", "group").order_by("role", "scope_type", "pk"))
    names = _scope_names(assignments)
    rows = [(a, names.get((a.scope_type, a.scope_id), "everything" if a.scope_id is None else "(gone)"))
            for a in assignments]
    context = {"rows": rows, "roles": ROLES.values(), "nav": "roles"}
    return form_page(request, "portal/role_list.html", context, form)


@portal_user_required
@require_POST
def role_remove(request: HttpRequest, pk: int) -> HttpResponse:
    if not request.user.is_superuser:
        return forbidden(request, "manage role assignments")
    assignment = RoleAssignment.objects.select_related("user", "group").filter(pk=pk).first()
    if assignment is None:
        messages.info(request, "That role assignment had already been removed.")
    else:
        with transaction.atomic():
            audit.record_deleted(assignment, request=request)
            assignment.delete()
        log.info("%s took away %s", request.user, assignment)
        messages.success(request, f"Taken away: {assignment}.")
    return redirect("portal:roles")
