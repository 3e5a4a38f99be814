"""Application groups with their desktop or RemoteApps, and who is assigned to them: listed, created,
edited; users and groups found by name for the assignment picker."""
from __future__ import annotations

import logging
import re

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from core import audit
from feed.models import ApplicationGroup, Assignment, Desktop, RemoteApp
from portal import forms
from core.authorization import grants_for_request
from portal.access import allowed, forbidden, portal_user_required, readable
from portal.views.generic import ObjectEditView
from portal.views.responses import GonePage, Link, back

log = logging.getLogger(__name__)
POOL_ID = re.compile(r"[0-9]{1,18}")  # a primary key the database can hold

PICKER_LIMIT = 10
GROUPS = ApplicationGroup.objects.select_related("host_pool", "workspace")
GROUP_GONE = GonePage("This application group", Link("portal:groups"), "Back to application groups")


@portal_user_required
@require_safe
def group_list(request: HttpRequest) -> HttpResponse:
    if not grants_for_request(request).anywhere("applicationgroup.view"):
        return forbidden(request, "read application groups")
    groups = (readable(request, ApplicationGroup.objects.select_related("host_pool", "workspace"))
              .annotate(n_assignments=Count("assignments", distinct=True), n_apps=Count("remote_apps", distinct=True))
              .order_by("name"))
    return render(request, "portal/group_list.html", {"groups": groups, "nav": "groups"})


class GroupCreateView(ObjectEditView):
    form_class = forms.ApplicationGroupForm
    nav = "groups"
    title = "New application group"
    cancel_url = Link("portal:groups")
    success_url = Link("portal:group-detail", of="object")
    success_message = "Application group {object.name} created. {next_step}"
    log_message = "created application group {object.name}"

    def get_initial(self) -> dict:
        # Opened from a pool's page: that pool is chosen.
        chosen = self.request.GET.get("host_pool", "")
        if self.request.method == "GET" and POOL_ID.fullmatch(chosen):  # not isdigit(): "²" is a digit too
            return {"host_pool": int(chosen)}
        return {}

    def message_fields(self) -> dict:
        next_step = ("Its desktop is ready: assign users to publish it." if self.object.is_desktop else
                     "Add RemoteApps and assign users to publish them.")
        return {**super().message_fields(), "next_step": next_step}


def _group_context(request: HttpRequest, group: ApplicationGroup, assignment_form=None) -> dict:
    desktop = (readable(request, Desktop.objects.filter(application_group=group)).defer("icon").first()
               if group.is_desktop else None)
    return {
        "group": group, "nav": "groups", "desktop": desktop,
        "apps": list(readable(request, group.remote_apps.defer("icon")).order_by("name")) if not group.is_desktop
        else [],
        "assignments": list(readable(request, group.assignments.select_related("user", "group")).order_by("id")),
        "assignment_form": assignment_form or forms.AssignmentForm(),
    }


@portal_user_required
@require_safe
def group_detail(request: HttpRequest, pk: int) -> HttpResponse:
    group = readable(request, GROUPS).filter(pk=pk).first()
    if group is None:
        return GROUP_GONE.answer(request)
    return render(request, "portal/group_detail.html", _group_context(request, group))


class GroupEditView(ObjectEditView):
    queryset = GROUPS
    gone = GROUP_GONE
    form_class = forms.ApplicationGroupForm
    nav = "groups"
    title = "Edit application group {object.name}"
    cancel_url = success_url = Link("portal:group-detail", of="object")
    success_message = "Application group {object.name} saved."
    log_message = "changed application group {object.name}"


class DesktopEditView(ObjectEditView):
    """The one desktop of a desktop group, found through the group (the URL names the group)."""

    parent_queryset = GROUPS
    parent_gone = GROUP_GONE
    queryset = Desktop.objects.all()
    parent_field = "application_group"
    gone = GonePage("This group's desktop", Link("portal:group-detail", of="parent"), "Back to the application group")
    form_class = forms.DesktopForm
    nav = "groups"
    title = "Edit the desktop of {parent.name}"
    cancel_url = success_url = Link("portal:group-detail", of="parent")
    success_message = "Desktop {object.friendly_name} saved."
    log_message = "changed the desktop of {parent.name}"


class AppCreateView(ObjectEditView):
    parent_queryset = GROUPS
    parent_gone = GROUP_GONE
    parent_field = "application_group"
    form_class = forms.RemoteAppForm
    nav = "groups"
    title = "New RemoteApp in {parent.name}"
    cancel_url = success_url = Link("portal:group-detail", of="parent")
    success_message = "RemoteApp {object.friendly_name} added to {parent.name}."
    log_message = "added RemoteApp {object.name} to {parent.name}"


class AppEditView(ObjectEditView):
    queryset = RemoteApp.objects.select_related("application_group")
    gone = GonePage("This RemoteApp", Link("portal:groups"), "Back to application groups")
    parent_field = "application_group"
    form_class = forms.RemoteAppForm
    nav = "groups"
    title = "Edit RemoteApp {object.name}"
    cancel_url = success_url = Link("portal:group-detail", of="parent")
    success_message = "RemoteApp {object.friendly_name} saved."
    log_message = "changed RemoteApp {object.name} of {parent.name}"


class AssignmentCreateView(ObjectEditView):
    """Posted from the group's page; a refusal shows that page again, the errors beside the picker."""

    http_method_names = ["post"]
    parent_queryset = GROUPS
    parent_gone = GROUP_GONE
    parent_field = "application_group"
    form_class = forms.AssignmentForm
    template_name = "portal/group_detail.html"
    nav = "groups"
    success_url = Link("portal:group-detail", of="parent")
    success_message = "{who} is assigned to {parent.name}."
    log_message = "assigned {who} to {parent.name}"

    def form_data(self) -> tuple:
        return self.request.POST, None  # only ever posted: even an empty POST is an answer, with its errors

    def message_fields(self) -> dict:
        return {**super().message_fields(), "who": self.object.user or self.object.group}

    def get_extra_context(self, form) -> dict:
        return _group_context(self.request, self.parent, form)


@portal_user_required
@require_POST
def assignment_delete(request: HttpRequest, pk: int) -> HttpResponse:
    assignment = readable(request, Assignment.objects.select_related("user", "group", "application_group")).filter(
        pk=pk).first()
    if assignment is None:
        # Removing what is already gone is what the admin wanted: say so, no error page.
        messages.info(request, "That assignment had already been removed.")
        return redirect(back(request, reverse("portal:groups")))
    group = assignment.application_group
    who = assignment.user or assignment.group
    if not allowed(request, "delete", assignment):
        return forbidden(request, f"remove assignments from {group.name}")
    with transaction.atomic():
        audit.record_deleted(assignment, request=request)
        assignment.delete()
    log.info("%s removed %s from %s", request.user, who, group.name)
    messages.success(request, f"{who} is no longer assigned to {group.name}.")
    return redirect("portal:group-detail", pk=group.pk)


@portal_user_required
@require_safe
def principal_search(request: HttpRequest) -> JsonResponse:
    """Users and groups whose name contains ``q``, for the assignment picker (at most 10 of each): for those
    who may assign somewhere."""
    if not grants_for_request(request).anywhere("assignment.add"):
        return JsonResponse({"detail": "None of your roles lets you assign."}, status=403)
    query = request.GET.get("q", "").strip()[:forms.SEARCH_MAX]
    if not query:
        return JsonResponse({"results": []})
    users = (get_user_model().objects.filter(is_active=True)
             .filter(Q(username__icontains=query) | Q(first_name__icontains=query) | Q(last_name__icontains=query)
                     | Q(email__icontains=query))
             .order_by("username")[:PICKER_LIMIT])
    groups = Group.objects.filter(name__icontains=query).order_by("name")[:PICKER_LIMIT]
    results = [{"kind": "user", "name": u.get_username(),
                "label": f"{u.get_full_name()} ({u.get_username()})" if u.get_full_name() else u.get_username()}
               for u in users]
    results += [{"kind": "group", "name": g.name, "label": f"{g.name} (group)"} for g in groups]
    return JsonResponse({"results": results})
