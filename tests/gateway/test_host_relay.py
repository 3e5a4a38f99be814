"""The host side of the relay (/hostagent/relay/<activity>/ on the gateway listener): only this connection's
host, proven by its key and its host ticket, joins a waiting client; everything else is refused with a
reason, and nothing is changed. Real sockets on 127.0.0.1, the agent's side spoken by hand."""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from channels.db import database_sync_to_async

from broker.choices import ConnectionState
from broker.models import Connection
from core.tickets import issue_host_ticket
from gateway.relay import Relay, Rendezvous, Side
from gateway.server import GatewayConfig, GatewayServer
from gateway.transports import agentlink
from tests.hostagent.conftest import host_a, host_b, our_ca, root_files  # noqa: F401  (fixtures)
from wire import proof, relaylink

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 10.0  # an upper bound for a loaded machine, not a speed assertion


class RecordingEnd:
    def __init__(self) -> None:
        self.received = bytearray()
        self.closed_with: str | None = None
        self.changed = asyncio.Event()

    async def send(self, data: bytes) -> None:
        self.received += data
        self.changed.set()

    def close(self, reason: str) -> None:
        self.closed_with = reason
        self.changed.set()

    async def wait_for(self, count: int) -> bytes:
        async with asyncio.timeout(TIMEOUT):
            while len(self.received) < count:
                self.changed.clear()
                await self.changed.wait()
        return bytes(self.received)


class Link:
    """The agent's end of a link, spoken by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def head(self) -> tuple[int, bytes]:
        """The response's status and, for an error, its text body."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        status, length = relaylink.parse_response_head(head)
        body = await asyncio.wait_for(self.reader.readexactly(length), TIMEOUT) if length else b""
        return status, body

    async def control(self, *expected: str) -> dict:
        line = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
        return relaylink.decode(line, expected)

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), TIMEOUT) == b""

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def gateway(our_ca) -> AsyncIterator[tuple[GatewayServer, int]]:
    server = GatewayServer(GatewayConfig(instance_name="test-gateway", host_arrival_timeout=TIMEOUT), Rendezvous(),
                           None)
    listener = await server.start("127.0.0.1", 0)
    try:
        yield server, listener.sockets[0].getsockname()[1]
    finally:
        await server.stop()


async def dial(port: int, activity_id: str, request: bytes | None = None) -> Link:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request if request is not None
                 else relaylink.upgrade_request("127.0.0.1", port, relaylink.relay_path(activity_id)))
    return Link(reader, writer)


async def open_link(port: int, activity_id: str) -> tuple[Link, bytes]:
    link = await dial(port, activity_id)
    assert (await link.head())[0] == 101
    return link, (await link.control("challenge"))["nonce"]


def hello(identity, nonce: bytes, ticket: str) -> bytes:
    return relaylink.hello(identity.certificate_pem, proof.sign_challenge(identity.key, nonce, identity.certificate),
                           ticket)


async def host_ticket(activity_id: str, identity) -> str:
    return await database_sync_to_async(issue_host_ticket)(connection_activity_id=activity_id,
                                                           session_host_id=identity.host.pk)


async def joined(server: GatewayServer, port: int, identity) -> tuple[Relay, RecordingEnd, Link]:
    """A waiting client, and this connection's host joined through a link: (relay, client end, link)."""
    activity = str(uuid.uuid4())
    relay = server.rendezvous.open(activity)
    client = RecordingEnd()
    await relay.attach(Side.CLIENT, client)
    link, nonce = await open_link(port, activity)
    link.writer.write(hello(identity, nonce, await host_ticket(activity, identity)))
    await link.control("ready")
    return relay, client, link


async def refusal(link: Link) -> str:
    reason = (await link.control("refused"))["reason"]
    assert await link.closed()
    return reason


async def test_the_connections_own_host_joins_the_waiting_client_and_bytes_flow_both_ways(gateway, host_a):
    server, port = gateway
    activity = str(uuid.uuid4())
    relay = server.rendezvous.open(activity)
    client = RecordingEnd()
    await relay.attach(Side.CLIENT, client)
    await relay.deliver(Side.CLIENT, b"early bytes ")  # queued until the host arrives, then first
    link, nonce = await open_link(port, activity)
    link.writer.write(hello(host_a, nonce, await host_ticket(activity, host_a)))
    await link.control("ready")
    assert relay.paired.is_set()
    await relay.deliver(Side.CLIENT, b"from the client")
    expected = b"early bytes from the client"
    assert await asyncio.wait_for(link.reader.readexactly(len(expected)), TIMEOUT) == expected
    link.writer.write(b"\x03\x00\x00\x13")
    assert await client.wait_for(4) == b"\x03\x00\x00\x13"
    assert relay.bytes_host_to_client == 4

    relay.end(Side.CLIENT, "client closed")
    assert await link.closed()  # the client's end closes the agent's link


async def test_the_host_hanging_up_ends_the_relay(gateway, host_a):
    relay, client, link = await joined(*gateway, host_a)
    link.close()
    await asyncio.wait_for(relay.ended.wait(), TIMEOUT)
    assert relay.result.ended_by is Side.HOST and client.closed_with == "host closed"


async def test_a_slow_agent_holds_the_client_back_instead_of_filling_the_gateway(gateway, host_a):
    relay, _, link = await joined(*gateway, host_a)
    link.writer.transport.pause_reading()  # the agent stops reading: its socket buffers fill up

    chunk = b"x" * 65536
    sent = 0

    async def client_sends() -> None:
        nonlocal sent
        while True:
            await relay.deliver(Side.CLIENT, chunk)
            sent += len(chunk)

    sender = asyncio.ensure_future(client_sends())
    previous = -1
    while previous != sent:  # until deliver() stays blocked: the gateway stopped taking the client's bytes
        previous = sent
        await asyncio.sleep(0.3)
    assert not sender.done() and sent < 64 * 1024 * 1024  # bounded by socket buffers, not by the stream

    sender.cancel()
    await asyncio.gather(sender, return_exceptions=True)
    link.writer.transport.resume_reading()
    received = 0
    while received < sent:  # and everything the gateway took reaches the agent once it reads again
        received += len(await asyncio.wait_for(link.reader.read(1 << 20), TIMEOUT))
    relay.end(Side.CLIENT, "done")


async def test_a_path_that_names_no_connection_is_not_found(gateway):
    _, port = gateway
    link = await dial(port, "", relaylink.upgrade_request("127.0.0.1", port, "/hostagent/relay/not-an-id/"))
    status, body = await link.head()
    assert status == 404 and b"/hostagent/relay/" in body


async def test_a_request_that_does_not_upgrade_to_the_agent_link_is_refused(gateway):
    _, port = gateway
    activity = str(uuid.uuid4())
    request = f"GET /hostagent/relay/{activity}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    status, body = await (await dial(port, activity, request)).head()
    assert status == 426 and relaylink.UPGRADE_TOKEN.encode() in body


async def test_a_hello_that_is_not_json_is_refused(gateway):
    _, port = gateway
    link, _ = await open_link(port, str(uuid.uuid4()))
    link.writer.write(b"{not json\n")
    assert "not JSON" in await refusal(link)


async def test_an_endless_control_line_is_refused_without_being_buffered(gateway):
    _, port = gateway
    link, _ = await open_link(port, str(uuid.uuid4()))
    link.writer.write(b"x" * (relaylink.MAX_CONTROL_LINE + 10))
    assert "no line end" in await refusal(link)


async def test_an_agent_that_says_nothing_is_refused_in_time(gateway, monkeypatch):
    monkeypatch.setattr(agentlink, "HELLO_TIMEOUT", 0.2)
    _, port = gateway
    link, _ = await open_link(port, str(uuid.uuid4()))
    assert await refusal(link) == "no hello in time"


async def test_a_tampered_host_ticket_is_refused(gateway, host_a):
    _, port = gateway
    activity = str(uuid.uuid4())
    link, nonce = await open_link(port, activity)
    ticket = await host_ticket(activity, host_a)
    middle = len(ticket) // 2
    forged = ticket[:middle] + ("A" if ticket[middle] != "A" else "B") + ticket[middle + 1:]
    link.writer.write(hello(host_a, nonce, forged))
    assert "host ticket refused" in await refusal(link)


async def test_a_ticket_for_another_connection_is_refused(gateway, host_a):
    _, port = gateway
    link, nonce = await open_link(port, str(uuid.uuid4()))
    link.writer.write(hello(host_a, nonce, await host_ticket(str(uuid.uuid4()), host_a)))
    assert "another connection" in await refusal(link)


async def test_another_hosts_key_cannot_use_this_hosts_ticket(gateway, host_a, host_b):
    _, port = gateway
    activity = str(uuid.uuid4())
    link, nonce = await open_link(port, activity)
    link.writer.write(hello(host_b, nonce, await host_ticket(activity, host_a)))
    assert "another session host" in await refusal(link)


async def test_a_signature_over_another_nonce_is_refused(gateway, host_a):
    _, port = gateway
    activity = str(uuid.uuid4())
    link, _ = await open_link(port, activity)
    link.writer.write(hello(host_a, b"\x00" * 32, await host_ticket(activity, host_a)))
    await refusal(link)


async def test_a_proven_host_with_no_client_waiting_here_is_turned_away(gateway, host_a):
    _, port = gateway
    activity = str(uuid.uuid4())
    link, nonce = await open_link(port, activity)
    link.writer.write(hello(host_a, nonce, await host_ticket(activity, host_a)))
    assert await refusal(link) == "no such connection on this gateway instance"


async def test_an_unreachable_listener_fails_the_connection_at_once_but_only_with_its_ticket(gateway, host_a):
    server, port = gateway
    pool = await database_sync_to_async(lambda: host_a.host.host_pool)()
    connection = await database_sync_to_async(Connection.objects.create)(host_pool=pool,
                                                                         state=ConnectionState.CONNECTING)
    activity = str(connection.activity_id)
    relay = server.rendezvous.open(activity)
    await relay.attach(Side.CLIENT, RecordingEnd())

    link, _ = await open_link(port, activity)  # without the ticket: refused, nothing recorded
    link.writer.write(relaylink.fail("rdp_unreachable", "refused", "wht1.forged.ticket"))
    assert "host ticket refused" in await refusal(link)
    assert not relay.is_ended

    link, _ = await open_link(port, activity)
    link.writer.write(relaylink.fail("rdp_unreachable", "connection refused", await host_ticket(activity, host_a)))
    assert await refusal(link) == "recorded"
    assert relay.is_ended
    stored = await database_sync_to_async(Connection.objects.get)(pk=connection.pk)
    assert (stored.state, stored.error_code) == (ConnectionState.FAILED, "ConnectionFailedHostListenerUnreachable")
