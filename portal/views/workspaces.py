"""Workspaces: what users subscribe to; listed, created and edited."""
from __future__ import annotations

from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from feed.models import Workspace
from portal import forms
from core.authorization import grants_for_request
from portal.access import forbidden, portal_user_required, readable
from portal.views.generic import ObjectEditView
from portal.views.responses import GonePage, Link

WORKSPACE_GONE = GonePage("This workspace", Link("portal:workspaces"), "Back to workspaces")


@portal_user_required
@require_safe
def workspace_list(request: HttpRequest) -> HttpResponse:
    if not grants_for_request(request).anywhere("workspace.view"):
        return forbidden(request, "read workspaces")
    workspaces = readable(request, Workspace.objects.all()).annotate(n_groups=Count("application_groups")).order_by("name")
    return render(request, "portal/workspace_list.html", {"workspaces": workspaces, "nav": "workspaces"})


class WorkspaceCreateView(ObjectEditView):
    form_class = forms.WorkspaceForm
    nav = "workspaces"
    title = "New workspace"
    cancel_url = success_url = Link("portal:workspaces")
    success_message = "Workspace {object.display_name} created."
    log_message = "created workspace {object.name}"


class WorkspaceEditView(ObjectEditView):
    queryset = Workspace.objects.all()
    gone = WORKSPACE_GONE
    form_class = forms.WorkspaceForm
    nav = "workspaces"
    title = "Edit workspace {object.name}"
    cancel_url = success_url = Link("portal:workspaces")
    success_message = "Workspace {object.display_name} saved."
    log_message = "changed workspace {object.name}"
