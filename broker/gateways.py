"""The registry of gateway instances: each `serve` process announces itself and keeps its row fresh."""
from __future__ import annotations

from django.utils import timezone

from broker.models import Connection, GatewayInstance


def register_instance(name: str, public_host: str, public_port: int, relay_url: str, region: str = "",
                      version: str = "") -> GatewayInstance:
    """Create or refresh this instance's row at start-up."""
    now = timezone.now()
    # Connections this instance held before it restarted are over: their relays died with the process.
    Connection.objects.filter(gateway_instance__name=name).ended_with_instance()
    instance, _ = GatewayInstance.objects.update_or_create(
        name=name,
        defaults={"public_host": public_host, "public_port": public_port, "relay_url": relay_url,
                  "region": region, "version": version, "started_at": now, "last_seen_at": now},
    )
    return instance


def touch_instance(name: str) -> None:
    GatewayInstance.objects.filter(name=name).update(last_seen_at=timezone.now())

