"""The gateway's host-side relay WebSocket route."""
from __future__ import annotations

websocket_urlpatterns: list = []
