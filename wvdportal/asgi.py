"""ASGI entry point: HTTP goes to Django, WebSockets to the apps' consumers (each authenticates its peer)."""
from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wvdportal.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up first)

from hostagent.routing import websocket_urlpatterns as hostagent_routes  # noqa: E402
from portal.routing import websocket_urlpatterns as portal_routes  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter([*hostagent_routes, *portal_routes]),
    }
)
