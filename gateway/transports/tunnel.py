"""One RD Gateway tunnel (MS-TSGU) over any transport: the session, its decisions and its relay end.

Both RD Gateway transports feed the bytes the client sent (WebSocket payloads, legacy chunk bodies) to
``RdgTunnel.receive`` and give it a ``PacketSink`` to answer through: the WebSocket transport sends one
TSGU packet per binary frame, the legacy transport writes raw packets into its RDG_OUT_DATA response.
The tunnel decides everything else the same way for both: ticket, target, host, refusals and records.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from gateway import records
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
from gateway.relay import Side
from gateway.transports.setup import ClientSetup, cancel_reader
from gateway.transports.stream import ClientStream

if TYPE_CHECKING:
    from gateway.server import GatewayServer

log = logging.getLogger(__name__)

CHANNEL_ID = 1  # rdpgw: "channel id is required for Windows clients"
TUNNEL_ID = 1


class PacketSink(Protocol):
    """Where a tunnel's packets go: the transport's half of the conversation with the client."""

    def send(self, packets: list[bytes]) -> None:
        """Queue TSGU packets for the client, in order (one packet per frame where frames exist)."""

    async def drain(self) -> None:
        """Wait until the client has taken what was queued (backpressure)."""

    def keepalive(self) -> None:
        """Keep idle proxies awake while the host is on its way (TSGU KEEPALIVE is not allowed then)."""

    def close(self, packets: list[bytes] | None = None) -> None:
        """Send ``packets`` last, then end the client's connection(s)."""


class TunnelClientEnd:
    """The relay's client end: target bytes go out as DATA packets through the sink."""

    def __init__(self, session: RdgServerSession, sink: PacketSink) -> None:
        self.session, self.sink = session, sink
        self.closed_reason: str | None = None
        # Set once the client has its CHANNEL_RESPONSE (or the session ended): the host may pair, and
        # speak, a moment before the client is told the channel is open, and DATA must not precede it.
        self.channel_decided = asyncio.Event()

    async def send(self, data: bytes) -> None:
        if not self.channel_decided.is_set():
            await self.channel_decided.wait()  # backpressure to the host for that moment
        packets = self.session.send_data(data)  # nothing once the session is closing or closed
        if packets:
            self.sink.send(packets)
            await self.sink.drain()  # waits while the client reads slowly: backpressure to the host side

    def close(self, reason: str) -> None:
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        self.close_channel()

    def close_channel(self) -> None:
        """After the relay ended: CLOSE_CHANNEL to an open channel; during setup the tunnel's own flow
        answers the client (a refusal), and an accept that comes after the end calls this again."""
        if self.session.state is SessionState.OPENED:
            self.sink.close(self.session.close_channel(ReturnCode.S_OK))


class RdgTunnel:
    """One client's tunnel, from HANDSHAKE_REQUEST to the end of its relay."""

    def __init__(self, server: GatewayServer, client_address: str, sink: PacketSink,
                 streams: Sequence[ClientStream] = (), *, transport: str = "") -> None:
        self.server = server
        self.client_address = client_address
        self.sink = sink
        self.session = RdgServerSession()
        self.setup = ClientSetup(server, client_address, streams, transport=transport)
        self.client_end = TunnelClientEnd(self.session, sink)
        self.client_name = ""
        self._channel_task: asyncio.Task | None = None

    @property
    def opened(self) -> bool:
        """The relay is paired: data flows and no setup timeout applies."""
        return self.setup.paired

    @property
    def waiting_for_client(self) -> bool:
        """Setup waits on the client's next packet (not on the broker or the host): the transport's
        idle timeout applies."""
        return not self.opened and (self._channel_task is None or self._channel_task.done())

    @property
    def closed(self) -> bool:
        return self.session.closed

    async def receive(self, data: bytes) -> None:
        """Bytes the client sent, in any split: act on the session's events and answer its packets."""
        received = self.session.receive_data(data)
        closed = next((event for event in received.events if type(event) is Closed), None)
        if closed is None and received.packets:
            # The session's own answers (HANDSHAKE_RESPONSE, TUNNEL_AUTH_RESPONSE, KEEPALIVE) answer
            # packets that came before any decision in this batch: they go first, so a client that
            # pipelines its requests gets the responses in order.
            self.sink.send(received.packets)
        for event in received.events:
            if type(event) is Data:
                # The per-frame path: straight into the relay, which waits while the host is slow.
                relay = self.setup.relay
                if relay is not None:
                    await relay.deliver(Side.CLIENT, event.data)
            elif type(event) is not Closed:
                await self._on_event(event)
        if closed is not None:
            await self._on_closed(closed, received.packets)

    async def _on_event(self, event) -> None:
        if isinstance(event, TunnelCreateRequested):
            refusal = await self.setup.admit(event.paa_token)
            if refusal is not None:
                self.sink.close(self.session.refuse_tunnel(refusal.hresult))
            else:
                self.sink.send(self.session.accept_tunnel(TUNNEL_ID))
        elif isinstance(event, TunnelAuthRequested):
            self.client_name = event.client_name
        elif isinstance(event, ChannelCreateRequested):
            # Setup may take seconds (the host dials in): run it beside the transport's read loop, so
            # pings, pongs and the client's close keep being read meanwhile.
            self._channel_task = asyncio.ensure_future(self._open_channel(event))

    async def _on_closed(self, event: Closed, packets: list[bytes]) -> None:
        """The session ended (a protocol error, or the client closed the channel): answer, record, close."""
        log.info("client %s session closed: %s", self.client_address, event.reason)
        if self.setup.admission is not None and not self.setup.paired:
            await self.setup.fail(records.ErrorCode.ConnectionFailedClientProtocolError, event.reason)
        self.setup.end(Side.CLIENT, event.reason)
        self.sink.close(packets)

    async def _open_channel(self, event: ChannelCreateRequested) -> None:
        try:
            await self._find_target(event)
        except Exception:  # noqa: BLE001 - a bug or a database failure: refuse rather than leave the client
            log.exception("opening the channel of %s failed", self.setup.activity_id or self.client_address)
            self.sink.close(self.session.refuse_channel(ReturnCode.E_PROXY_INTERNALERROR))
            self.setup.abandon("the gateway failed to open the channel")
        finally:
            self.client_end.channel_decided.set()

    async def _find_target(self, event: ChannelCreateRequested) -> None:
        setup = self.setup
        admission = setup.admission
        assert admission is not None  # the session only asks for a channel after an accepted tunnel
        refusal = await setup.open_relay(self.client_end)
        if refusal is None:
            instance, client_name = self.server.config.instance_name, self.client_name
            refusal = await setup.find_host(
                lambda: records.request_channel(admission.connection_pk, event.resources, event.port,
                                                client_name, instance),
                self.sink.keepalive,
            )
        if refusal is not None:
            self.sink.close(self.session.refuse_channel(refusal.hresult))
            setup.abandon(refusal.message)
            return
        self.sink.send(self.session.accept_channel(CHANNEL_ID))
        self.client_end.channel_decided.set()
        if self.client_end.closed_reason is not None:
            self.client_end.close_channel()  # the host hung up between arriving and this accept
            return
        await self.sink.drain()
        await setup.started()

    async def read_client(self, stream) -> bytes | None:
        """The client's next bytes (b"" at EOF). While setup waits on the client, silence longer than the
        idle timeout fails the connection and gives None."""
        if not self.waiting_for_client:
            return await stream.read()
        try:
            async with asyncio.timeout(self.server.config.setup_idle_timeout):
                return await stream.read()
        except TimeoutError:
            log.info("client %s idle during setup; closing", self.client_address)
            await self.fail_setup(records.ErrorCode.ConnectionFailedClientProtocolError,
                                  "The client stopped answering during setup.")
            return None

    async def fail_setup(self, code: str, message: str) -> None:
        """The client broke off during setup (silence, a malformed upload): record it and close."""
        await self.setup.fail(code, message)
        self.setup.end(Side.CLIENT, message)
        self.sink.close()

    def client_closed(self, reason: str) -> None:
        self.setup.end(Side.CLIENT, reason)

    async def finish(self) -> None:
        """The client's connection(s) are over: stop the setup, end the relay, free a reserved host."""
        self.client_end.channel_decided.set()  # a host end waiting to send gives up: the session is over
        await cancel_reader(self._channel_task)
        await self.setup.finish()
