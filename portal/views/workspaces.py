"""Workspaces: what users subscribe to; listed, created and edited."""
from __future__ import annotations

import logging

from django.contrib import messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_safe

from feed.models import Workspace
from portal import forms
from portal.access import gone, staff_required
from portal.views.generic import form_context, form_page, save

log = logging.getLogger(__name__)


@staff_required
@require_safe
def workspace_list(request: HttpRequest) -> HttpResponse:
    workspaces = Workspace.objects.annotate(n_groups=Count("application_groups")).order_by("name")
    return render(request, "portal/workspace_list.html", {"workspaces": workspaces, "nav": "workspaces"})


@staff_required
def workspace_create(request: HttpRequest) -> HttpResponse:
    form = forms.WorkspaceForm(request.POST or None)
    if request.method == "POST" and form.is_valid() and save(form, request):
        messages.success(request, f"Workspace {form.instance.display_name} created.")
        log.info("%s created workspace %s", request.user, form.instance.name)
        return redirect("portal:workspaces")
    return form_page(request, "portal/form.html",
                     form_context("New workspace", reverse("portal:workspaces"), "workspaces"), form)


@staff_required
def workspace_edit(request: HttpRequest, pk: int) -> HttpResponse:
    workspace = Workspace.objects.filter(pk=pk).first()
    if workspace is None:
        return gone(request, "This workspace", reverse("portal:workspaces"), "Back to workspaces")
    form = forms.WorkspaceForm(request.POST or None, instance=workspace)
    if request.method == "POST" and form.is_valid() and save(form, request):
        messages.success(request, f"Workspace {workspace.display_name} saved.")
        log.info("%s changed workspace %s", request.user, workspace.name)
        return redirect("portal:workspaces")
    return form_page(request, "portal/form.html",
                     form_context(f"Edit workspace {workspace.name}", reverse("portal:workspaces"), "workspaces"),
                     form)
