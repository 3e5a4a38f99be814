"""The feed over HTTP: the JSON feed, the MS-TSWP webfeed, signed .rdp files, icons, the user's page
and its login.

Every endpoint asks feed.resources which resources the caller may use; formats come from the pure
modules (feed.webfeed, feed.rdpfile, feed.icons). Clients authenticate with a bearer token from
/api/v1/auth/token/ or the browser's session; an anonymous client gets 401 with a Bearer challenge.
Windows' RemoteApp and Desktop Connections signs in with NTLM (MS-TSWP §3.2), which we do not offer.
"""
from __future__ import annotations

import logging
import re
import unicodedata
from datetime import datetime, timedelta, timezone
from itertools import groupby

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_safe
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from broker.choices import ConnectionState
from broker.models import Connection
from broker.rdpproperties import RdpPropertiesError
from core import ca, throttle, tickets
from core.api.schema import ApiAutoSchema
from core.authentication import ApiTokenAuthentication
from core.choices import CertificatePurpose
from core.signin import SignInForm
from feed import icons
from feed.models import Desktop, RemoteApp
from feed.rdpfile import RDP_CONTENT_TYPE, RdpFileError, RdpResource, render_signed_rdp
from feed.rdpsign import RdpSignatureError
from feed.resources import (
    DESKTOP,
    Resource,
    icon_path,
    rdp_path,
    resource_for,
    resources_for,
    web_session_path,
)
from feed.serializers import FeedResourceSerializer
from feed.webfeed import (
    SCHEMA_2_1,
    FeedPublisher,
    FeedResource,
    FeedTerminalServer,
    WebFeedError,
    negotiate_schema,
    render_webfeed,
)
from wire.errors import describe

log = logging.getLogger(__name__)

# The bearer token first: its challenge is what an anonymous client sees in WWW-Authenticate.
FEED_AUTHENTICATION = [ApiTokenAuthentication, SessionAuthentication]
# Icons are converted with Pillow; the results are cached, keyed by the resource's version.
ICON_CACHE_SECONDS = 24 * 3600
# Characters no file system or shell should see in a downloaded file's name.
_UNSAFE_FILE_NAME = re.compile(r'[<>:"/\\|?*]+')
# Unicode categories left out of file names: controls, and format characters such as the bidi overrides
# (U+202E would make "exe.rdp" show as "pdr.exe") and zero-width joiners; line and paragraph separators.
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp"})


class _FirstRenderer(BaseContentNegotiation):
    """Feed clients send Accept headers such as ``application/x-msts-radc+xml`` or ``*/*``; the view
    chooses the format itself (feed.webfeed.negotiate_schema), so DRF must not answer 406."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class _FeedFileView(APIView):
    """Session or bearer token; the answer is a file, errors are JSON."""

    authentication_classes = FEED_AUTHENTICATION
    permission_classes = [IsAuthenticated]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _FirstRenderer


def _not_found(request: Request, group: str, alias: str) -> exceptions.NotFound:
    log.info("%s asked for %s/%s: not one of their resources", request.user, group, alias)
    return exceptions.NotFound("No such desktop or RemoteApp is assigned to you.")


def _unavailable(detail: str) -> Response:
    return Response({"detail": detail, "code": "unavailable"}, status=status.HTTP_503_SERVICE_UNAVAILABLE)


# --- the JSON feed -----------------------------------------------------------------------------


class FeedApiView(APIView):
    """GET /api/v1/feed/: the caller's desktops and RemoteApps, each with its icon and .rdp URLs."""

    authentication_classes = FEED_AUTHENTICATION
    permission_classes = [IsAuthenticated]
    schema = ApiAutoSchema()

    @extend_schema(
        responses=FeedResourceSerializer(many=True),
        summary="The caller's desktops and RemoteApps",
        description="Every desktop and RemoteApp assigned to the caller or to one of the caller's groups, in "
                    "application groups published in a workspace. Each `.rdp` download is signed and carries a "
                    "fresh connection ticket. RemoteApps hidden from the feed are not listed.",
        tags=["feed"],
    )
    def get(self, request: Request) -> Response:
        items = [_json_item(request, resource) for resource in resources_for(request.user)]
        return Response(FeedResourceSerializer(items, many=True).data, headers={"Cache-Control": "private, no-cache"})


def _json_item(request: Request, resource: Resource) -> dict:
    return {
        "id": resource.key,
        "type": resource.feed_type,
        "title": resource.title,
        "description": resource.description,
        "workspace": {"name": resource.workspace_name, "title": resource.workspace_title,
                      "description": resource.workspace_description},
        "application_group": resource.application_group_name,
        "file_extensions": list(resource.file_extensions),
        "icon_url": request.build_absolute_uri(icon_path(resource)),
        "icon_png32_url": request.build_absolute_uri(icon_path(resource, png32=True)),
        "rdp_url": request.build_absolute_uri(rdp_path(resource)),
    }


# --- the MS-TSWP webfeed -------------------------------------------------------------------------


class WebFeedView(_FeedFileView):
    """GET /RDWeb/Feed/webfeed.aspx: the ResourceCollection, schema 1.1 unless the client asks for 2.x."""

    @extend_schema(exclude=True)
    def get(self, request: Request) -> HttpResponse:
        version, content_type = negotiate_schema(request.META.get("HTTP_ACCEPT"),
                                                 request.query_params.get("radc_schema_version"))
        # Schema 2.1 can say "listed but not shown": there, hidden RemoteApps are included as such.
        resources = resources_for(request.user, include_hidden=version == SCHEMA_2_1)
        try:
            document = render_webfeed(_publisher(resources), version)
        except WebFeedError as exc:
            log.error("webfeed for %s cannot be rendered: %s", request.user, exc)
            return _unavailable("The feed cannot be built right now; the administrator has been told why.")
        response = HttpResponse(document, content_type=content_type)
        response["Cache-Control"] = "private, no-cache"
        response["Vary"] = "Accept, Authorization, Cookie"
        return response


def _folder(title: str) -> str:
    # A '/' would nest folders; the workspace's title is one folder.
    return "/" + title.replace("/", "-").strip()


def _publisher(resources: list[Resource]) -> FeedPublisher:
    """The <Publisher> for one user's resources: named after their workspace when there is one, with
    a folder per workspace (schema 2.0+) when there are several."""
    workspaces = {resource.workspace_id: resource for resource in resources}
    single = next(iter(workspaces.values())) if len(workspaces) == 1 else None
    pools = {resource.host_pool_id: resource for resource in resources}
    feed_resources = [
        FeedResource(
            alias=resource.key,
            title=resource.title,
            resource_type=resource.feed_type,
            rdp_url=rdp_path(resource),
            icon_url=icon_path(resource),
            icon_png32_url=icon_path(resource, png32=True),
            terminal_server_id=resource.host_pool_name,
            last_updated=resource.updated_at,
            file_extensions=resource.file_extensions,
            folders=("/",) if len(workspaces) <= 1 else (_folder(resource.workspace_title),),
            show_by_default=resource.show_in_feed,
        )
        for resource in resources
    ]
    servers = [FeedTerminalServer(id=pool.host_pool_name, name=pool.host_pool_name,
                                  last_updated=pool.host_pool_updated_at) for pool in pools.values()]
    changes = [r.updated_at for r in resources] + [r.host_pool_updated_at for r in resources]
    return FeedPublisher(
        id=settings.FEED_PUBLISHER_ID,
        name=single.workspace_title if single else settings.FEED_PUBLISHER_NAME,
        description=single.workspace_description if single else "",
        last_updated=max(changes, default=datetime.now(timezone.utc)),
        resources=feed_resources,
        terminal_servers=servers,
    )


# --- .rdp files --------------------------------------------------------------------------------


class RdpFileView(_FeedFileView):
    """GET /feed/rdp/<group>/<alias>.rdp: a signed file with a fresh ticket for this user and resource."""

    @extend_schema(exclude=True)
    def get(self, request: Request, group: str, alias: str) -> HttpResponse:
        resource = resource_for(request.user, group, alias)
        if resource is None:
            raise _not_found(request, group, alias)
        try:
            certificate, private_key = ca.load_server_credentials(CertificatePurpose.FEED_SIGNING)
        except ca.CAError as exc:
            log.error("cannot sign .rdp files: %s", exc)
            return _unavailable("Connection files cannot be signed right now: the certificate authority is not "
                                "set up. Tell your administrator.")
        ticket = tickets.issue_connection_ticket(
            user=request.user, application_group_id=resource.application_group_id, resource=resource.key,
            host_pool_id=resource.host_pool_id, host_pool_name=resource.host_pool_name,
        )
        try:
            data = render_signed_rdp(
                routing_name=resource.host_pool_name,
                gateway_host=settings.GATEWAY_PUBLIC_HOST,
                gateway_port=settings.GATEWAY_PUBLIC_PORT,
                access_token=ticket,
                workspace_id=settings.FEED_PUBLISHER_ID,
                resource=RdpResource(kind=resource.kind, alias=resource.alias, title=resource.title,
                                     program=resource.program, command_line=resource.command_line),
                certificate=certificate,
                private_key=private_key,
                custom_properties=resource.custom_rdp_properties,
            )
        except (RdpFileError, RdpPropertiesError, RdpSignatureError) as exc:
            # Stored data or settings the file cannot carry: the admin must fix them, the user cannot.
            log.error("cannot build the .rdp file of %s (host pool %s): %s", resource.key, resource.host_pool_name,
                      exc)
            return _unavailable("This connection file cannot be built right now; the administrator has been "
                                "told why.")
        log.info("served %s.rdp to %s (host pool %s)", resource.key, request.user, resource.host_pool_name)
        response = HttpResponse(data, content_type=RDP_CONTENT_TYPE)
        response["Content-Disposition"] = content_disposition_header(True, _file_name(resource))
        # It carries a bearer ticket: never kept by a cache.
        response["Cache-Control"] = "private, no-store"
        return response


def _file_name(resource: Resource) -> str:
    visible = "".join(" " if unicodedata.category(char) in _INVISIBLE else char for char in resource.title)
    title = " ".join(_UNSAFE_FILE_NAME.sub(" ", visible).split()).strip(" .")[:100]
    return f"{title or resource.alias}.rdp"


# --- icons -------------------------------------------------------------------------------------


class IconView(_FeedFileView):
    """GET /feed/icon/<group>/<alias>.ico and ..._32x32.png: the resource's icon, or our default."""

    png32 = False

    @extend_schema(exclude=True)
    def get(self, request: Request, group: str, alias: str) -> HttpResponse:
        resource = resource_for(request.user, group, alias)
        if resource is None:
            raise _not_found(request, group, alias)
        data = _icon_bytes(resource, png32=self.png32)
        response = HttpResponse(data, content_type=icons.PNG_CONTENT_TYPE if self.png32 else icons.ICO_CONTENT_TYPE)
        # The URL carries the resource's version, so a changed icon has a new URL.
        response["Cache-Control"] = "private, max-age=86400"
        return response


def _icon_bytes(resource: Resource, *, png32: bool) -> bytes:
    key = f"feed:icon:{resource.kind}:{resource.pk}:{resource.version}:{'png32' if png32 else 'ico'}"
    data = cache.get(key)
    if data is None:
        model = Desktop if resource.kind == DESKTOP else RemoteApp
        stored = model.objects.filter(pk=resource.pk).values_list("icon", flat=True).first()
        stored = bytes(stored) if stored else None
        data = (icons.resource_icon_png_32 if png32 else icons.resource_icon_ico)(stored, resource.kind)
        cache.set(key, data, ICON_CACHE_SECONDS)
    return data


# --- the user's page ---------------------------------------------------------------------------


@require_safe
@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The signed-in user's workspaces with their desktops and RemoteApps as tiles, the feed to subscribe
    to, and the user's recent connections with any failure explained in plain words."""
    resources = resources_for(request.user)
    workspaces = [
        {"title": title, "description": items[0].workspace_description, "tiles": [
            {"resource": resource, "rdp_url": rdp_path(resource), "icon_url": icon_path(resource),
             # The browser client shows desktops only (feed/webclient.py says why).
             "web_url": web_session_path(resource) if resource.kind == DESKTOP else ""}
            for resource in items
        ]}
        for (title, _), items in ((key, list(group)) for key, group in
                                  groupby(resources, key=lambda r: (r.workspace_title, r.workspace_id)))
    ]
    titles = {resource.key: resource.title for resource in resources}
    recent = []
    for connection in Connection.objects.filter(user=request.user).only(
        "activity_id", "resource_name", "state", "created_at", "relay_started_at", "ended_at", "error_code",
    ).order_by("-created_at", "-id")[:8]:  # the latest few: enough to explain a failure just seen
        recent.append({
            "connection": connection,
            "title": titles.get(connection.resource_name) or connection.resource_name or "A desktop or app",
            # Only the documented sentence: the record's own message may carry details for the admin.
            "problem": describe(connection.error_code).message if connection.error_code else "",
            "in_progress": connection.state in (ConnectionState.STARTED, ConnectionState.CONNECTING,
                                                ConnectionState.CONNECTED) and connection.ended_at is None,
        })
    context = {
        "workspaces": workspaces,
        "resource_count": len(resources),
        "has_remoteapps": any(resource.kind != DESKTOP for resource in resources),
        "recent_connections": recent,
        "webfeed_url": request.build_absolute_uri(reverse("feed:webfeed")),
        "api_feed_url": request.build_absolute_uri(reverse("feed:api-feed")),
        "token_url": request.build_absolute_uri(reverse("signin-token")),
        "ticket_lifetime": _duration_text(settings.CONNECTION_TICKET_LIFETIME),
    }
    response = render(request, "feed/home.html", context)
    response["Cache-Control"] = "private, no-cache"
    return response


def _duration_text(duration: timedelta) -> str:
    minutes = max(1, round(duration.total_seconds() / 60))
    if minutes % 60:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours = minutes // 60
    return f"{hours} hour{'s' if hours != 1 else ''}"


class UserLoginView(LoginView):
    """Django's login (the user's page and the portal's). The sign-in throttle's backend refuses a user name
    that failed too often from this address; the answer is then this form with the wait, status 429."""

    template_name = "registration/login.html"
    authentication_form = SignInForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        return throttle.refusal(self.request, response) if throttle.locked_out(self.request) else response
