"""A client's ordinary end of a TLS connection is not an error in the gateway's log; a broken one still is.

At the end of a session FreeRDP closes its TCP connection without a TLS close_notify, or it is still
sending when the gateway has closed (the host logged the user off) and its bytes arrive after our
close_notify, which OpenSSL reports as APPLICATION_DATA_AFTER_CLOSE_NOTIFY. Both are how sessions end,
every day; `serve` used to log the second as "client dropped: SSLError".
"""
from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import ssl

import pytest

from broker.choices import ConnectionState
from tests.connector.gatewaybed import (  # noqa: F401  (fixtures)
    RECEIVE_TIMEOUT,
    Bed,
    bed,
    concurrent_sqlite,
    eager_tasks,
    estate_rows,
    in_memory_channel_layer,
)

pytestmark = pytest.mark.django_db(transaction=True)


def upgrade_request(bed: Bed) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET /remoteDesktopGateway/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
            f"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
            f"Authorization: Bearer {bed.ticket()}\r\n\r\n").encode()


async def relayed_session(bed: Bed, gateway_tls) -> tuple[ssl.SSLSocket, socket.socket]:
    """A raw-WebSocket session through the gateway, its relay running: (the TLS socket, the TCP one)."""
    def open_tls() -> tuple[ssl.SSLSocket, socket.socket]:
        raw = socket.create_connection(("127.0.0.1", bed.port), timeout=RECEIVE_TIMEOUT)
        context = ssl.create_default_context(cafile=str(gateway_tls.ca_file))
        tls = context.wrap_socket(raw, server_hostname="localhost")
        tls.sendall(upgrade_request(bed))
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += tls.recv(4096)
        assert answer.startswith(b"HTTP/1.1 101"), answer
        return tls, raw

    tls, raw = await asyncio.to_thread(open_tls)
    await bed.connection_when(lambda c: c.state == ConnectionState.CONNECTED)
    return tls, raw


def masked_binary_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    return bytes([0x82, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def dropped_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]


async def test_a_tcp_close_without_close_notify_ends_the_session_without_an_error(bed: Bed, gateway_tls, caplog):
    caplog.set_level(logging.INFO)
    tls, raw = await relayed_session(bed, gateway_tls)

    # As FreeRDP does at the end of a session: the TCP connection closes, no TLS close_notify.
    tls.shutdown(socket.SHUT_RDWR)  # SSLSocket.shutdown: the socket's own, TLS is not told
    tls.close()

    ended = await bed.connection_when(lambda c: c.state == ConnectionState.ENDED)
    assert ended.end_reason == "client_closed"
    await asyncio.sleep(0.2)  # the connection's task logs its end after the record
    assert dropped_lines(caplog) == []


async def test_a_close_notify_then_close_ends_the_session_without_an_error(bed: Bed, gateway_tls, caplog):
    caplog.set_level(logging.INFO)
    tls, raw = await relayed_session(bed, gateway_tls)

    raw_again = await asyncio.to_thread(tls.unwrap)  # sends close_notify, reads the gateway's
    raw_again.close()

    ended = await bed.connection_when(lambda c: c.state == ConnectionState.ENDED)
    assert ended.end_reason == "client_closed"
    await asyncio.sleep(0.2)
    assert dropped_lines(caplog) == []


async def test_a_client_still_sending_when_the_host_ends_the_session_is_an_ordinary_end(bed: Bed, gateway_tls,
                                                                                       caplog):
    caplog.set_level(logging.INFO)
    arrivals = asyncio.ensure_future(bed.simulated.next_arrival())
    tls, _ = await relayed_session(bed, gateway_tls)
    arrival = await arrivals

    arrival.hang_up()  # the server logs the user off: the gateway closes the WebSocket and its TLS
    await bed.connection_when(lambda c: c.state == ConnectionState.ENDED)

    def keep_sending() -> None:  # the client has not read that yet and sends its last PDUs
        try:
            for _ in range(20):
                tls.sendall(masked_binary_frame(b"late rdp bytes"))
        except OSError:
            pass  # the gateway's side is gone
        finally:
            tls.close()

    await asyncio.to_thread(keep_sending)
    await asyncio.sleep(0.5)  # the gateway's connection task reads them and ends
    assert dropped_lines(caplog) == []


async def test_a_broken_tls_stream_is_still_logged_with_its_reason(bed: Bed, gateway_tls, caplog):
    caplog.set_level(logging.INFO)

    def handshake_then_garbage() -> None:
        # TLS through memory buffers, so the test can put a forged record on the wire after the handshake.
        raw = socket.create_connection(("127.0.0.1", bed.port), timeout=RECEIVE_TIMEOUT)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ssl.create_default_context(cafile=str(gateway_tls.ca_file)).wrap_bio(
            incoming, outgoing, server_hostname="localhost")
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                raw.sendall(outgoing.read())
                incoming.write(raw.recv(65536))
        raw.sendall(outgoing.read())
        raw.sendall(b"\x17\x03\x03\x00\x20" + os.urandom(32))  # application data no key produced
        try:
            raw.recv(65536)  # the gateway's alert, or its close
        except OSError:
            pass
        raw.close()

    await asyncio.to_thread(handshake_then_garbage)
    await asyncio.sleep(0.5)
    lines = dropped_lines(caplog)
    assert len(lines) == 1 and "BAD_RECORD_MAC" in lines[0], lines  # the reason, not just "SSLError"
