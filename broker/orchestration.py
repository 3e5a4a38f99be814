"""Step 7 of the connection sequence: turn a client's request into a session host's connect order.

Placement reserves a host (broker/placement.py); the host's agent is then told, over its persistent
channel, which connection to serve and which gateway instance holds the client, with a host ticket bound
to this connection and this host. The gateway waits for the agent's reverse connection; when it does
not come, the gateway fails the connection and frees the reservation.
"""
from __future__ import annotations

import logging
import secrets

from broker.choices import ConnectionState
from broker.hostbus import send_to_host
from broker.models import Connection, GatewayInstance
from broker.placement import PlacementResult, place_connection, release_reservation
from core import logcontext
from core.tickets import issue_host_ticket
from wire import hostchannel, relaylink
from wire.errors import ErrorCode

log = logging.getLogger(__name__)


def relay_url_for(instance: GatewayInstance, activity_id: str) -> str:
    return instance.relay_url.rstrip("/") + relaylink.relay_path(activity_id)


def orchestrate(connection_id: int, gateway_instance: str) -> PlacementResult:
    """Place the connection and send the chosen host its connect order; idempotent per connection."""
    if logcontext.activity.get():  # eager, in the gateway's thread: its lines already carry the activity
        return _orchestrate(connection_id, gateway_instance)
    activity = Connection.objects.filter(pk=connection_id).values_list("activity_id", flat=True).first()
    with logcontext.for_activity(str(activity or "")):
        return _orchestrate(connection_id, gateway_instance)


def _orchestrate(connection_id: int, gateway_instance: str) -> PlacementResult:
    result = place_connection(connection_id)
    if not result.ok:
        return result
    connection = Connection.objects.get(pk=connection_id)
    if connection.host_notified_at is not None or connection.state != ConnectionState.CONNECTING:
        return result  # a retry after the order went out, or the connection moved on meanwhile
    instance = GatewayInstance.objects.filter(name=gateway_instance).first()
    if instance is None or not instance.relay_url:
        release_reservation(connection_id, ErrorCode.InternalError,
                            f"Gateway instance {gateway_instance!r} is not registered.")
        return place_connection(connection_id)  # returns the recorded failure
    activity_id = str(connection.activity_id)
    ticket = issue_host_ticket(connection_activity_id=activity_id, session_host_id=result.session_host_id)
    order = hostchannel.command(
        secrets.token_urlsafe(16),
        "connect",
        {"activity_id": activity_id, "relay_url": relay_url_for(instance, activity_id), "host_ticket": ticket},
    )
    send_to_host(result.session_host_id, order)
    Connection.objects.filter(pk=connection_id).host_notified()
    log.info("connection %s: connect order sent to host %s via %s", activity_id, result.session_host_id,
             instance.name)
    return result
