"""Host pools and their session hosts: create and edit a pool, issue and revoke its registration token,
each host's state, health and sessions, drain mode, and marking a host for replacement."""
from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from broker.models import HostPool, SessionHost
from core import ca
from portal import forms, live, overview
from core.authorization import grants_for_request
from portal.access import allowed, forbidden, portal_user_required, readable
from portal.views.generic import ObjectEditView
from portal.views.responses import GonePage, Link, back, page

log = logging.getLogger(__name__)

POOL_FRAGMENTS = {"hosts": "portal/_host_table.html", "pool-counts": "portal/_pool_counts.html"}
HOST_FRAGMENTS = {"host": "portal/_host_state.html", "host-sessions": "portal/_host_sessions.html"}
POOL_GONE = GonePage("This host pool", Link("portal:pools"), "Back to host pools")
HOST_GONE = GonePage("This session host", Link("portal:pools"), "Back to host pools")


@portal_user_required
@require_safe
def pool_list(request: HttpRequest) -> HttpResponse:
    if not grants_for_request(request).anywhere("hostpool.view"):
        return forbidden(request, "read host pools")
    rows = overview.pools_with_counts(readable(request, HostPool.objects.all()))
    return page(request, "portal/pool_list.html", {"pool_rows": rows, "nav": "pools"},
                fragments={"pools": "portal/_pool_table.html"})


class PoolCreateView(ObjectEditView):
    form_class = forms.HostPoolForm
    nav = "pools"
    title = "New host pool"
    cancel_url = Link("portal:pools")
    success_url = Link("portal:pool-detail", of="object")
    success_message = "Host pool {object.name} created. Add hosts with a registration token."
    log_message = "created host pool {object.name}"


def _pool_context(request: HttpRequest, pool: HostPool) -> dict:
    row = overview.pools_with_counts(HostPool.objects.filter(pk=pool.pk))[0]
    groups = list(readable(request, pool.application_groups.select_related("workspace")).order_by("name"))
    hosts = overview.hosts_of(pool, readable(request, SessionHost.objects.all()))
    return {"pool": pool, "row": row, "hosts": hosts, "groups": groups, "nav": "pools", "live_pool_id": pool.pk}


def _object_or_answer(request: HttpRequest, model, pk: int, verb: str, gone: GonePage):
    """(the object, None) if the user may read it and do ``verb`` to it; else (None, its gone page or a 403)."""
    obj = readable(request, model.objects.all()).filter(pk=pk).first()
    if obj is None:
        return None, gone.answer(request)
    if not allowed(request, verb, obj):
        return None, forbidden(request, f"{verb} {model._meta.verbose_name} {obj.name}")
    return obj, None


def _pool_or_answer(request: HttpRequest, pk: int, verb: str = "view") -> tuple[HostPool | None, HttpResponse | None]:
    return _object_or_answer(request, HostPool, pk, verb, POOL_GONE)


def _host_or_answer(request: HttpRequest, pk: int, verb: str) -> tuple[SessionHost | None, HttpResponse | None]:
    return _object_or_answer(request, SessionHost, pk, verb, HOST_GONE)


@portal_user_required
@require_safe
def pool_detail(request: HttpRequest, pk: int) -> HttpResponse:
    pool, answer = _pool_or_answer(request, pk)
    if answer:
        return answer
    return page(request, "portal/pool_detail.html", _pool_context(request, pool), fragments=POOL_FRAGMENTS)


class PoolEditView(ObjectEditView):
    queryset = HostPool.objects.all()
    gone = POOL_GONE
    form_class = forms.HostPoolForm
    nav = "pools"
    title = "Edit host pool {object.name}"
    cancel_url = success_url = Link("portal:pool-detail", of="object")
    success_message = "Host pool {object.name} saved."
    log_message = "changed host pool {object.name}: {changed}"


@portal_user_required
@require_POST
def pool_token(request: HttpRequest, pk: int) -> HttpResponse:
    """Issue a registration token and show it in this response only: nothing stores it in clear."""
    pool, answer = _pool_or_answer(request, pk, "token")
    if answer:
        return answer
    token, expires_at = pool.issue_registration_token()
    log.info("%s generated a registration token for host pool %s (valid until %s)", request.user, pool.name,
             expires_at.isoformat())
    context = _pool_context(request, pool)
    context.update(new_token=token, token_expires_at=expires_at, server_url=_server_url(request),
                   ca_fingerprint=_ca_pin(request), fragments_url=reverse("portal:pool-detail", args=[pool.pk]),
                   suggested_host_name=f"{pool.name}-{len(context['hosts']) + 1:02d}"[:63])
    response = render(request, "portal/pool_detail.html", context)
    response["Cache-Control"] = "no-store"
    return response


def _server_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/").rstrip("/")


def _ca_pin(request: HttpRequest) -> str:
    """The CA fingerprint a new host pins to trust this server on its first contact (register
    --ca-fingerprint), when `serve` presents our CA's certificate; empty when the web side's certificate is
    another's (given files, or a TLS proxy's), which the host's own trust store must vouch for."""
    ours = request.is_secure() and settings.WEB_TLS and not settings.WEB_CERT_FILE and ca.ca_exists()
    return ca.ca_fingerprint() if ours else ""


@portal_user_required
@require_POST
def pool_token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    pool, answer = _pool_or_answer(request, pk, "token")
    if answer:
        return answer
    pool.revoke_registration_token()
    log.info("%s revoked the registration token of host pool %s", request.user, pool.name)
    messages.success(request, f"The registration token of {pool.name} is revoked: no new host can join with it.")
    return redirect("portal:pool-detail", pk=pool.pk)


# --- session hosts ---------------------------------------------------------------------------------

@portal_user_required
@require_safe
def host_detail(request: HttpRequest, pk: int) -> HttpResponse:
    host = (readable(request, SessionHost.objects.select_related(
        "host_pool", "assigned_user", "certificate", "marked_for_replacement_by")).filter(pk=pk).first())
    if host is None:
        return HOST_GONE.answer(request)
    overview._decorate([host])
    context = {
        "host": host, "nav": "pools", "live_host_id": host.pk, "host_live": host.holds_valid_certificate(),
        "checks": overview.health_checks(host),
        "sessions": list(readable(request, host.user_sessions.select_related("user")).order_by("session_id")),
        "changes": list(host.status_changes.all()[:20]),
    }
    return page(request, "portal/host_detail.html", context, fragments=HOST_FRAGMENTS)


@portal_user_required
@require_POST
def host_drain(request: HttpRequest, pk: int) -> HttpResponse:
    """Drain mode on (``allow=0``) or off (``allow=1``)."""
    host, answer = _host_or_answer(request, pk, "drain")
    if answer:
        return answer
    allow = request.POST.get("allow")
    if allow not in {"0", "1"}:
        messages.error(request, "Choose whether the host takes new sessions.")
        return redirect(back(request, reverse("portal:pool-detail", args=[host.host_pool_id])))
    host.set_allow_new_sessions(allow == "1")
    live.notify_host_changed(host.pk, host.host_pool_id)  # set_allow_new_sessions updates without a signal
    log.info("%s turned drain mode %s on host %s", request.user, "off" if allow == "1" else "on", host.name)
    if allow == "1":
        messages.success(request, f"{host.name} takes new sessions again.")
    else:
        messages.success(request, f"{host.name} is in drain mode: no new sessions; its users can still reconnect.")
    return redirect(back(request, reverse("portal:pool-detail", args=[host.host_pool_id])))


@portal_user_required
@require_POST
def host_replacement(request: HttpRequest, pk: int) -> HttpResponse:
    """Mark the host for replacement (``mark=1``: the next registration of its name takes it over) or
    cancel the mark (``mark=0``)."""
    host, answer = _host_or_answer(request, pk, "replace")
    if answer:
        return answer
    mark = request.POST.get("mark")
    if mark not in {"0", "1"}:
        messages.error(request, "Choose whether the host may be replaced.")
        return redirect(back(request, reverse("portal:host-detail", args=[host.pk])))
    if mark == "1":
        if host.mark_for_replacement(by=request.user):
            log.info("%s marked host %s for replacement", request.user, host.name)
            messages.success(request, f"{host.name} is marked for replacement: the next registration of its name "
                                      "takes it over and revokes the current agent's certificate.")
        else:
            messages.info(request, f"{host.name} was already marked for replacement.")
    elif host.cancel_replacement():
        log.info("%s cancelled the replacement of host %s", request.user, host.name)
        messages.success(request, f"Replacement cancelled: registrations of {host.name} are refused again while its "
                                  "agent's certificate is valid.")
    return redirect(back(request, reverse("portal:host-detail", args=[host.pk])))
