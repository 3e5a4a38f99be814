"""The server side of one RD Gateway tunnel as a sans-I/O state machine (PROTOCOLS.md §4.5).

A transport feeds it the bytes the client sent (WebSocket payloads or legacy chunk bodies) and gets back
events to act on and packets to send, one TSGU packet per item (the WebSocket transport sends one per
frame, as mstsc expects). Decisions that need the database or the broker (is this token valid, where
does this resource live) are the transport's: it calls ``accept_*``/``refuse_*`` when it knows, and
those return the packets to send. No sockets, no clocks, no Django.

States, in order: waiting for HANDSHAKE_REQUEST, TUNNEL_CREATE, (the transport checks the PAA token),
TUNNEL_AUTH, CHANNEL_CREATE, (the transport finds the target), OPENED, then CLOSING/CLOSED. A packet in
the wrong state is answered with its response type carrying E_PROXY_INTERNALERROR and ends the session,
as rdpgw does; one tunnel carries one channel (MS-TSGU §1.3.2.1.2).
"""
from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import NamedTuple, Union

from gateway import rdg
from gateway.rdg import PacketType, ProtocolError, ReturnCode

log = logging.getLogger(__name__)

DEFAULT_DATA_CHUNK = 16000  # bytes of target data per DATA packet, as the verified prototype sent


class SessionState(enum.Enum):
    AWAIT_HANDSHAKE = "await-handshake"
    AWAIT_TUNNEL_CREATE = "await-tunnel-create"
    TUNNEL_PENDING = "tunnel-pending"  # TunnelCreateRequested emitted; accept_tunnel/refuse_tunnel next
    AWAIT_TUNNEL_AUTH = "await-tunnel-auth"
    AWAIT_CHANNEL_CREATE = "await-channel-create"
    CHANNEL_PENDING = "channel-pending"  # ChannelCreateRequested emitted; accept_channel/refuse_channel next
    OPENED = "opened"
    CLOSING = "closing"  # we sent CLOSE_CHANNEL and wait for the client's CLOSE_CHANNEL_RESPONSE
    CLOSED = "closed"


# --- events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakeDone:
    """The handshake was answered; ``extended_auth`` is what was agreed (always PAA)."""

    extended_auth: int


@dataclass(frozen=True, slots=True)
class TunnelCreateRequested:
    """The client presented its PAA token; answer with ``accept_tunnel`` or ``refuse_tunnel``."""

    paa_token: str
    capabilities: int


@dataclass(frozen=True, slots=True)
class TunnelAuthRequested:
    """The client named itself; the session has already answered (nothing to decide at this step)."""

    client_name: str


@dataclass(frozen=True, slots=True)
class ChannelCreateRequested:
    """The client asked for a target; answer with ``accept_channel`` or ``refuse_channel``."""

    resources: tuple[str, ...]
    alt_resources: tuple[str, ...]
    port: int


@dataclass(frozen=True, slots=True)
class Data:
    """Bytes for the target, from one DATA packet."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Closed:
    """The session ended; close the connection after sending the packets returned with this event.

    ``code`` is the HRESULT we answered with for a refusal, or the status of the channel close.
    """

    code: int
    reason: str


Event = Union[HandshakeDone, TunnelCreateRequested, TunnelAuthRequested, ChannelCreateRequested, Data, Closed]


class Received(NamedTuple):
    """What feeding bytes produced: events to act on, then packets to send (in this order)."""

    events: list[Event]
    packets: list[bytes]


class SessionStateError(RuntimeError):
    """A transport called a method the protocol does not allow now: a bug in the caller, not the client."""


# The response each client request is answered with when refused.
_RESPONSE_BUILDERS = {
    PacketType.HANDSHAKE_REQUEST: lambda code: rdg.build_handshake_response(code),
    PacketType.TUNNEL_CREATE: lambda code: rdg.build_tunnel_response(code),
    PacketType.TUNNEL_AUTH: lambda code: rdg.build_tunnel_auth_response(code),
    PacketType.CHANNEL_CREATE: lambda code: rdg.build_channel_response(code),
    PacketType.CLOSE_CHANNEL: lambda code: rdg.build_close_channel_response(code),
}

_EXPECTED = {
    SessionState.AWAIT_HANDSHAKE: PacketType.HANDSHAKE_REQUEST,
    SessionState.AWAIT_TUNNEL_CREATE: PacketType.TUNNEL_CREATE,
    SessionState.AWAIT_TUNNEL_AUTH: PacketType.TUNNEL_AUTH,
    SessionState.AWAIT_CHANNEL_CREATE: PacketType.CHANNEL_CREATE,
}


class RdgServerSession:
    """One client's tunnel, from HANDSHAKE_REQUEST to the channel's close."""

    def __init__(self, *, data_chunk_size: int = DEFAULT_DATA_CHUNK) -> None:
        if not 1 <= data_chunk_size <= rdg.MAX_DATA_LENGTH:
            raise ValueError(f"data_chunk_size must be 1..{rdg.MAX_DATA_LENGTH}")
        self._chunk = data_chunk_size
        self._state = SessionState.AWAIT_HANDSHAKE
        self._buffer = bytearray()
        self._redirection_flags: int | None = None
        self._idle_timeout_minutes: int | None = None
        self._close_status = ReturnCode.S_OK
        # KEEPALIVEs we sent in OPENED whose echo has not come back. FreeRDP answers every KEEPALIVE it
        # gets, so answering every KEEPALIVE we get would bounce one packet back and forth forever:
        # a client KEEPALIVE is an echo while any of ours is outstanding, otherwise we answer it.
        self._keepalives_outstanding = 0

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def closed(self) -> bool:
        return self._state is SessionState.CLOSED

    # --- input ------------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> Received:
        """Feed bytes from the client, in any split; return the events and the packets to send."""
        events: list[Event] = []
        packets: list[bytes] = []
        if self._state is SessionState.CLOSED or not data:
            return Received(events, packets)
        # Parse straight from ``data`` when nothing is pending (the usual case: one packet per frame).
        if self._buffer:
            self._buffer += data
            buf: bytes | bytearray | memoryview = self._buffer
        else:
            buf = data
        offset = 0
        try:
            while self._state is not SessionState.CLOSED:
                packet, consumed = rdg.parse_packet(buf, offset)
                if packet is None:
                    break
                offset += consumed
                self._handle(packet, events, packets)
        except ProtocolError as error:
            self._fail(error.packet_type, error.code, error.message, events, packets)
        if self._state is SessionState.CLOSED:
            self._buffer = bytearray()
        elif buf is self._buffer:
            del self._buffer[:offset]
        elif offset < len(buf):
            self._buffer = bytearray(buf[offset:])
        return Received(events, packets)

    def _handle(self, packet: rdg.Packet, events: list[Event], packets: list[bytes]) -> None:
        state = self._state
        if isinstance(packet, rdg.DataPacket):
            if state is SessionState.OPENED:
                if packet.data:
                    events.append(Data(packet.data))
            elif state is not SessionState.CLOSING:  # in CLOSING the target is gone: drop in-flight data
                self._wrong_state(packet, events, packets)
        elif isinstance(packet, rdg.Keepalive):
            # Never an error: clients may send them during setup (FreeRDP itself never initiates).
            if state is SessionState.OPENED:
                if self._keepalives_outstanding:
                    self._keepalives_outstanding -= 1
                else:
                    self._keepalives_outstanding += 1  # our answer may be echoed too
                    packets.append(rdg.build_keepalive())
        elif _EXPECTED.get(state) is not packet.packet_type:
            if isinstance(packet, rdg.CloseChannel) and state in (SessionState.OPENED, SessionState.CLOSING):
                packets.append(rdg.build_close_channel_response(ReturnCode.S_OK))
                self._finish(packet.status_code, "client closed the channel", events)
            elif isinstance(packet, rdg.CloseChannelResponse) and state is SessionState.CLOSING:
                self._finish(self._close_status, "channel closed by the gateway", events)
            else:
                self._wrong_state(packet, events, packets)
        elif isinstance(packet, rdg.HandshakeRequest):
            self._on_handshake(packet, events, packets)
        elif isinstance(packet, rdg.TunnelCreate):
            self._on_tunnel_create(packet, events, packets)
        elif isinstance(packet, rdg.TunnelAuth):
            packets.append(rdg.build_tunnel_auth_response(
                ReturnCode.S_OK,
                redirection_flags=self._redirection_flags,
                idle_timeout_minutes=self._idle_timeout_minutes,
            ))
            self._state = SessionState.AWAIT_CHANNEL_CREATE
            events.append(TunnelAuthRequested(packet.client_name))
        elif isinstance(packet, rdg.ChannelCreate):
            if packet.protocol != rdg.RDP_PROTOCOL:
                self._fail(PacketType.CHANNEL_CREATE, ReturnCode.E_PROXY_RAP_ACCESSDENIED,
                           f"CHANNEL_CREATE for protocol {packet.protocol}; only RDP (3) is relayed",
                           events, packets)
                return
            self._state = SessionState.CHANNEL_PENDING
            events.append(ChannelCreateRequested(packet.resources, packet.alt_resources, packet.port))

    def _on_handshake(self, packet: rdg.HandshakeRequest, events: list[Event], packets: list[bytes]) -> None:
        if not packet.extended_auth & rdg.ExtendedAuth.PAA:
            self._fail(PacketType.HANDSHAKE_REQUEST, ReturnCode.E_PROXY_UNSUPPORTED_AUTHENTICATION_METHOD,
                       f"client offers extended auth 0x{packet.extended_auth:X}; this gateway only accepts"
                       " PAA tokens",
                       events, packets)
            return
        packets.append(rdg.build_handshake_response(ReturnCode.S_OK, extended_auth=rdg.ExtendedAuth.PAA))
        self._state = SessionState.AWAIT_TUNNEL_CREATE
        events.append(HandshakeDone(rdg.ExtendedAuth.PAA))

    def _on_tunnel_create(self, packet: rdg.TunnelCreate, events: list[Event], packets: list[bytes]) -> None:
        if not packet.paa_cookie:
            self._fail(PacketType.TUNNEL_CREATE, ReturnCode.E_PROXY_COOKIE_BADPACKET,
                       "TUNNEL_CREATE carries no PAA cookie", events, packets)
            return
        self._state = SessionState.TUNNEL_PENDING
        events.append(TunnelCreateRequested(packet.paa_cookie, packet.capabilities))

    def _wrong_state(self, packet: rdg.Packet, events: list[Event], packets: list[bytes]) -> None:
        if isinstance(packet, rdg.ChannelCreate) and self._state in (SessionState.CHANNEL_PENDING,
                                                                     SessionState.OPENED):
            reason = "a second CHANNEL_CREATE: one tunnel carries one channel"
        else:
            reason = f"unexpected {packet.packet_type.name} in state {self._state.value}"
        self._fail(packet.packet_type, ReturnCode.E_PROXY_INTERNALERROR, reason, events, packets)

    def _fail(self, packet_type: int | None, code: int, reason: str, events: list[Event],
              packets: list[bytes]) -> None:
        builder = _RESPONSE_BUILDERS.get(packet_type)  # type: ignore[call-overload]
        if builder is not None:
            packets.append(builder(code))
        log.warning("RD Gateway session refused: %s; answering %s", reason, rdg.describe_code(code))
        self._finish(code, reason, events)

    def _finish(self, code: int, reason: str, events: list[Event]) -> None:
        self._state = SessionState.CLOSED
        events.append(Closed(code, reason))

    # --- decisions and output -----------------------------------------------------------------------

    def _require(self, *states: SessionState, action: str) -> bool:
        """True if ``action`` may proceed; False if the session already ended (nothing to send)."""
        if self._state in (SessionState.CLOSED, SessionState.CLOSING):
            return False
        if self._state not in states:
            raise SessionStateError(f"cannot {action} in state {self._state.value}")
        return True

    @staticmethod
    def _check_refusal(code: int) -> None:
        if not rdg.is_failure(code):
            raise ValueError(f"{rdg.describe_code(code)} is not a failure code: the client would go on")

    def accept_tunnel(self, tunnel_id: int | None, *, capabilities: int | None = None,
                      redirection_flags: int | None = None, idle_timeout_minutes: int | None = None) -> list[bytes]:
        """The token is good: TUNNEL_RESPONSE(ok). The redirection flags and idle timeout are remembered
        for the TUNNEL_AUTH_RESPONSE that follows."""
        if not self._require(SessionState.TUNNEL_PENDING, action="accept the tunnel"):
            return []
        self._redirection_flags = redirection_flags
        self._idle_timeout_minutes = idle_timeout_minutes
        self._state = SessionState.AWAIT_TUNNEL_AUTH
        return [rdg.build_tunnel_response(ReturnCode.S_OK, tunnel_id=tunnel_id, capabilities=capabilities)]

    def refuse_tunnel(self, code: int = ReturnCode.E_PROXY_COOKIE_AUTHENTICATION_ACCESS_DENIED) -> list[bytes]:
        """The token is not good: TUNNEL_RESPONSE(code); the session is closed."""
        self._check_refusal(code)
        if not self._require(SessionState.TUNNEL_PENDING, action="refuse the tunnel"):
            return []
        self._state = SessionState.CLOSED
        return [rdg.build_tunnel_response(code)]

    def accept_channel(self, channel_id: int | None) -> list[bytes]:
        """The target is connected: CHANNEL_RESPONSE(ok); DATA flows from now on.

        Pass a channel id (rdpgw sends 1: Windows clients require one)."""
        if not self._require(SessionState.CHANNEL_PENDING, action="accept the channel"):
            return []
        self._state = SessionState.OPENED
        return [rdg.build_channel_response(ReturnCode.S_OK, channel_id=channel_id)]

    def refuse_channel(self, code: int = ReturnCode.E_PROXY_TS_CONNECTFAILED) -> list[bytes]:
        """No target: CHANNEL_RESPONSE(code), e.g. E_PROXY_TS_CONNECTFAILED or E_PROXY_RAP_ACCESSDENIED."""
        self._check_refusal(code)
        if not self._require(SessionState.CHANNEL_PENDING, action="refuse the channel"):
            return []
        self._state = SessionState.CLOSED
        return [rdg.build_channel_response(code)]

    def send_data(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Target bytes as DATA packets of at most ``data_chunk_size`` bytes each."""
        if not self._require(SessionState.OPENED, action="send data"):
            return []
        view = memoryview(data)
        size = self._chunk
        return [rdg.build_data(view[start:start + size]) for start in range(0, len(view), size)]

    def keepalive(self) -> list[bytes]:
        """A KEEPALIVE once the channel is open; nothing before.

        FreeRDP 3 and the 2.x branch after 2.11.7 fail the connection on a KEEPALIVE during setup
        ("PKG TYPE 0xd not implemented"): keep idle proxies awake with WebSocket pings until then.
        """
        if self._state is not SessionState.OPENED:
            return []
        self._keepalives_outstanding += 1
        return [rdg.build_keepalive()]

    def service_message(self, text: str) -> list[bytes]:
        """A message the client shows its user; only once the channel is open (clients reject it earlier)."""
        if not self._require(SessionState.OPENED, action="send a service message"):
            return []
        return [rdg.build_service_message(text)]

    def close_channel(self, status_code: int = ReturnCode.S_OK) -> list[bytes]:
        """The target went away: CLOSE_CHANNEL(status); a Closed event follows the client's response."""
        if not self._require(SessionState.OPENED, action="close the channel"):
            return []
        self._close_status = status_code
        self._state = SessionState.CLOSING
        return [rdg.build_close_channel(status_code)]
