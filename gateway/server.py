"""The RD Gateway listener: stock RDP clients (FreeRDP, mstsc) reach session hosts through it.

An asyncio TLS server on the same event loop as daphne. It parses the client's HTTP upgrade itself
(FreeRDP 2 sends ``RDG_OUT_DATA`` with a non-standard WebSocket key that off-the-shelf stacks refuse),
speaks MS-TSGU through ``gateway.rdg_session``, and hands the byte stream to the relay core once the
session host has dialled in. Database work (ticket revocation, records, orchestration) happens at setup
and at the end, in worker threads, never per frame.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from asgiref.sync import sync_to_async

from gateway import httpupgrade, records
from gateway.rdg import ReturnCode
from gateway.rdg_session import (
    ChannelCreateRequested,
    Closed,
    Data,
    RdgServerSession,
    SessionState,
    TunnelAuthRequested,
    TunnelCreateRequested,
)
from gateway.relay import Relay, Rendezvous, Side
from gateway.wsframing import ServerWebSocket

log = logging.getLogger(__name__)

READ_SIZE = 1 << 16
HEAD_TIMEOUT = 10.0  # seconds for the client to send its HTTP request head
SETUP_IDLE_TIMEOUT = 30.0  # seconds of silence allowed between setup packets
PING_INTERVAL = 5.0  # WebSocket pings while the host is on its way (KEEPALIVE is not allowed then)
CHANNEL_ID = 1  # rdpgw: "channel id is required for Windows clients"
TUNNEL_ID = 1


@dataclass
class GatewayConfig:
    instance_name: str
    host_arrival_timeout: float
    poll_interval: float = 0.2


def in_thread(func: Callable) -> Callable:
    """Run blocking database work off the event loop (one thread hop per call, never per frame)."""
    return sync_to_async(func, thread_sensitive=False)


class RdgClientEnd:
    """The client side of a relay: target bytes go out as DATA packets in binary frames."""

    def __init__(self, session: RdgServerSession, ws: ServerWebSocket, writer: asyncio.StreamWriter) -> None:
        self.session, self.ws, self.writer = session, ws, writer
        self.closed_reason: str | None = None

    async def send(self, data: bytes) -> None:
        ws, writer = self.ws, self.writer
        for packet in self.session.send_data(data):
            writer.write(ws.send_binary(packet))
        await writer.drain()  # waits while the client reads slowly: backpressure to the host side

    def close(self, reason: str) -> None:
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        if self.session.state is not SessionState.OPENED:
            return  # still in setup: the connection's own flow answers the client (a refusal)
        out = b"".join(self.ws.send_binary(p) for p in self.session.close_channel(ReturnCode.S_OK))
        out += self.ws.send_close(1000, "")
        try:
            if out:
                self.writer.write(out)
            self.writer.close()
        except (ConnectionError, RuntimeError):
            pass


class ClientConnection:
    """One client's TLS connection, from the HTTP head to the end of its relay."""

    def __init__(self, server: GatewayServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader, self.writer = reader, writer
        peer = writer.get_extra_info("peername") or ("", 0)
        self.client_address = peer[0] if peer else ""
        self.session = RdgServerSession()
        self.ws = ServerWebSocket()
        self.client_end = RdgClientEnd(self.session, self.ws, writer)
        self.admission: records.Admission | None = None
        self.client_name = ""
        self.relay: Relay | None = None
        self.setup_task: asyncio.Task | None = None

    # --- I/O helpers ------------------------------------------------------------------------------

    def write_packets(self, packets: list[bytes]) -> None:
        ws = self.ws
        out = b"".join(ws.send_binary(p) for p in packets)
        if out:
            self.writer.write(out)

    def close_transport(self, packets: list[bytes] | None = None) -> None:
        if packets:
            self.write_packets(packets)
        out = self.ws.send_close(1000, "") + self.ws.data_to_send()
        try:
            if out:
                self.writer.write(out)
            self.writer.close()
        except (ConnectionError, RuntimeError):
            pass

    # --- the connection's life --------------------------------------------------------------------

    async def run(self) -> None:
        try:
            head = await self.read_head()
            if head is None:
                return
            if not head.is_rdg_path:
                self.writer.write(httpupgrade.build_error_response(404, "not found"))
                return
            if head.method != "RDG_OUT_DATA" or not head.is_websocket_upgrade:
                # The legacy two-connection transport and raw WebSocket come with their own handlers.
                self.writer.write(httpupgrade.build_error_response(
                    405, "this gateway serves the RD Gateway WebSocket transport (RDG_OUT_DATA upgrade)"))
                return
            key = head.headers.get("sec-websocket-key")
            if not key:
                self.writer.write(httpupgrade.build_error_response(400, "missing Sec-WebSocket-Key"))
                return
            self.writer.write(httpupgrade.build_switching_protocols(key))
            await self.frames()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            log.info("client %s dropped: %s", self.client_address, exc.__class__.__name__)
        finally:
            await self.finish()

    async def read_head(self) -> httpupgrade.RequestHead | None:
        buf = bytearray()
        try:
            async with asyncio.timeout(HEAD_TIMEOUT):
                while True:
                    chunk = await self.reader.read(4096)
                    if not chunk:
                        return None
                    buf += chunk
                    try:
                        head, consumed = httpupgrade.parse_request_head(buf)
                    except httpupgrade.HttpError as exc:
                        log.info("refused request from %s: %s %s", self.client_address, exc.status, exc)
                        self.writer.write(httpupgrade.build_error_response(exc.status, str(exc)))
                        return None
                    if head is not None:
                        rest = bytes(buf[consumed:])
                        if rest:
                            self.reader.feed_data_front = rest  # type: ignore[attr-defined]
                        self.pending = rest
                        return head
        except TimeoutError:
            log.info("client %s sent no request head in %ss", self.client_address, HEAD_TIMEOUT)
            return None

    async def frames(self) -> None:
        """Read WebSocket frames until the connection ends, feeding the TSGU session."""
        pending = getattr(self, "pending", b"")
        if pending:
            await self.on_bytes(pending)
        reader, ws = self.reader, self.ws
        while not ws.should_close_transport:
            opened = self.relay is not None and self.relay.paired.is_set()
            try:
                if opened:
                    chunk = await reader.read(READ_SIZE)
                else:
                    async with asyncio.timeout(SETUP_IDLE_TIMEOUT):
                        chunk = await reader.read(READ_SIZE)
            except TimeoutError:
                log.info("client %s idle during setup; closing", self.client_address)
                await self.fail_setup(records.ErrorCode.ConnectionFailedClientProtocolError,
                                      "the client stopped answering during setup")
                return
            if not chunk:
                ws.receive_eof()
                self.end_relay(Side.CLIENT, "client closed")
                return
            await self.on_bytes(chunk)
        self.end_relay(Side.CLIENT, "client closed the WebSocket")

    async def on_bytes(self, chunk: bytes) -> None:
        ws = self.ws
        for payload in ws.receive_data(chunk):
            received = self.session.receive_data(payload)
            for event in received.events:
                if type(event) is Data:
                    # The per-frame path: straight into the relay, which waits while the host is slow.
                    relay = self.relay
                    if relay is not None:
                        await relay.deliver(Side.CLIENT, event.data)
                else:
                    await self.on_event(event)
            if received.packets:
                self.write_packets(received.packets)
        control = ws.data_to_send()
        if control:
            self.writer.write(control)
        if ws.should_close_transport:
            if ws.failure is not None:
                log.info("client %s WebSocket failed: %s", self.client_address, ws.failure)
            self.close_transport()

    async def on_event(self, event) -> None:
        if isinstance(event, TunnelCreateRequested):
            await self.on_tunnel_create(event)
        elif isinstance(event, TunnelAuthRequested):
            self.client_name = event.client_name
        elif isinstance(event, ChannelCreateRequested):
            # Setup may take seconds (the host dials in): run it beside the frame loop, so pings,
            # pongs and the client's close keep being read meanwhile.
            self.setup_task = asyncio.ensure_future(self.on_channel_create(event))
        elif isinstance(event, Closed):
            log.info("client %s session closed: %s", self.client_address, event.reason)
            if self.admission is not None and self.relay is None:
                await self.record_failure(records.ErrorCode.ConnectionFailedClientProtocolError, event.reason)
            self.end_relay(Side.CLIENT, event.reason)
            self.close_transport()

    async def on_tunnel_create(self, event: TunnelCreateRequested) -> None:
        outcome = await in_thread(records.admit)(
            event.paa_token, self.client_address, self.server.config.instance_name
        )
        if isinstance(outcome, records.Refusal):
            log.info("refused tunnel from %s: %s (%s)", self.client_address, outcome.code, outcome.activity_id)
            self.close_transport(self.session.refuse_tunnel(outcome.hresult))
            return
        self.admission = outcome
        self.write_packets(self.session.accept_tunnel(TUNNEL_ID))

    async def on_channel_create(self, event: ChannelCreateRequested) -> None:
        admission = self.admission
        assert admission is not None  # the session only asks for a channel after an accepted tunnel
        rendezvous = self.server.rendezvous
        try:
            relay = rendezvous.open(admission.activity_id, on_end=self.server.report_end)
        except Exception:  # noqa: BLE001 - the same ticket used twice at once on this instance
            await self.refuse_channel(records.ErrorCode.ConnectionFailedClientProtocolError,
                                      "this connection is already open")
            return
        self.relay = relay
        await relay.attach(Side.CLIENT, self.client_end)
        refusal = await in_thread(records.request_channel)(
            admission.connection_pk, event.resources, event.port, self.client_name,
            self.server.config.instance_name,
        )
        if refusal is not None:
            await self.refuse_channel(refusal.code, refusal.message, recorded=True, refusal=refusal)
            return
        refusal = await self.wait_for_host(relay)
        if refusal is not None:
            await self.refuse_channel(refusal.code, refusal.message, recorded=True, refusal=refusal)
            return
        self.write_packets(self.session.accept_channel(CHANNEL_ID))
        await self.writer.drain()
        await in_thread(records.mark_relay_started)(admission.connection_pk)
        log.info("relay %s started (%s → host)", admission.activity_id, self.client_address)

    async def wait_for_host(self, relay: Relay) -> records.Refusal | None:
        """Wait for the host's reverse connection; fail fast when the broker already gave up."""
        config = self.server.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.host_arrival_timeout
        next_ping = loop.time() + PING_INTERVAL
        admission = self.admission
        assert admission is not None
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return await in_thread(records.host_did_not_arrive)(admission.connection_pk)
            if await self.server.rendezvous.wait_paired(relay, min(config.poll_interval, remaining)):
                return None
            if relay.is_ended:
                return await in_thread(records.client_left)(admission.connection_pk)
            outcome = await in_thread(records.setup_outcome)(admission.connection_pk)
            if outcome is not None:
                return outcome
            if loop.time() >= next_ping:
                self.writer.write(self.ws.send_ping(b"wvd"))
                next_ping = loop.time() + PING_INTERVAL

    async def refuse_channel(self, code: str, message: str, *, recorded: bool = False,
                             refusal: records.Refusal | None = None) -> None:
        if refusal is None:
            refusal = records.refusal_for(code, message, self.admission.activity_id if self.admission else "")
        if not recorded and self.admission is not None:
            await self.record_failure(code, message)
        log.info("refused channel for %s: %s (%s)", self.client_address, code, refusal.activity_id)
        self.close_transport(self.session.refuse_channel(refusal.hresult))
        if self.relay is not None:
            self.relay.end(None, message)

    async def record_failure(self, code: str, message: str) -> None:
        if self.admission is not None:
            await in_thread(records.fail)(self.admission.connection_pk, code, message)

    async def fail_setup(self, code: str, message: str) -> None:
        await self.record_failure(code, message)
        self.end_relay(Side.CLIENT, message)
        self.close_transport()

    def end_relay(self, side: Side, reason: str) -> None:
        if self.relay is not None:
            self.relay.end(side, reason)

    async def finish(self) -> None:
        if self.setup_task is not None and not self.setup_task.done():
            self.setup_task.cancel()
            try:
                await self.setup_task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - already ending
                pass
        if self.relay is not None and not self.relay.is_ended:
            self.relay.end(Side.CLIENT, "client connection ended")
        if self.admission is not None and (self.relay is None or not self.relay.paired.is_set()):
            # Left before the host arrived: free the reservation; a no-op when already failed.
            await in_thread(records.client_left)(self.admission.connection_pk)
        try:
            self.writer.close()
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError, RuntimeError):
            pass


class GatewayServer:
    """This process's RD Gateway listener and its rendezvous of relays."""

    def __init__(self, config: GatewayConfig, rendezvous: Rendezvous, ssl_context: ssl.SSLContext | None) -> None:
        self.config = config
        self.rendezvous = rendezvous
        self.ssl_context = ssl_context
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self, host: str, port: int) -> asyncio.AbstractServer:
        self._server = await asyncio.start_server(
            self._accept, host, port, ssl=self.ssl_context, ssl_handshake_timeout=15, limit=READ_SIZE,
        )
        log.info("RD Gateway listening on %s:%s (instance %s)", host, port, self.config.instance_name)
        return self._server

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await ClientConnection(self, reader, writer).run()
        except Exception:  # noqa: BLE001 - one client's bug must never take the listener down
            log.exception("unexpected error serving a gateway client")
        finally:
            if task is not None:
                self._tasks.discard(task)

    def report_end(self, result) -> None:
        """The relay ended: record it off the loop (once per connection)."""
        asyncio.ensure_future(in_thread(records.finish)(result))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection_id in list(self.rendezvous._relays):  # noqa: SLF001 - our own registry
            relay = self.rendezvous.get(connection_id)
            if relay is not None:
                relay.end(None, "gateway instance stopping")
        for task in list(self._tasks):
            task.cancel()
