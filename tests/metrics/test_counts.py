"""The lifecycle's counts (core/metrics.py): each end of a Connection is counted once, by the transition
whose conditional UPDATE made it, under its outcome, error code and transport, after the commit; the
setup checkpoints are observed once, when the relay starts; the relay's bytes are read from the relays."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from prometheus_client import REGISTRY

from broker.choices import ConnectionTransport, EndReason
from broker.models import Connection, GatewayInstance, HostPool, SessionHost
from core import metrics
from gateway.relay import Rendezvous, Side
from wire.errors import ErrorCode

pytestmark = pytest.mark.django_db

WS, HTTP = ConnectionTransport.RDG_WEBSOCKET, ConnectionTransport.RDG_HTTP


def count(outcome: str, code: str = "", transport: str = WS) -> float:
    labels = {"outcome": outcome, "error_code": code, "transport": transport}
    return REGISTRY.get_sample_value("wvd_connections_total", labels) or 0.0


def checkpoints(checkpoint: str) -> float:
    return REGISTRY.get_sample_value("wvd_connection_setup_seconds_count", {"checkpoint": checkpoint}) or 0.0


@pytest.fixture
def host(db):
    """A host in a pool, and a gateway instance: what a connection names."""
    pool = HostPool.objects.create(name="pool-m", max_session_limit=5)
    GatewayInstance.objects.create(name="gw-m", public_host="127.0.0.1", public_port=8443)
    return SessionHost.objects.create(host_pool=pool, name="host-m", status="available")


@pytest.fixture
def admit(member, host):
    def admit(transport: str = WS) -> Connection:
        return Connection.objects.admit(user=member, username="member", host_pool=host.host_pool,
                                        gateway_instance=GatewayInstance.objects.get(name="gw-m"), transport=transport)
    return admit


def test_a_failure_is_counted_once_under_its_code_however_many_try(admit, django_capture_on_commit_callbacks):
    connection = admit()
    before = count("failed", ErrorCode.ConnectionFailedNoHealthyRdshAvailable)
    with django_capture_on_commit_callbacks(execute=True):
        first = Connection.objects.filter(pk=connection.pk).fail(ErrorCode.ConnectionFailedNoHealthyRdshAvailable)
        second = Connection.objects.filter(pk=connection.pk).fail(ErrorCode.ConnectionFailedNoHealthyRdshAvailable)
    assert (first, second) == (1, 0)
    assert count("failed", ErrorCode.ConnectionFailedNoHealthyRdshAvailable) == before + 1


def test_an_end_is_counted_only_when_its_transaction_commits(admit, django_capture_on_commit_callbacks):
    connection = admit()
    before = count("failed", ErrorCode.InternalError)
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            Connection.objects.filter(pk=connection.pk).fail(ErrorCode.InternalError)
            raise RuntimeError("rolled back")
    assert count("failed", ErrorCode.InternalError) == before


def test_finish_counts_a_success_per_transport_and_a_refusal_counts_at_the_door(
        admit, host, django_capture_on_commit_callbacks):
    ws, http = admit(WS), admit(HTTP)
    for connection in (ws, http):
        Connection.objects.filter(pk=connection.pk).reserve(host)
    before = (count("success", transport=WS), count("success", transport=HTTP),
              count("refused", ErrorCode.ConnectionFailedTicketRevoked, transport=WS))
    with django_capture_on_commit_callbacks(execute=True):
        ended = Connection.objects.filter(pk__in=[ws.pk, http.pk]).finish(EndReason.CLIENT_CLOSED, 10, 20)
        Connection.objects.refuse(ErrorCode.ConnectionFailedTicketRevoked, "", transport=WS,
                                  host_pool_id=host.host_pool_id)
    assert ended == 2
    assert (count("success", transport=WS), count("success", transport=HTTP),
            count("refused", ErrorCode.ConnectionFailedTicketRevoked, transport=WS)) == (before[0] + 1, before[1] + 1, before[2] + 1)


def test_a_lost_instance_counts_its_open_connections_as_lost(admit, django_capture_on_commit_callbacks):
    admit(), admit()
    before = count("lost")
    with django_capture_on_commit_callbacks(execute=True):
        assert Connection.objects.filter(gateway_instance__name="gw-m").ended_with_instance() == 2
    assert count("lost") == before + 2


def test_the_checkpoints_are_observed_once_when_the_relay_starts(admit, host, django_capture_on_commit_callbacks):
    connection = admit()
    one = Connection.objects.filter(pk=connection.pk)
    one.reserve(host)
    one.host_notified()
    one.host_connected()
    before = {name: checkpoints(name) for name in metrics.CHECKPOINTS}
    sum_before = REGISTRY.get_sample_value("wvd_connection_setup_seconds_sum", {"checkpoint": "relay_started"}) or 0.0
    with django_capture_on_commit_callbacks(execute=True):
        assert one.relay_started() == 1
        assert one.relay_started() == 0
    assert {name: checkpoints(name) - before[name] for name in metrics.CHECKPOINTS} == dict.fromkeys(
        metrics.CHECKPOINTS, 1)
    row = Connection.objects.get(pk=connection.pk)
    observed = REGISTRY.get_sample_value("wvd_connection_setup_seconds_sum", {"checkpoint": "relay_started"}) - sum_before
    assert observed == pytest.approx((row.relay_started_at - row.ticket_accepted_at) / timedelta(seconds=1))


class End:
    def __init__(self) -> None:
        self.received = b""

    async def send(self, data: bytes) -> None:
        self.received += data

    def close(self, reason: str) -> None:
        pass


def relay_bytes(direction: str, transport: str = "websocket") -> float:
    return REGISTRY.get_sample_value("wvd_relay_bytes_total", {"transport": transport, "direction": direction}) or 0.0


def relays_active(transport: str = "websocket") -> float:
    return REGISTRY.get_sample_value("wvd_relays_active", {"transport": transport}) or 0.0


async def test_relayed_bytes_are_read_from_live_relays_and_never_go_back():
    rendezvous = Rendezvous()
    metrics.relay_traffic.watch(rendezvous.relays)
    up, down = relay_bytes("client_to_host"), relay_bytes("host_to_client")
    relay = rendezvous.open("activity-m", transport="websocket")
    await relay.attach(Side.CLIENT, End())
    await relay.attach(Side.HOST, End())
    await relay.deliver(Side.CLIENT, b"x" * 1000)
    await relay.deliver(Side.HOST, b"y" * 300)
    assert (relay_bytes("client_to_host") - up, relay_bytes("host_to_client") - down) == (1000, 300)
    assert relays_active() == 1
    await relay.deliver(Side.CLIENT, b"x" * 24)
    relay.end(Side.CLIENT, "client closed")
    metrics.relay_traffic.ended(relay)  # what the gateway's setup does when the relay reports its end
    # Scraped twice more: the ended relay is gone from the rendezvous, its bytes stay counted once.
    assert relay_bytes("client_to_host") - up == 1024
    assert relay_bytes("client_to_host") - up == 1024
    assert relays_active() == 0
