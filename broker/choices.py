"""Choice classes for the broker's models: every status and type has a stable value and a label."""
from __future__ import annotations

from django.db import models


class HostPoolType(models.TextChoices):
    POOLED = "pooled", "Pooled"
    PERSONAL = "personal", "Personal"


class LoadBalancer(models.TextChoices):
    BREADTH_FIRST = "breadth_first", "Breadth-first"
    DEPTH_FIRST = "depth_first", "Depth-first"


class PersonalAssignment(models.TextChoices):
    AUTOMATIC = "automatic", "Automatic (on first connect)"
    DIRECT = "direct", "Direct (assigned by an admin)"


class SessionHostStatus(models.TextChoices):
    AVAILABLE = "available", "Available"
    UNAVAILABLE = "unavailable", "Unavailable"
    SHUTDOWN = "shutdown", "Shutdown"
    NEEDS_ASSISTANCE = "needs_assistance", "Needs assistance"
    UPGRADING = "upgrading", "Upgrading"


class UserSessionState(models.TextChoices):
    ACTIVE = "active", "Active"
    DISCONNECTED = "disconnected", "Disconnected"


class ConnectionTransport(models.TextChoices):
    """How the client reached the gateway (gateway/transports/)."""

    RDG_WEBSOCKET = "rdg-websocket", "RD Gateway (WebSocket)"
    RDG_HTTP = "rdg-http", "RD Gateway (HTTP)"
    WEBSOCKET = "websocket", "Raw WebSocket"
    RDCLEANPATH = "rdcleanpath", "Browser (RDCleanPath)"


class ConnectionState(models.TextChoices):
    STARTED = "started", "Started"
    CONNECTING = "connecting", "Connecting"
    CONNECTED = "connected", "Connected"
    ENDED = "ended", "Ended"
    FAILED = "failed", "Failed"


class EndReason(models.TextChoices):
    CLIENT_CLOSED = "client_closed", "Client closed the connection"
    HOST_CLOSED = "host_closed", "Session host closed the connection"
    GATEWAY_SHUTDOWN = "gateway_shutdown", "Gateway instance stopped"
    ERROR = "error", "Failed with an error"
