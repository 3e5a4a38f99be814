"""The host channel's WebSocket route."""
from __future__ import annotations

from django.urls import path

from hostagent.consumers import HostAgentConsumer

websocket_urlpatterns = [
    path("ws/hostagent/", HostAgentConsumer.as_asgi()),
]
