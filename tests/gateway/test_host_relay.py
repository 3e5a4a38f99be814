"""The host side of the relay (/ws/relay/<activity>/): only this connection's host, proven by its key and its
host ticket, joins a waiting client; everything else is refused with a close code, and nothing is changed."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from broker.choices import ConnectionState
from broker.models import Connection
from gateway.consumers import CLOSE_PROTOCOL, CLOSE_REFUSED, CLOSE_UNKNOWN_CONNECTION
from gateway.instance import rendezvous
from gateway.relay import Side
from gateway.routing import websocket_urlpatterns
from hostagent import proof, relaylink
from tests.hostagent.conftest import host_a, host_b, our_ca, root_files  # noqa: F401  (fixtures)
from wvdportal.tickets import issue_host_ticket

pytestmark = pytest.mark.django_db(transaction=True)


class RecordingEnd:
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.closed_with: str | None = None

    async def send(self, data: bytes) -> None:
        self.received.append(data)

    def close(self, reason: str) -> None:
        self.closed_with = reason


def communicator(activity_id: str) -> WebsocketCommunicator:
    return WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/relay/{activity_id}/")


async def open_link(activity_id: str) -> tuple[WebsocketCommunicator, bytes]:
    link = communicator(activity_id)
    connected, _ = await link.connect()
    assert connected
    challenge = relaylink.decode(await link.receive_from(), ("challenge",))
    return link, challenge["nonce"]


def hello(identity, nonce: bytes, ticket: str) -> str:
    return relaylink.hello(identity.certificate_pem, proof.sign_challenge(identity.key, nonce, identity.certificate),
                           ticket)


@database_sync_to_async
def connecting(pool) -> Connection:
    return Connection.objects.create(host_pool=pool, state=ConnectionState.CONNECTING)


async def test_the_connections_own_host_joins_the_waiting_client(host_a):
    activity = str(uuid.uuid4())
    relay = rendezvous.open(activity)
    client = RecordingEnd()
    await relay.attach(Side.CLIENT, client)
    link, nonce = await open_link(activity)
    ticket = await database_sync_to_async(issue_host_ticket)(connection_activity_id=activity,
                                                             session_host_id=host_a.host.pk)
    await link.send_to(text_data=hello(host_a, nonce, ticket))
    ready = relaylink.decode(await link.receive_from(), ("ready",))
    assert ready["window"] > 0 and relay.paired.is_set()
    await link.send_to(bytes_data=b"\x03\x00\x00\x13")
    await relay.deliver(Side.CLIENT, b"from the client")
    assert await link.receive_from() == b"from the client"
    for _ in range(200):  # the agent's frame reaches the client through the consumer's own loop
        if client.received:
            break
        await asyncio.sleep(0.01)
    assert client.received == [b"\x03\x00\x00\x13"]
    relay.end(Side.CLIENT, "client closed")
    await link.disconnect()


async def test_a_malformed_activity_id_is_refused_before_anything_else():
    link = communicator("not-a-connection")
    connected, code = await link.connect()
    assert not connected and code == CLOSE_UNKNOWN_CONNECTION


async def test_a_hello_that_is_not_json_closes_the_link():
    link, _ = await open_link(str(uuid.uuid4()))
    await link.send_to(text_data="{not json")
    assert (await link.receive_output())["code"] == CLOSE_PROTOCOL


async def test_a_tampered_host_ticket_is_refused(host_a):
    activity = str(uuid.uuid4())
    link, nonce = await open_link(activity)
    ticket = await database_sync_to_async(issue_host_ticket)(connection_activity_id=activity,
                                                             session_host_id=host_a.host.pk)
    middle = len(ticket) // 2
    forged = ticket[:middle] + ("A" if ticket[middle] != "A" else "B") + ticket[middle + 1:]
    await link.send_to(text_data=hello(host_a, nonce, forged))
    closed = await link.receive_output()
    assert closed["code"] == CLOSE_REFUSED and "host ticket refused" in closed["reason"]


async def test_a_ticket_for_another_connection_is_refused(host_a):
    link, nonce = await open_link(str(uuid.uuid4()))
    ticket = await database_sync_to_async(issue_host_ticket)(connection_activity_id=str(uuid.uuid4()),
                                                             session_host_id=host_a.host.pk)
    await link.send_to(text_data=hello(host_a, nonce, ticket))
    closed = await link.receive_output()
    assert closed["code"] == CLOSE_REFUSED and "another connection" in closed["reason"]


async def test_another_hosts_key_cannot_use_this_hosts_ticket(host_a, host_b):
    activity = str(uuid.uuid4())
    link, nonce = await open_link(activity)
    ticket = await database_sync_to_async(issue_host_ticket)(connection_activity_id=activity,
                                                             session_host_id=host_a.host.pk)
    await link.send_to(text_data=hello(host_b, nonce, ticket))
    closed = await link.receive_output()
    assert closed["code"] == CLOSE_REFUSED and "another session host" in closed["reason"]


async def test_a_proven_host_with_no_client_waiting_here_is_turned_away(host_a):
    activity = str(uuid.uuid4())
    link, nonce = await open_link(activity)
    ticket = await database_sync_to_async(issue_host_ticket)(connection_activity_id=activity,
                                                             session_host_id=host_a.host.pk)
    await link.send_to(text_data=hello(host_a, nonce, ticket))
    assert (await link.receive_output())["code"] == CLOSE_UNKNOWN_CONNECTION


async def test_an_unreachable_listener_fails_the_connection_at_once_but_only_with_its_ticket(host_a):
    pool = await database_sync_to_async(lambda: host_a.host.host_pool)()
    connection = await connecting(pool)
    activity = str(connection.activity_id)
    relay = rendezvous.open(activity)
    await relay.attach(Side.CLIENT, RecordingEnd())

    link, _ = await open_link(activity)  # without the ticket: refused, nothing recorded
    await link.send_to(text_data=relaylink.fail("rdp_unreachable", "refused", "wht1.forged.ticket"))
    assert (await link.receive_output())["code"] == CLOSE_REFUSED
    assert not relay.is_ended

    ticket = await database_sync_to_async(issue_host_ticket)(connection_activity_id=activity,
                                                             session_host_id=host_a.host.pk)
    link, _ = await open_link(activity)
    await link.send_to(text_data=relaylink.fail("rdp_unreachable", "connection refused", ticket))
    await link.receive_output()
    assert relay.is_ended
    stored = await database_sync_to_async(Connection.objects.get)(pk=connection.pk)
    assert (stored.state, stored.error_code) == (ConnectionState.FAILED, "ConnectionFailedHostListenerUnreachable")
