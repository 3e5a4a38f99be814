"""The host channel's WebSocket route."""
from __future__ import annotations

websocket_urlpatterns: list = []
