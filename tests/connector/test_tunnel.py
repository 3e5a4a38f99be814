"""The connector tunnels local RDP connections through the gateway's raw WebSocket transport over TLS, and
says in words why the gateway refused one.

The gateway is the real listener in this process with TLS from a CA made for the run
(tests/connector/conftest.py); the session host is simulated where it meets the relay
(tests/connector/gatewaybed.py).
"""
from __future__ import annotations

import asyncio
import ssl

import pytest

from broker.choices import ConnectionState, EndReason
from feed.rdpfile import DESKTOP, RdpResource, build_rdp
from gateway.connector.__main__ import client_ssl_context
from gateway.connector.rdpfile import parse_connection_file
from gateway.connector.tunnel import Connector, explain_close
from tests.connector.gatewaybed import (  # noqa: F401  (fixtures)
    RECEIVE_TIMEOUT,
    Bed,
    bed,
    concurrent_sqlite,
    eager_tasks,
    estate_rows,
    in_memory_channel_layer,
)
from wire import rdpfile
from wire.errors import describe

pytestmark = pytest.mark.django_db(transaction=True)

X224 = b"\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x0b\x00\x00\x00"


def connector_for(bed: Bed, context: ssl.SSLContext, ticket: str | None = None) -> Connector:
    """A connector for the file the feed would serve for this bed's desktop."""
    text = build_rdp(routing_name=bed.pool.name, gateway_host="127.0.0.1", gateway_port=bed.port,
                     access_token=ticket or bed.ticket(), workspace_id="contoso",
                     resource=RdpResource(kind=DESKTOP, alias=bed.group.name, title="Office desktop"))
    return Connector(parse_connection_file(rdpfile.encode(text)), context)


async def local_client(connector: Connector) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = await connector.start("127.0.0.1", 0)
    return await asyncio.open_connection(host, port)


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        return await reader.read()


async def test_a_local_connection_reaches_the_pool_through_the_gateway(bed: Bed, gateway_tls):
    connector = connector_for(bed, client_ssl_context(gateway_tls.ca_file))
    reader, writer = await local_client(connector)
    try:
        writer.write(X224)
        arrival = await bed.simulated.next_arrival()
        assert await arrival.end.read_exactly(len(X224)) == X224
        await arrival.send(b"connection confirm")
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            assert await reader.readexactly(18) == b"connection confirm"
        await bed.connection_when(lambda c: c.state == ConnectionState.CONNECTED)
        writer.close()
        ended = await bed.connection_when(lambda c: c.state == ConnectionState.ENDED)
    finally:
        await connector.close()
    assert ended.end_reason == EndReason.CLIENT_CLOSED
    assert (ended.bytes_client_to_host, ended.bytes_host_to_client) == (len(X224), 18)


async def test_the_session_host_ending_closes_the_local_connection(bed: Bed, gateway_tls):
    connector = connector_for(bed, client_ssl_context(gateway_tls.ca_file))
    reader, writer = await local_client(connector)
    try:
        arrival = await bed.simulated.next_arrival()
        await bed.connection_when(lambda c: c.state == ConnectionState.CONNECTED)
        arrival.hang_up()
        assert await read_to_end(reader) == b""
    finally:
        writer.close()
        await connector.close()


async def test_an_untrusted_gateway_certificate_is_reported_and_nothing_is_relayed(bed: Bed, caplog):
    connector = connector_for(bed, client_ssl_context(None))  # the system's store only
    reader, writer = await local_client(connector)
    try:
        assert await read_to_end(reader) == b""
    finally:
        writer.close()
        await connector.close()
    assert "certificate is not trusted" in caplog.text and "--ca-file" in caplog.text
    assert await bed.last_connection() is None  # it never reached the gateway's HTTP layer


async def test_a_refused_setup_is_explained_with_its_error_code_and_message(bed: Bed, gateway_tls, caplog):
    await bed.drain()
    connector = connector_for(bed, client_ssl_context(gateway_tls.ca_file))
    reader, writer = await local_client(connector)
    try:
        writer.write(X224)
        assert await read_to_end(reader) == b""
    finally:
        writer.close()
        await connector.close()
    connection = await bed.last_connection()
    assert connection.error_code == "ConnectionFailedNoHealthyRdshAvailable"
    assert (f"ConnectionFailedNoHealthyRdshAvailable (activity {connection.activity_id}) [HTTP 503]"
            in caplog.text)
    assert describe("ConnectionFailedNoHealthyRdshAvailable").message in caplog.text


async def test_a_refused_ticket_is_explained(bed: Bed, gateway_tls, caplog):
    ticket = bed.ticket()
    connector = connector_for(bed, client_ssl_context(gateway_tls.ca_file),
                              ticket=ticket[:-2] + ("AA" if ticket[-2:] != "AA" else "BB"))
    reader, writer = await local_client(connector)
    try:
        assert await read_to_end(reader) == b""
    finally:
        writer.close()
        await connector.close()
    assert "ConnectionFailedTicketInvalid [HTTP 400]: " in caplog.text
    assert describe("ConnectionFailedTicketInvalid").message in caplog.text
    assert "(activity" not in caplog.text  # a forged ticket gets no record (gateway/preauth.py)
    assert await bed.last_connection() is None


def test_a_close_after_the_upgrade_is_explained_like_an_http_refusal():
    explained = explain_close(4504, "ConnectionFailedReverseConnectTimeout activity 6f1c")
    assert explained == ("the gateway refused the connection: ConnectionFailedReverseConnectTimeout (activity 6f1c) "
                         f"[4504]: {describe('ConnectionFailedReverseConnectTimeout').message}")
    assert explain_close(1000, "") is None  # a normal end
