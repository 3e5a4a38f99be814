"""WebSocket routes of every app (the composition root). Each consumer authenticates its peer itself."""
from __future__ import annotations

websocket_urlpatterns: list = []
