"""The gateway's host-side relay WebSocket route."""
from __future__ import annotations

from django.urls import path

from gateway.consumers import host_relay

websocket_urlpatterns: list = [
    path("ws/relay/<str:activity_id>/", host_relay),
]
