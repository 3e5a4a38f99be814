"""The RD Gateway WebSocket transport: ``RDG_OUT_DATA`` upgraded by hand, one TSGU packet per binary frame.

What stock clients use by default (FreeRDP 2.11 with its non-RFC key, FreeRDP 3, mstsc); PROTOCOLS.md
§4.2-§4.5. The connection's read loop feeds frames to the tunnel; the tunnel answers through
``WebSocketSink``.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from broker.choices import ConnectionTransport
from gateway import httpupgrade
from gateway.transports.stream import ClientStream
from gateway.transports.tunnel import RdgTunnel
from gateway.wsframing import ServerWebSocket

if TYPE_CHECKING:
    from gateway.server import GatewayServer

log = logging.getLogger(__name__)

class WebSocketSink:
    """Packets as unmasked binary frames, one per packet (as mstsc expects)."""

    def __init__(self, stream: ClientStream, ws: ServerWebSocket) -> None:
        self.stream, self.ws = stream, ws

    def send(self, packets: list[bytes]) -> None:
        ws = self.ws
        self.stream.write(b"".join(ws.send_binary(packet) for packet in packets))

    async def drain(self) -> None:
        await self.stream.drain()

    def keepalive(self) -> None:
        self.stream.write(self.ws.send_ping(b"wvd"))  # FreeRDP answers with a pong

    def close(self, packets: list[bytes] | None = None) -> None:
        ws = self.ws
        out = b"".join(ws.send_binary(packet) for packet in packets or ())
        # FreeRDP answers a close with a pong (sic) and stops writing: close TCP right after ours.
        self.stream.write(out + ws.send_close(1000, "") + ws.data_to_send())
        self.stream.close()


async def serve(server: GatewayServer, stream: ClientStream, head: httpupgrade.RequestHead) -> None:
    """Answer the upgrade, then read frames until the connection ends, feeding the tunnel."""
    assert head.websocket_key is not None  # the dispatcher only sends upgrades here
    stream.write(httpupgrade.build_switching_protocols(head.websocket_key))
    ws = ServerWebSocket()
    sink = WebSocketSink(stream, ws)
    tunnel = RdgTunnel(server, stream.address, sink, (stream,), transport=ConnectionTransport.RDG_WEBSOCKET)
    try:
        while not ws.should_close_transport:
            chunk = await tunnel.read_client(stream)
            if chunk is None:
                return
            if not chunk:
                ws.receive_eof()
                tunnel.client_closed("client closed")
                return
            for payload in ws.receive_data(chunk):
                await tunnel.receive(payload)
            stream.write(ws.data_to_send())  # pongs, close echoes
            if ws.should_close_transport and ws.failure is not None:
                log.info("client %s WebSocket failed: %s", stream.address, ws.failure)
        tunnel.client_closed("client closed the WebSocket")
    finally:
        sink.close()
        await tunnel.finish()
