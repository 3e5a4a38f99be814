"""The browser transport on the real listener in process (tests/connector/gatewaybed.py: the gateway, the
database, the broker's placement and a simulated host that joins the relay): what the browser hears and
what is recorded when the request, the Origin or the host is wrong. The TLS path against xrdp is
tests/e2e/test_rdcleanpath.py's."""
from __future__ import annotations

import asyncio
import re

import pytest
from channels.db import database_sync_to_async
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from broker.choices import ConnectionState
from broker.models import Connection
from core.tickets import issue_web_ticket
from gateway.transports import rdcleanpath as transport
from tests.connector.gatewaybed import (  # noqa: F401  (fixtures)
    RECEIVE_TIMEOUT,
    Bed,
    bed,
    concurrent_sqlite,
    db,
    eager_tasks,
    estate_rows,
    gateway_ssl,
    in_memory_channel_layer,
)
from tests.gateway.test_rdcleanpath_bridge import REQUEST, confirm
from tests.gateway.test_transports import http_exchange, request_head
from wire import rdcleanpath, x224
from wire.errors import ErrorCode

pytestmark = pytest.mark.django_db(transaction=True)
E = ErrorCode
PORTAL = "http://portal.test"


def url(bed: Bed) -> str:
    return f"ws://127.0.0.1:{bed.port}{transport.PATH}"


async def web_ticket(bed: Bed) -> str:
    return await database_sync_to_async(issue_web_ticket)(
        user=bed.user, application_group_id=bed.group.pk, resource=f"{bed.group.name}/desktop",
        host_pool_id=bed.pool.pk, host_pool_name=bed.pool.name)


async def exchange(bed: Bed, first_message: bytes, origin: str = PORTAL,
                   on_host=None) -> tuple[rdcleanpath.Response, int, str]:
    """Send ``first_message``; the RDCleanPath answer, the close code and reason."""
    bed.server.config.web_origins = (PORTAL,)
    async with ws_connect(url(bed), origin=origin, compression=None) as ws:
        await ws.send(first_message)
        if on_host is not None:
            await on_host(await bed.simulated.next_arrival())
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            answer = rdcleanpath.decode_response(await ws.recv())
            try:
                await ws.recv()
            except ConnectionClosed:
                pass
    return answer, ws.close_code, ws.close_reason


def recorded(reason: str, code: str) -> Connection:
    activity = re.fullmatch(rf"{code} activity (\S+)", reason).group(1)
    connection = Connection.objects.get(activity_id=activity)
    assert (connection.state, connection.error_code, connection.transport) == (ConnectionState.FAILED, code,
                                                                               "rdcleanpath")
    return connection


async def test_a_plain_get_of_the_browser_path_is_refused_with_400(bed: Bed):
    status, _, body = await http_exchange(bed.port, request_head("GET", {}, transport.PATH))
    assert status == 400 and b"WebSocket upgrade" in body


@pytest.mark.parametrize("message", [b"\x30\x03\x02\x01\x05", b"not der at all", rdcleanpath.encode_request(
    destination="d", proxy_auth="t", x224_connection_request=b"\x03\x00\x00\x05\x00")],
    ids=["wrong-version", "not-der", "not-an-x224-request"])
async def test_a_message_that_is_not_a_request_is_refused_unrecorded(bed: Bed, message):
    before = await db(Connection.objects.count)()

    answer, code, reason = await exchange(bed, message)

    assert answer.error == rdcleanpath.ErrorInfo(1, http_status_code=400)
    assert (code, reason) == (4400, "ConnectionFailedClientProtocolError activity -")
    assert await db(Connection.objects.count)() == before


async def test_a_forged_ticket_is_refused_unrecorded(bed: Bed):
    forged = (await web_ticket(bed))[:-2] + "AA"
    before = await db(Connection.objects.count)()

    answer, code, reason = await exchange(bed, rdcleanpath.encode_request(
        destination="d", proxy_auth=forged, x224_connection_request=REQUEST))

    assert answer.error.http_status_code == 400 and code == 4401
    assert reason == "ConnectionFailedTicketInvalid activity -"
    assert await db(Connection.objects.count)() == before


async def test_a_foreign_origin_is_refused_and_recorded(bed: Bed):
    answer, code, reason = await exchange(bed, rdcleanpath.encode_request(
        destination="d", proxy_auth=await web_ticket(bed), x224_connection_request=REQUEST),
        origin="http://elsewhere.test")

    assert answer.error.http_status_code == 400 and code == 4403
    connection = await db(recorded)(reason, E.ConnectionFailedOriginNotAllowed)
    assert "elsewhere.test" in connection.error_message


async def test_a_host_that_does_not_choose_tls_gets_a_negotiation_error_with_its_confirm(bed: Bed):
    rdp_only = confirm(x224.PROTOCOL_RDP)

    async def host_answers(arrival) -> None:
        assert await arrival.end.read_exactly(len(REQUEST)) == REQUEST  # destination ignored, request forwarded
        await arrival.send(rdp_only)

    answer, code, reason = await exchange(bed, rdcleanpath.encode_request(
        destination="not-the-pool", proxy_auth=await web_ticket(bed), x224_connection_request=REQUEST),
        on_host=host_answers)

    assert answer.error == rdcleanpath.ErrorInfo(2, http_status_code=502)
    assert answer.x224_connection_pdu == rdp_only and code == 4502
    await db(recorded)(reason, E.ConnectionFailedHostSecurityNegotiation)


async def test_a_browser_that_sends_nothing_is_refused_after_the_bound(bed: Bed, monkeypatch):
    monkeypatch.setattr(transport, "FIRST_MESSAGE_TIMEOUT", 0.3)
    bed.server.config.web_origins = (PORTAL,)
    async with ws_connect(url(bed), origin=PORTAL, compression=None) as ws:
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            answer = rdcleanpath.decode_response(await ws.recv())
            await ws.wait_closed()
    assert answer.error.http_status_code == 400
    assert ws.close_reason == "ConnectionFailedClientProtocolError activity -"


async def test_a_first_message_past_the_size_bound_is_refused(bed: Bed):
    oversized = rdcleanpath.encode_request(destination="d", proxy_auth="t" * rdcleanpath.MAX_REQUEST_SIZE,
                                           x224_connection_request=REQUEST)

    answer, code, reason = await exchange(bed, oversized)

    assert answer.error.http_status_code == 400 and code == 4400
    assert reason == "ConnectionFailedClientProtocolError activity -"
