"""Connection records: searched by user, activity id, error code and time; one record's checkpoints and
its error explained."""
from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from broker.models import Connection
from portal import forms, overview
from core.authorization import grants_for_request
from portal.access import forbidden, portal_user_required, readable
from portal.views.responses import PAGE_SIZE, GonePage, Link, form_page
from wire.errors import FIX_BY_LABELS, STAGES, describe

CONNECTION_GONE = GonePage("This connection record", Link("portal:connections"), "Back to connections")


@portal_user_required
@require_safe
def connection_list(request: HttpRequest) -> HttpResponse:
    if not grants_for_request(request).anywhere("connection.view"):
        return forbidden(request, "read connections")
    form = forms.ConnectionSearchForm(request.GET or None)
    connections = readable(request, Connection.objects.all()).select_related("session_host", "host_pool").order_by("-created_at", "-id")
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
    context = {"page": page, "query_string": query.urlencode(), "nav": "connections"}
    return form_page(request, "portal/connection_list.html", context, form)


def _recorded_detail(recorded: str, documented: str) -> str:
    """What the record says beyond the documented message (placement appends the pool's state)."""
    if documented and recorded.startswith(documented):
        return recorded[len(documented):].strip().removeprefix("(").removesuffix(")").strip()
    return recorded


@portal_user_required
@require_safe
def connection_detail(request: HttpRequest, activity_id) -> HttpResponse:
    connection = (readable(request, Connection.objects.all()).select_related("session_host", "host_pool", "gateway_instance",
                                                     "application_group", "user")
                  .filter(activity_id=activity_id).first())
    if connection is None:
        return CONNECTION_GONE.answer(request)
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
