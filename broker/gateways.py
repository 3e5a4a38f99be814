"""The registry of gateway instances: each `serve` process announces itself and keeps its row fresh, and the
survivors notice one that stopped doing so (``sweep_lost_instances``)."""
from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from broker.models import Connection, GatewayInstance
from wire.errors import ErrorCode

log = logging.getLogger(__name__)


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


def sweep_lost_instances(now: datetime | None = None) -> dict[str, int]:
    """End the open connections of every instance not seen for ``GATEWAY_INSTANCE_LOST_AFTER``.

    Such an instance was killed or lost its machine or its database: its relays died with it, so its open
    connections (relaying or still being set up) fail with ConnectionBrokenGatewayInstanceLost, which names
    the instance and when it was last seen. Returns ``{instance name: connections ended}`` for the instances
    whose connections ended now; an instance already swept has none left open, so a later run is quiet.
    The row stays (the records keep pointing at it); the instance refreshes it when it comes back.

    "Not seen" is measured from the freshest instance's row, not only from now: when the database was away,
    every row is late together and no instance is taken for lost; once the others refresh theirs, one that
    stays behind is.
    """
    freshest = GatewayInstance.objects.aggregate(seen=Max("last_seen_at"))["seen"]
    if freshest is None:
        return {}
    cutoff = min(now or timezone.now(), freshest) - settings.GATEWAY_INSTANCE_LOST_AFTER
    ended: dict[str, int] = {}
    lost = GatewayInstance.objects.filter(last_seen_at__lt=cutoff, connections__ended_at__isnull=True).distinct()
    for instance in lost:
        seen = instance.last_seen_at.isoformat(timespec="seconds")
        # The cutoff again in the UPDATE: an instance that refreshed its row meanwhile keeps its connections.
        count = Connection.objects.filter(gateway_instance=instance, gateway_instance__last_seen_at__lt=cutoff).fail(
            ErrorCode.ConnectionBrokenGatewayInstanceLost, f"gateway instance {instance.name} last seen {seen}")
        if count:
            ended[instance.name] = count
            log.warning("gateway instance %s not seen since %s: ended its %d open connection(s) (%s)",
                        instance.name, seen, count, ErrorCode.ConnectionBrokenGatewayInstanceLost)
    return ended
