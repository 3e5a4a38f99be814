"""The admin portal's pages. Thin views: the numbers come from overview.py, the rules from the models'
full_clean (forms.py), host actions from hostagent.commands; every view is staff only (access.py).

Pages that show live state render their changing parts from partial templates; the same view answers
``?fragments=1`` with those parts as JSON, which the page's script fetches when the WebSocket says
something changed (live.py).
"""
from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.paginator import Paginator
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST, require_safe

from broker.hostbus import CommandResult
from broker.models import Connection, HostPool, SessionHost, UserSession
from feed.models import ApplicationGroup, Assignment, Desktop, RemoteApp, Workspace
from hostagent import commands
from portal import charts, forms, live, overview
from portal.access import gone, staff_required
from wire.errors import FIX_BY_LABELS, STAGES, describe

log = logging.getLogger(__name__)

PAGE_SIZE = 50
# A portal request waits this long for the agent's answer: long enough for a loaded host, short enough
# for a person watching the page.
COMMAND_TIMEOUT = 10.0


# --- helpers ---------------------------------------------------------------------------------------

def _page(request: HttpRequest, template: str, context: dict, *, fragments: dict[str, str] | None = None,
          status: int = 200) -> HttpResponse:
    """The page, or with ``?fragments=1`` its live parts as JSON ``{"fragments": {key: html}}``."""
    if fragments and request.GET.get("fragments") == "1":
        return JsonResponse({"fragments": {key: render_to_string(name, context, request)
                                           for key, name in fragments.items()}})
    return render(request, template, context, status=status)


def _form_page(request: HttpRequest, template: str, context: dict, form) -> HttpResponse:
    """A form page; a bound invalid form answers 400, with the errors beside what was typed."""
    status = 400 if form.is_bound and form.errors else 200
    return render(request, template, {**context, "form": form}, status=status)


def _save(form, request: HttpRequest) -> bool:
    """Save a valid form; a database rule that only the database could see (a race with another admin,
    a trigger) becomes a form error instead of a 500."""
    try:
        with transaction.atomic():
            form.save()
    except IntegrityError as exc:
        log.info("portal save of %s refused by the database: %s", form.instance._meta.label, exc)
        form.add_error(None, _integrity_message(exc))
        return False
    return True


def _integrity_message(exc: IntegrityError) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    # Our triggers raise readable sentences (core.dbrules); constraint names are not for people.
    if text and " " in text and "constraint" not in text.lower() and "foreign key" not in text.lower():
        return f"The database refused the change: {text}"
    return ("The change could not be saved: it conflicts with a change made meanwhile (a name now taken, or a "
            "related object deleted). Reload the page and try again.")


def _back(request: HttpRequest, default: str) -> str:
    """The page to return to after an action: the form's ``next`` when it is one of ours."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return default


def _server_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/").rstrip("/")


# --- dashboard -------------------------------------------------------------------------------------

DASHBOARD_FRAGMENTS = {"summary": "portal/_dashboard_cards.html", "pools": "portal/_pool_table.html",
                       "attention": "portal/_attention.html"}


@staff_required
@require_safe
def dashboard(request: HttpRequest) -> HttpResponse:
    rows, attention = overview.pools_with_counts(), overview.hosts_needing_attention()
    context = {"pool_rows": rows, "attention": attention, "totals": overview.estate_totals(rows, len(attention)),
               "nav": "dashboard"}
    if request.GET.get("fragments") != "1":
        stats = overview.connection_stats()
        context.update(
            stats=stats,
            column_chart=charts.hourly_columns(stats.hours),
            error_chart=charts.horizontal_bars([(e.code, e.count) for e in stats.by_error]),
        )
    return _page(request, "portal/dashboard.html", context, fragments=DASHBOARD_FRAGMENTS)


# --- host pools ------------------------------------------------------------------------------------

POOL_FRAGMENTS = {"hosts": "portal/_host_table.html", "pool-counts": "portal/_pool_counts.html"}


@staff_required
@require_safe
def pool_list(request: HttpRequest) -> HttpResponse:
    return _page(request, "portal/pool_list.html", {"pool_rows": overview.pools_with_counts(), "nav": "pools"},
                 fragments={"pools": "portal/_pool_table.html"})


@staff_required
def pool_create(request: HttpRequest) -> HttpResponse:
    form = forms.HostPoolForm(request.POST or None)
    if request.method == "POST" and form.is_valid() and _save(form, request):
        messages.success(request, f"Host pool {form.instance.name} created. Add hosts with a registration token.")
        log.info("%s created host pool %s", request.user, form.instance.name)
        return redirect("portal:pool-detail", pk=form.instance.pk)
    return _form_page(request, "portal/form.html", _form_context("New host pool", reverse("portal:pools"),
                                                                  "pools"), form)


def _form_context(title: str, cancel_url: str, nav: str, **extra) -> dict:
    return {"title": title, "cancel_url": cancel_url, "nav": nav, **extra}


def _pool_context(pool: HostPool) -> dict:
    row = overview.pools_with_counts(HostPool.objects.filter(pk=pool.pk))[0]
    groups = list(pool.application_groups.select_related("workspace").order_by("name"))
    return {"pool": pool, "row": row, "hosts": overview.hosts_of(pool), "groups": groups, "nav": "pools",
            "live_pool_id": pool.pk}


@staff_required
@require_safe
def pool_detail(request: HttpRequest, pk: int) -> HttpResponse:
    pool = HostPool.objects.filter(pk=pk).first()
    if pool is None:
        return gone(request, "This host pool", reverse("portal:pools"), "Back to host pools")
    return _page(request, "portal/pool_detail.html", _pool_context(pool), fragments=POOL_FRAGMENTS)


@staff_required
def pool_edit(request: HttpRequest, pk: int) -> HttpResponse:
    pool = HostPool.objects.filter(pk=pk).first()
    if pool is None:
        return gone(request, "This host pool", reverse("portal:pools"), "Back to host pools")
    form = forms.HostPoolForm(request.POST or None, instance=pool)
    if request.method == "POST" and form.is_valid() and _save(form, request):
        messages.success(request, f"Host pool {pool.name} saved.")
        log.info("%s changed host pool %s: %s", request.user, pool.name, ", ".join(form.changed_data))
        return redirect("portal:pool-detail", pk=pool.pk)
    cancel = reverse("portal:pool-detail", args=[pk])
    return _form_page(request, "portal/form.html", _form_context(f"Edit host pool {pool.name}", cancel, "pools"),
                      form)


@staff_required
@require_POST
def pool_token(request: HttpRequest, pk: int) -> HttpResponse:
    """Issue a registration token and show it in this response only: nothing stores it in clear."""
    pool = HostPool.objects.filter(pk=pk).first()
    if pool is None:
        return gone(request, "This host pool", reverse("portal:pools"), "Back to host pools")
    token, expires_at = pool.issue_registration_token()
    log.info("%s generated a registration token for host pool %s (valid until %s)", request.user, pool.name,
             expires_at.isoformat())
    context = _pool_context(pool)
    context.update(new_token=token, token_expires_at=expires_at, server_url=_server_url(request),
                   fragments_url=reverse("portal:pool-detail", args=[pool.pk]),
                   suggested_host_name=f"{pool.name}-{len(context['hosts']) + 1:02d}"[:63])
    response = render(request, "portal/pool_detail.html", context)
    response["Cache-Control"] = "no-store"
    return response


@staff_required
@require_POST
def pool_token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    pool = HostPool.objects.filter(pk=pk).first()
    if pool is None:
        return gone(request, "This host pool", reverse("portal:pools"), "Back to host pools")
    pool.revoke_registration_token()
    log.info("%s revoked the registration token of host pool %s", request.user, pool.name)
    messages.success(request, f"The registration token of {pool.name} is revoked: no new host can join with it.")
    return redirect("portal:pool-detail", pk=pool.pk)


# --- session hosts ---------------------------------------------------------------------------------

HOST_FRAGMENTS = {"host": "portal/_host_state.html", "host-sessions": "portal/_host_sessions.html"}


@staff_required
@require_safe
def host_detail(request: HttpRequest, pk: int) -> HttpResponse:
    host = SessionHost.objects.select_related("host_pool", "assigned_user").filter(pk=pk).first()
    if host is None:
        return gone(request, "This session host", reverse("portal:pools"), "Back to host pools")
    overview._decorate([host])
    context = {
        "host": host, "nav": "pools", "live_host_id": host.pk,
        "checks": overview.health_checks(host),
        "sessions": list(host.user_sessions.select_related("user").order_by("session_id")),
        "changes": list(host.status_changes.all()[:20]),
    }
    return _page(request, "portal/host_detail.html", context, fragments=HOST_FRAGMENTS)


@staff_required
@require_POST
def host_drain(request: HttpRequest, pk: int) -> HttpResponse:
    """Drain mode on (``allow=0``) or off (``allow=1``)."""
    host = SessionHost.objects.filter(pk=pk).first()
    if host is None:
        return gone(request, "This session host", reverse("portal:pools"), "Back to host pools")
    allow = request.POST.get("allow")
    if allow not in {"0", "1"}:
        messages.error(request, "Choose whether the host takes new sessions.")
        return redirect(_back(request, reverse("portal:pool-detail", args=[host.host_pool_id])))
    host.set_allow_new_sessions(allow == "1")
    live.notify_host_changed(host.pk, host.host_pool_id)  # set_allow_new_sessions updates without a signal
    log.info("%s turned drain mode %s on host %s", request.user, "off" if allow == "1" else "on", host.name)
    if allow == "1":
        messages.success(request, f"{host.name} takes new sessions again.")
    else:
        messages.success(request, f"{host.name} is in drain mode: no new sessions; its users can still reconnect.")
    return redirect(_back(request, reverse("portal:pool-detail", args=[host.host_pool_id])))


# --- workspaces ------------------------------------------------------------------------------------

@staff_required
@require_safe
def workspace_list(request: HttpRequest) -> HttpResponse:
    workspaces = Workspace.objects.annotate(n_groups=Count("application_groups")).order_by("name")
    return render(request, "portal/workspace_list.html", {"workspaces": workspaces, "nav": "workspaces"})


@staff_required
def workspace_create(request: HttpRequest) -> HttpResponse:
    form = forms.WorkspaceForm(request.POST or None)
    if request.method == "POST" and form.is_valid() and _save(form, request):
        messages.success(request, f"Workspace {form.instance.display_name} created.")
        log.info("%s created workspace %s", request.user, form.instance.name)
        return redirect("portal:workspaces")
    return _form_page(request, "portal/form.html",
                      _form_context("New workspace", reverse("portal:workspaces"), "workspaces"), form)


@staff_required
def workspace_edit(request: HttpRequest, pk: int) -> HttpResponse:
    workspace = Workspace.objects.filter(pk=pk).first()
    if workspace is None:
        return gone(request, "This workspace", reverse("portal:workspaces"), "Back to workspaces")
    form = forms.WorkspaceForm(request.POST or None, instance=workspace)
    if request.method == "POST" and form.is_valid() and _save(form, request):
        messages.success(request, f"Workspace {workspace.display_name} saved.")
        log.info("%s changed workspace %s", request.user, workspace.name)
        return redirect("portal:workspaces")
    return _form_page(request, "portal/form.html",
                      _form_context(f"Edit workspace {workspace.name}", reverse("portal:workspaces"), "workspaces"),
                      form)


# --- application groups, desktops, RemoteApps ------------------------------------------------------

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
    if request.method == "POST" and form.is_valid() and _save(form, request):
        group = form.instance
        messages.success(request, f"Application group {group.name} created."
                         + (" Its desktop is ready: assign users to publish it." if group.is_desktop else
                            " Add RemoteApps and assign users to publish them."))
        log.info("%s created application group %s", request.user, group.name)
        return redirect("portal:group-detail", pk=group.pk)
    return _form_page(request, "portal/form.html",
                      _form_context("New application group", reverse("portal:groups"), "groups"), form)


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
    if request.method == "POST" and form.is_valid() and _save(form, request):
        messages.success(request, f"Application group {group.name} saved.")
        log.info("%s changed application group %s", request.user, group.name)
        return redirect("portal:group-detail", pk=group.pk)
    cancel = reverse("portal:group-detail", args=[pk])
    return _form_page(request, "portal/form.html",
                      _form_context(f"Edit application group {group.name}", cancel, "groups"), form)


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
    if request.method == "POST" and form.is_valid() and _save(form, request):
        messages.success(request, f"Desktop {desktop.friendly_name} saved.")
        log.info("%s changed the desktop of %s", request.user, group.name)
        return redirect("portal:group-detail", pk=group.pk)
    cancel = reverse("portal:group-detail", args=[pk])
    return _form_page(request, "portal/form.html",
                      _form_context(f"Edit the desktop of {group.name}", cancel, "groups", multipart=True), form)


@staff_required
def app_create(request: HttpRequest, pk: int) -> HttpResponse:
    group, answer = _group_or_gone(request, pk)
    if answer:
        return answer
    form = forms.RemoteAppForm(request.POST or None, request.FILES or None, application_group=group)
    if request.method == "POST" and form.is_valid() and _save(form, request):
        messages.success(request, f"RemoteApp {form.instance.friendly_name} added to {group.name}.")
        log.info("%s added RemoteApp %s to %s", request.user, form.instance.name, group.name)
        return redirect("portal:group-detail", pk=group.pk)
    cancel = reverse("portal:group-detail", args=[pk])
    return _form_page(request, "portal/form.html",
                      _form_context(f"New RemoteApp in {group.name}", cancel, "groups", multipart=True), form)


@staff_required
def app_edit(request: HttpRequest, pk: int) -> HttpResponse:
    app = RemoteApp.objects.select_related("application_group").filter(pk=pk).first()
    if app is None:
        return gone(request, "This RemoteApp", reverse("portal:groups"), "Back to application groups")
    group = app.application_group
    form = forms.RemoteAppForm(request.POST or None, request.FILES or None, instance=app, application_group=group)
    if request.method == "POST" and form.is_valid() and _save(form, request):
        messages.success(request, f"RemoteApp {app.friendly_name} saved.")
        log.info("%s changed RemoteApp %s of %s", request.user, app.name, group.name)
        return redirect("portal:group-detail", pk=group.pk)
    cancel = reverse("portal:group-detail", args=[group.pk])
    return _form_page(request, "portal/form.html",
                      _form_context(f"Edit RemoteApp {app.name}", cancel, "groups", multipart=True), form)


@staff_required
@require_POST
def assignment_create(request: HttpRequest, pk: int) -> HttpResponse:
    group, answer = _group_or_gone(request, pk)
    if answer:
        return answer
    form = forms.AssignmentForm(request.POST, application_group=group)
    if form.is_valid() and _save(form, request):
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
        return redirect(_back(request, reverse("portal:groups")))
    group = assignment.application_group
    who = assignment.user or assignment.group
    assignment.delete()
    log.info("%s removed %s from %s", request.user, who, group.name)
    messages.success(request, f"{who} is no longer assigned to {group.name}.")
    return redirect("portal:group-detail", pk=group.pk)


PICKER_LIMIT = 10


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


# --- user sessions ---------------------------------------------------------------------------------

SESSION_FRAGMENTS = {"sessions": "portal/_session_table.html"}


@staff_required
@require_safe
def session_list(request: HttpRequest) -> HttpResponse:
    form = forms.SessionSearchForm(request.GET or None)
    sessions = UserSession.objects.select_related("session_host__host_pool", "user").order_by(
        "session_host__name", "session_id")
    query = form.cleaned_data["q"].strip() if form.is_valid() else ""
    if query:
        sessions = sessions.filter(Q(username__icontains=query) | Q(user__username__icontains=query)
                                   | Q(session_host__name__icontains=query))
    page = Paginator(sessions, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"form": form, "page": page, "query": query, "nav": "sessions"}
    return _page(request, "portal/session_list.html", context, fragments=SESSION_FRAGMENTS)


def _session_or_gone(request: HttpRequest, pk: int) -> tuple[UserSession | None, HttpResponse | None]:
    session = UserSession.objects.select_related("session_host").filter(pk=pk).first()
    if session is None:
        messages.info(request, "That session has already ended (the host reported it gone, or someone logged it "
                               "off).")
        return None, redirect(_back(request, reverse("portal:sessions")))
    return session, None


def _report(request: HttpRequest, action: str, session: UserSession, result: CommandResult) -> None:
    """Put the agent's answer on the next page, in words."""
    who = f"{session.username}'s session {session.session_id} on {session.session_host.name}"
    if result.ok:
        messages.success(request, f"{action}: done for {who}." + (f" {result.message}" if result.message else ""))
        return
    reasons = {
        "offline": "the host's agent is not connected, so nothing was sent",
        "timeout": "the host did not answer in time; it may still act on it",
        "unsupported": "the host's agent does not support this",
        "failed": "the host reported a failure",
    }
    detail = f" ({result.message})" if result.message else ""
    messages.error(request, f"{action} for {who} failed: {reasons.get(result.status, result.status)}{detail}.")


@staff_required
@require_POST
def session_logoff(request: HttpRequest, pk: int) -> HttpResponse:
    session, answer = _session_or_gone(request, pk)
    if answer:
        return answer
    result = commands.log_off_user_session(session, timeout=COMMAND_TIMEOUT)
    if result.ok:
        live.notify_sessions_changed(session.session_host_id)  # the row went with a queryset delete
    log.info("%s logged off %s: %s", request.user, session, result.status)
    _report(request, "Log off", session, result)
    return redirect(_back(request, reverse("portal:sessions")))


@staff_required
@require_POST
def session_disconnect(request: HttpRequest, pk: int) -> HttpResponse:
    session, answer = _session_or_gone(request, pk)
    if answer:
        return answer
    result = commands.disconnect_user_session(session, timeout=COMMAND_TIMEOUT)
    if result.ok:
        live.notify_sessions_changed(session.session_host_id)
    log.info("%s disconnected %s: %s", request.user, session, result.status)
    _report(request, "Disconnect", session, result)
    return redirect(_back(request, reverse("portal:sessions")))


@staff_required
def session_message(request: HttpRequest, pk: int) -> HttpResponse:
    session, answer = _session_or_gone(request, pk)
    if answer:
        return answer
    form = forms.MessageForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        result = commands.send_message_to_user_session(session, form.cleaned_data["title"], form.cleaned_data["text"],
                                                       timeout=COMMAND_TIMEOUT)
        log.info("%s sent a message to %s: %s", request.user, session, result.status)
        _report(request, "Message", session, result)
        if result.ok:
            return redirect(_back(request, reverse("portal:sessions")))
    return _form_page(request, "portal/session_message.html", {"session": session, "nav": "sessions"}, form)


# --- connections -----------------------------------------------------------------------------------

@staff_required
@require_safe
def connection_list(request: HttpRequest) -> HttpResponse:
    form = forms.ConnectionSearchForm(request.GET or None)
    connections = Connection.objects.select_related("session_host", "host_pool").order_by("-created_at", "-id")
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        if data["user"]:
            connections = connections.filter(Q(username__icontains=data["user"])
                                             | Q(user__username__icontains=data["user"]))
        if data["activity"]:
            connections = connections.filter(activity_id=data["activity"])
        if data["error"] == "any":
            connections = connections.exclude(error_code="")
        elif data["error"]:
            connections = connections.filter(error_code=data["error"])
        if data["since"]:
            connections = connections.filter(created_at__gte=data["since"])
        if data["until"]:
            connections = connections.filter(created_at__lte=data["until"])
    elif form.is_bound:
        connections = connections.none()  # the errors are shown beside the fields
    page = Paginator(connections, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "query_string": query.urlencode(), "nav": "connections"}
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "portal/connection_list.html", context, status=status)


def _recorded_detail(recorded: str, documented: str) -> str:
    """What the record says beyond the documented message (placement appends the pool's state)."""
    if documented and recorded.startswith(documented):
        return recorded[len(documented):].strip().removeprefix("(").removesuffix(")").strip()
    return recorded


@staff_required
@require_safe
def connection_detail(request: HttpRequest, activity_id) -> HttpResponse:
    connection = (Connection.objects.select_related("session_host", "host_pool", "gateway_instance",
                                                     "application_group", "user")
                  .filter(activity_id=activity_id).first())
    if connection is None:
        return gone(request, "This connection record", reverse("portal:connections"), "Back to connections")
    error = describe(connection.error_code) if connection.error_code else None
    context = {
        "connection": connection, "timeline": overview.timeline(connection), "error": error,
        "recorded_detail": _recorded_detail(connection.error_message, error.message if error else ""),
        "fix_by": FIX_BY_LABELS.get(error.fix_by, error.fix_by) if error else "",
        "stage": STAGES.get(error.stage, error.stage) if error else "",
        "setup_time": (connection.relay_started_at - connection.created_at) if connection.relay_started_at else None,
        "nav": "connections", "now": timezone.now(),
    }
    return render(request, "portal/connection_detail.html", context)
