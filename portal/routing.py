"""The portal's WebSocket route, mounted by wvdportal/asgi.py."""
from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from portal.consumers import PortalConsumer

websocket_urlpatterns = [
    # Session cookies authenticate the socket, so another site's page must not open one in the admin's
    # name (cross-site WebSocket hijacking): only pages served from our own host names may connect.
    path("ws/portal/", AllowedHostsOriginValidator(AuthMiddlewareStack(PortalConsumer.as_asgi()))),
]
