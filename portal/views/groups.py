"""Application groups with their desktop or RemoteApps, and who is assigned to them: listed, created,
edited; users and groups found by name for the assignment picker."""
from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from feed.models import ApplicationGroup, Assignment, Desktop, RemoteApp
from portal import forms
from portal.access import gone, staff_required
from portal.views.generic import form_context, form_page, save
from portal.views.responses import back

log = logging.getLogger(__name__)

PICKER_LIMIT = 10


@staff_required
@require_safe
def group_list(request: HttpRequest) -> HttpResponse:
    groups = (ApplicationGroup.objects.select_related("host_pool", "workspace")
              .annotate(n_assignments=Count("assignments", distinct=True), n_apps=Count("remote_apps", distinct=True))
              .order_by("name"))
    return render(request, "portal/group_list.html", {"groups": groups, "nav": "groups"})


@staff_required
def group_create(request: HttpRequest) -> HttpResponse:
    initial = {}
    if request.method == "GET" and str(request.GET.get("host_pool", "")).isdigit():
        initial["host_pool"] = int(request.GET["host_pool"])
    form = forms.ApplicationGroupForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid() and save(form, request):
        group = form.instance
        messages.success(request, f"Application group {group.name} created."
                         + (" Its desktop is ready: assign users to publish it." if group.is_desktop else
                            " Add RemoteApps and assign users to publish them."))
        log.info("%s created application group %s", request.user, group.name)
        return redirect("portal:group-detail", pk=group.pk)
    return form_page(request, "portal/form.html",
                     form_context("New application group", reverse("portal:groups"), "groups"), form)


def _group_or_gone(request: HttpRequest, pk: int) -> tuple[ApplicationGroup | None, HttpResponse | None]:
    group = ApplicationGroup.objects.select_related("host_pool", "workspace").filter(pk=pk).first()
    if group is None:
        return None, gone(request, "This application group", reverse("portal:groups"), "Back to application groups")
    return group, None


def _group_context(group: ApplicationGroup, assignment_form=None) -> dict:
    desktop = Desktop.objects.filter(application_group=group).defer("icon").first() if group.is_desktop else None
    return {
        "group": group, "nav": "groups", "desktop": desktop,
        "apps": list(group.remote_apps.defer("icon").order_by("name")) if not group.is_desktop else [],
        "assignments": list(group.assignments.select_related("user", "group").order_by("id")),
        "assignment_form": assignment_form or forms.AssignmentForm(application_group=group),
    }


@staff_required
@require_safe
def group_detail(request: HttpRequest, pk: int) -> HttpResponse:
    group, answer = _group_or_gone(request, pk)
    if answer:
        return answer
    return render(request, "portal/group_detail.html", _group_context(group))


@staff_required
def group_edit(request: HttpRequest, pk: int) -> HttpResponse:
    group, answer = _group_or_gone(request, pk)
    if answer:
        return answer
    form = forms.ApplicationGroupForm(request.POST or None, instance=group)
    if request.method == "POST" and form.is_valid() and save(form, request):
        messages.success(request, f"Application group {group.name} saved.")
        log.info("%s changed application group %s", request.user, group.name)
        return redirect("portal:group-detail", pk=group.pk)
    cancel = reverse("portal:group-detail", args=[pk])
    return form_page(request, "portal/form.html",
                     form_context(f"Edit application group {group.name}", cancel, "groups"), form)


@staff_required
def desktop_edit(request: HttpRequest, pk: int) -> HttpResponse:
    group, answer = _group_or_gone(request, pk)
    if answer:
        return answer
    desktop = Desktop.objects.filter(application_group=group).first()
    if desktop is None:
        return gone(request, "This group's desktop", reverse("portal:group-detail", args=[pk]),
                    "Back to the application group")
    form = forms.DesktopForm(request.POST or None, request.FILES or None, instance=desktop)
    if request.method == "POST" and form.is_valid() and save(form, request):
        messages.success(request, f"Desktop {desktop.friendly_name} saved.")
        log.info("%s changed the desktop of %s", request.user, group.name)
        return redirect("portal:group-detail", pk=group.pk)
    cancel = reverse("portal:group-detail", args=[pk])
    return form_page(request, "portal/form.html",
                     form_context(f"Edit the desktop of {group.name}", cancel, "groups", multipart=True), form)


@staff_required
def app_create(request: HttpRequest, pk: int) -> HttpResponse:
    group, answer = _group_or_gone(request, pk)
    if answer:
        return answer
    form = forms.RemoteAppForm(request.POST or None, request.FILES or None, application_group=group)
    if request.method == "POST" and form.is_valid() and save(form, request):
        messages.success(request, f"RemoteApp {form.instance.friendly_name} added to {group.name}.")
        log.info("%s added RemoteApp %s to %s", request.user, form.instance.name, group.name)
        return redirect("portal:group-detail", pk=group.pk)
    cancel = reverse("portal:group-detail", args=[pk])
    return form_page(request, "portal/form.html",
                     form_context(f"New RemoteApp in {group.name}", cancel, "groups", multipart=True), form)


@staff_required
def app_edit(request: HttpRequest, pk: int) -> HttpResponse:
    app = RemoteApp.objects.select_related("application_group").filter(pk=pk).first()
    if app is None:
        return gone(request, "This RemoteApp", reverse("portal:groups"), "Back to application groups")
    group = app.application_group
    form = forms.RemoteAppForm(request.POST or None, request.FILES or None, instance=app, application_group=group)
    if request.method == "POST" and form.is_valid() and save(form, request):
        messages.success(request, f"RemoteApp {app.friendly_name} saved.")
        log.info("%s changed RemoteApp %s of %s", request.user, app.name, group.name)
        return redirect("portal:group-detail", pk=group.pk)
    cancel = reverse("portal:group-detail", args=[group.pk])
    return form_page(request, "portal/form.html",
                     form_context(f"Edit RemoteApp {app.name}", cancel, "groups", multipart=True), form)


@staff_required
@require_POST
def assignment_create(request: HttpRequest, pk: int) -> HttpResponse:
    group, answer = _group_or_gone(request, pk)
    if answer:
        return answer
    form = forms.AssignmentForm(request.POST, application_group=group)
    if form.is_valid() and save(form, request):
        who = form.instance.user or form.instance.group
        messages.success(request, f"{who} is assigned to {group.name}.")
        log.info("%s assigned %s to %s", request.user, who, group.name)
        return redirect("portal:group-detail", pk=group.pk)
    return render(request, "portal/group_detail.html", _group_context(group, form), status=400)


@staff_required
@require_POST
def assignment_delete(request: HttpRequest, pk: int) -> HttpResponse:
    assignment = Assignment.objects.select_related("user", "group", "application_group").filter(pk=pk).first()
    if assignment is None:
        # Removing what is already gone is what the admin wanted: say so, no error page.
        messages.info(request, "That assignment had already been removed.")
        return redirect(back(request, reverse("portal:groups")))
    group = assignment.application_group
    who = assignment.user or assignment.group
    assignment.delete()
    log.info("%s removed %s from %s", request.user, who, group.name)
    messages.success(request, f"{who} is no longer assigned to {group.name}.")
    return redirect("portal:group-detail", pk=group.pk)


@staff_required
@require_safe
def principal_search(request: HttpRequest) -> JsonResponse:
    """Users and groups whose name contains ``q``, for the assignment picker (at most 10 of each)."""
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
