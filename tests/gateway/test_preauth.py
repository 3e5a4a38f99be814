"""What an unauthenticated peer may cost the gateway (gateway/preauth.py): an absolute deadline that no
traffic extends, caps per client address and in all answered at once without database work, and no record
for a ticket that is not ours.
"""
from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus
from websockets.protocol import Protocol, State
from websockets.protocol import Side as WsSide

from gateway import preauth
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

pytestmark = pytest.mark.django_db(transaction=True)
FREERDP2_KEY = "NF_L^XYECXCQPRX"


async def upgraded_rdg_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Protocol]:
    """An RDG_OUT_DATA WebSocket upgrade, then nothing of MS-TSGU: the peer never presents a ticket."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"RDG_OUT_DATA /remoteDesktopGateway/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
                  f"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {FREERDP2_KEY}\r\n"
                  f"RDG-Connection-Id: {{{uuid.uuid4()}}}\r\nRDG-Auth-Scheme: PAA\r\nContent-Length: 0\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), RECEIVE_TIMEOUT)
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer, Protocol(WsSide.CLIENT, state=State.OPEN, max_size=None)


async def closed_by_the_gateway(reader: asyncio.StreamReader) -> None:
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        while await reader.read(4096):
            pass


async def test_pings_do_not_keep_an_unauthenticated_connection_open(bed: Bed):
    bed.server.config.preauth_timeout = 0.5
    reader, writer, ws = await upgraded_rdg_client(bed.port)
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def ping_forever() -> None:
        while True:
            ws.send_ping(b"still here")
            writer.write(b"".join(ws.data_to_send()))
            await asyncio.sleep(0.05)

    pinging = asyncio.ensure_future(ping_forever())
    try:
        await closed_by_the_gateway(reader)
    finally:
        pinging.cancel()
        writer.close()
    assert loop.time() - started >= 0.5
    assert bed.server.preauth.waiting == 0
    assert await bed.last_connection() is None  # nothing was written for it


async def test_a_connection_past_the_cap_for_its_address_is_answered_503_at_once(bed: Bed):
    bed.server.preauth.max_per_address = 2
    held = [await asyncio.open_connection("127.0.0.1", bed.port) for _ in range(2)]
    await asyncio.sleep(0.1)  # both accepted
    assert bed.server.preauth.waiting_from("127.0.0.1") == 2
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", bed.port)
        answer = await asyncio.wait_for(reader.read(), RECEIVE_TIMEOUT)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503")
    finally:
        for _, held_writer in held:
            held_writer.close()
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        while bed.server.preauth.waiting:
            await asyncio.sleep(0.02)


async def test_a_connection_past_the_total_cap_is_answered_503(bed: Bed):
    bed.server.preauth.max_total = 1
    held_reader, held_writer = await asyncio.open_connection("127.0.0.1", bed.port)
    await asyncio.sleep(0.1)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", bed.port)
        assert (await asyncio.wait_for(reader.read(), RECEIVE_TIMEOUT)).startswith(b"HTTP/1.1 503")
        writer.close()
    finally:
        held_writer.close()


async def test_the_deadline_ends_once_the_ticket_is_admitted(bed: Bed):
    # The host never arrives: the client hears the host-arrival timeout (1 s), not the 0.3 s pre-auth
    # deadline, which would have closed the connection without a word.
    await bed.simulated.stop()
    bed.server.config.preauth_timeout = 0.3
    bed.server.config.host_arrival_timeout = 1.0
    with pytest.raises(InvalidStatus) as refused:
        await ws_connect(f"ws://127.0.0.1:{bed.port}/remoteDesktopGateway/",
                         additional_headers={"Authorization": f"Bearer {bed.ticket()}"}, open_timeout=RECEIVE_TIMEOUT)
    assert refused.value.response.status_code == 504
    assert refused.value.response.reason_phrase.startswith("ConnectionFailedReverseConnectTimeout activity ")
    assert bed.server.preauth.waiting == 0  # admitted: no longer counted


async def test_tickets_that_are_not_ours_are_counted_and_logged_once_a_minute_not_recorded(bed: Bed, caplog,
                                                                                         monkeypatch):
    counter = preauth.RateLimitedLog(preauth.garbage_tickets.what)
    monkeypatch.setattr("gateway.records.garbage_tickets", counter)
    with caplog.at_level(logging.WARNING, logger="gateway.preauth"):
        for attempt in range(5):
            with pytest.raises(InvalidStatus):
                await ws_connect(f"ws://127.0.0.1:{bed.port}/remoteDesktopGateway/",
                                 additional_headers={"Authorization": f"Bearer wct1.junk{attempt}.sig"})
    assert counter.total == 5
    assert caplog.text.count("not one of our tickets") == 1
    assert await bed.last_connection() is None
