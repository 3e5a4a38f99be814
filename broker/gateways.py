"""The registry of gateway instances: each `serve` process announces itself and keeps its row fresh, and the
survivors notice one that stopped doing so (``sweep_lost_instances``)."""
from __future__ import annotations

import logging
from django.conf import settings
from django.db.models import Case, F, Value, When
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
                  "region": region, "version": version, "started_at": now, "last_seen_at": now, "seen_since": now},
    )
    return instance


def touch_instance(name: str) -> None:
    """Refresh this instance's row; after a gap of GATEWAY_INSTANCE_LOST_AFTER (the instance or the database
    was away) its unbroken run of refreshes starts again now."""
    now = timezone.now()
    GatewayInstance.objects.filter(name=name).update(
        seen_since=Case(When(last_seen_at__lt=now - settings.GATEWAY_INSTANCE_LOST_AFTER, then=Value(now)),
                        default=F("seen_since")),
        last_seen_at=now)


def _lost(instance: GatewayInstance, others: list[GatewayInstance]) -> bool:
    """Whether another instance refreshed its row without a gap for GATEWAY_INSTANCE_LOST_AFTER, all of it
    after ``instance`` last refreshed its own: the database was there to take its writes, and none came."""
    return any(other.last_seen_at - max(other.seen_since, instance.last_seen_at) >= settings.GATEWAY_INSTANCE_LOST_AFTER
               for other in others if other.pk != instance.pk)


def sweep_lost_instances() -> dict[str, int]:
    """End the open connections of every instance taken for lost.

    Such an instance was killed or lost its machine or its database: its relays died with it, so its open
    connections (relaying or still being set up) fail with ConnectionBrokenGatewayInstanceLost, which names
    the instance and when it was last seen. Returns ``{instance name: connections ended}`` for the instances
    whose connections ended now; an instance already swept has none left open, so a later run is quiet.
    The row stays (the records keep pointing at it); the instance refreshes it when it comes back.

    An instance is lost when another one's unbroken run of refreshes spans GATEWAY_INSTANCE_LOST_AFTER since
    its own last refresh. Not simply "late by that much": when the database was away every row is late
    together, and as it comes back the instances refresh one after the other; none is taken for lost until
    a survivor has been refreshing for the whole span, so a slow one has its time to catch up.
    """
    instances = list(GatewayInstance.objects.only("name", "last_seen_at", "seen_since"))
    open_on = set(Connection.objects.filter(ended_at__isnull=True, gateway_instance__isnull=False).order_by()
                  .values_list("gateway_instance", flat=True).distinct())
    ended: dict[str, int] = {}
    for instance in instances:
        if instance.pk not in open_on or not _lost(instance, instances):
            continue
        seen = instance.last_seen_at.isoformat(timespec="seconds")
        # Its last refresh again in the UPDATE: an instance that refreshed its row meanwhile keeps its connections.
        count = Connection.objects.filter(gateway_instance=instance,
                                          gateway_instance__last_seen_at__lte=instance.last_seen_at).fail(
            ErrorCode.ConnectionBrokenGatewayInstanceLost, f"gateway instance {instance.name} last seen {seen}")
        if count:
            ended[instance.name] = count
            log.warning("gateway instance %s not seen since %s: ended its %d open connection(s) (%s)",
                        instance.name, seen, count, ErrorCode.ConnectionBrokenGatewayInstanceLost)
    return ended
