"""A desktop in the browser: the session page, the web ticket it asks for, and what became of its connection.

The page runs Devolutions' IronRDP web client (vendored, feed/webclientvendor.py), which speaks RDCleanPath
over a WebSocket to the gateway's listener. It gets a single-use web ticket by a same-origin POST (CSRF
protected) that checks the user may still use the desktop, by the same rule as the .rdp download
(feed.resources), and hands the ticket to the client as RDCleanPath's proxy_auth: never in a URL.

Desktops only: the web client (iron-remote-desktop-rdp 0.7.0) has no RemoteApp windows and sends no
alternate shell (IronRDP's ironrdp-web fixes ``remote_application_mode: false`` and ``alternate_shell: ""``),
so a RemoteApp cannot be started as the session's program either; the user's page says so.
"""
from __future__ import annotations

import functools
import ipaddress
import logging
import re
import uuid
from datetime import datetime, timedelta

from csp.decorators import csp_update
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe

from broker.choices import ConnectionTransport
from broker.models import Connection
from core import tickets
from feed import webclientvendor
from feed.resources import DESKTOP, Resource, resource_for
from wire import rdcleanpath
from wire.errors import ERRORS, ErrorCode, describe

log = logging.getLogger(__name__)

# How far back the page may ask for "the connection my ticket opened": a ticket lives a minute.
_CONNECTION_LOOKBACK = timedelta(minutes=10)
_ERROR_CODE = re.compile(r"^[A-Za-z]{1,80}$")


def gateway_origin() -> str:
    """``wss://host:port`` of this instance's gateway listener, from the address the .rdp files name."""
    host = settings.GATEWAY_PUBLIC_HOST
    try:
        if ipaddress.ip_address(host.strip("[]")).version == 6:
            host = f"[{host.strip('[]')}]"
    except ValueError:
        pass  # a DNS name (the settings validated it)
    return f"wss://{host}:{settings.GATEWAY_PUBLIC_PORT}"


def gateway_websocket_url() -> str:
    """The gateway's RDCleanPath transport, on the RD Gateway listener (gateway/transports/rdcleanpath.py)."""
    return gateway_origin() + rdcleanpath.WEBSOCKET_PATH


def _pin(suffix: str) -> webclientvendor.Pin:
    return next(pin for pin in webclientvendor.PINS if pin.name.endswith(suffix))


def _vendored(suffix: str) -> str:
    pin = _pin(suffix)
    return static(f"feed/vendor/{pin.folder}/{pin.files[0]}")


@functools.cache
def _component_style_hashes() -> tuple[str, ...]:
    pin = _pin("/iron-remote-desktop")
    source = (webclientvendor.VENDOR_DIR / pin.folder / pin.files[0]).read_text(encoding="utf-8")
    return tuple(webclientvendor.component_style_hashes(source))


def _browser_resource(request: HttpRequest, group: str, alias: str) -> Resource | None:
    """The desktop at ``<group>/<alias>`` if the user may use it now; RemoteApps are not offered here."""
    resource = resource_for(request.user, group, alias)
    return resource if resource is not None and resource.kind == DESKTOP else None


def session_csp() -> dict[str, list[str]]:
    """What the session page adds to the strict policy (settings.CONTENT_SECURITY_POLICY); every other page
    keeps it as it is. The gateway's origin is read per request, from the settings the .rdp files use."""
    return {
        # WebAssembly.instantiate needs 'wasm-unsafe-eval' (not 'unsafe-eval': no JavaScript eval).
        "script-src": ["'wasm-unsafe-eval'"],
        # The backend fetches its own module from a data: URL (it is inlined in the JavaScript file); then
        # the RDCleanPath WebSocket to the gateway's listener, and nothing else.
        "connect-src": ["data:", gateway_origin()],
        # The remote pointer is drawn as a CSS cursor from a data: URL image.
        "img-src": ["data:"],
        # The web component's own stylesheet, a <style> in its shadow root: allowed by its hash only.
        "style-src-elem": ["'self'", *_component_style_hashes()],
        # It sizes and shows its canvas with style attributes. An attribute cannot load or run anything;
        # style elements and sheets stay restricted by the line above.
        "style-src-attr": ["'unsafe-inline'"],
    }


@require_safe
@login_required
@never_cache
def session_page(request: HttpRequest, group: str, alias: str) -> HttpResponse:
    """GET /web/<group>/<alias>/: the desktop in the browser, full window, with its toolbar."""
    resource = _browser_resource(request, group, alias)
    if resource is None:
        app = resource_for(request.user, group, alias)
        log.info("%s asked for %s/%s in the browser: %s", request.user, group, alias,
                 "a RemoteApp" if app else "not one of their desktops")
        return render(request, "feed/web_unavailable.html", {"remoteapp": app}, status=404)
    context = {
        "resource": resource,
        "ticket_url": reverse("feed:web-ticket", args=[resource.application_group_name, resource.alias]),
        "connection_url": reverse("feed:web-connection", args=[resource.application_group_name, resource.alias]),
        "component_url": _vendored("/iron-remote-desktop"),
        "backend_url": _vendored("/iron-remote-desktop-rdp"),
    }
    response = render(request, "feed/web_session.html", context)
    response._csp_update = session_csp()  # what csp.decorators.csp_update sets, with the origin of now
    return response


def _json_error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error_code": code, "message": describe(code).message, "detail": detail}, status=status,
                        headers={"Cache-Control": "no-store"})


@require_POST
def web_ticket(request: HttpRequest, group: str, alias: str) -> JsonResponse:
    """POST /web/<group>/<alias>/ticket/ (same origin, CSRF token): a single-use web ticket for this user and
    desktop, with where to use it. Refused (JSON, our error code) for an anonymous caller and for a desktop
    that is not, or no longer, the user's."""
    if not request.user.is_authenticated:
        return _json_error(401, ErrorCode.ConnectionFailedUserNotAuthorized, "Sign in first.")
    resource = _browser_resource(request, group, alias)
    if resource is None:
        log.info("%s asked for a web ticket for %s/%s: not one of their desktops", request.user, group, alias)
        return _json_error(404, ErrorCode.ConnectionFailedUserNotAuthorized,
                           "This desktop is not assigned to you (any more).")
    ticket = tickets.issue_web_ticket(
        user=request.user, application_group_id=resource.application_group_id, resource=resource.key,
        host_pool_id=resource.host_pool_id, host_pool_name=resource.host_pool_name,
    )
    log.info("issued a web ticket for %s to %s (host pool %s)", resource.key, request.user, resource.host_pool_name)
    return JsonResponse({
        "ticket": ticket,
        "gateway_url": gateway_websocket_url(),
        # The gateway ignores it (the ticket's pool decides); RDCleanPath needs one.
        "destination": resource.host_pool_name,
        # Prefills xrdp's login dialog; the password is typed there (the web client sends no auto-logon).
        "username": request.user.get_username(),
        "issued_at": timezone.now().isoformat(),
        "expires_in": int(settings.WEB_TICKET_LIFETIME.total_seconds()),
    }, headers={"Cache-Control": "no-store"})


@require_safe
@login_required
def web_connection(request: HttpRequest, group: str, alias: str) -> JsonResponse:
    """GET /web/<group>/<alias>/connection/?activity=<id> or ?since=<ISO time>: what became of the user's own
    browser connection to this desktop (its activity id, state, and any error code with its plain-words
    message). With ``code=<error code>`` and no record (a ticket the gateway could not even attribute), the
    code's documented message."""
    activity = request.GET.get("activity", "")
    since = request.GET.get("since", "")
    code = request.GET.get("code", "")
    if code and not _ERROR_CODE.match(code):
        return JsonResponse({"detail": "code: not an error code"}, status=400)
    connections = Connection.objects.filter(user=request.user, resource_name__iexact=f"{group}/{alias}",
                                            transport=ConnectionTransport.RDCLEANPATH)
    if activity:
        try:
            connections = connections.filter(activity_id=uuid.UUID(activity))
        except ValueError:
            return JsonResponse({"detail": "activity: not an activity id"}, status=400)
    elif since:
        try:
            moment = datetime.fromisoformat(since)
        except ValueError:
            return JsonResponse({"detail": "since: not an ISO 8601 time"}, status=400)
        if timezone.is_naive(moment):
            return JsonResponse({"detail": "since: give the time zone"}, status=400)
        # The ticket's issue moment was taken before the record was opened; allow for the page's rounding.
        connections = connections.filter(created_at__gte=max(moment, timezone.now() - _CONNECTION_LOOKBACK)
                                          - timedelta(seconds=1))
    else:
        return JsonResponse({"detail": "give activity or since"}, status=400)
    connection = connections.order_by("-created_at", "-id").only(
        "activity_id", "state", "error_code", "created_at").first()
    headers = {"Cache-Control": "no-store"}
    if connection is None:
        if code:
            return JsonResponse({"activity_id": activity, "state": "", "error_code": code,
                                 "message": describe(code).message}, headers=headers)
        return JsonResponse({"detail": "no such connection (yet)"}, status=404, headers=headers)
    error_code = connection.error_code or (code if code in ERRORS else "")
    return JsonResponse({
        "activity_id": str(connection.activity_id),
        "state": connection.state,
        "error_code": error_code,
        # Only the documented sentence: the record's own message may carry details for the admin.
        "message": describe(error_code).message if error_code else "",
    }, headers=headers)
