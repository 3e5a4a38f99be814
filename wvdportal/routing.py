"""WebSocket routes of every app (the composition root). Each consumer authenticates its peer itself."""
from __future__ import annotations

from hostagent.routing import websocket_urlpatterns as hostagent_routes
from wvdportal.portal.routing import websocket_urlpatterns as portal_routes

websocket_urlpatterns = [*hostagent_routes, *portal_routes]
