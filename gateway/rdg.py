"""RD Gateway HTTP-transport packets (MS-TSGU §2.2.10): constants, a parser and builders, over bytes only.

Every packet is an 8-byte little-endian header (``u16 packetType, u16 reserved, u32 packetLength``) and a
body. :func:`parse_packet` takes bytes as they arrive and returns one packet at a time; anything a client
could get wrong raises :class:`ProtocolError` carrying the HRESULT to answer with. The builders produce
the exact bytes PROTOCOLS.md §4.4 lists, checked byte for byte by ``tests/gateway/test_rdg_packets.py``.
No sockets and no Django here: the state machine is ``gateway/rdg_session.py``, transports live elsewhere.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar, Union

# Common header: packetType, reserved, packetLength (which includes the header itself).
HEADER = struct.Struct("<HHI")
HEADER_LENGTH = HEADER.size

# The largest packet a client sends legitimately is a TUNNEL_CREATE with a reauth context and the
# longest PAA cookie a u16 length allows (8 + 4 + 2 + 2 + 8 + 2 + 65534 = 65560 bytes); DATA peaks at
# 8 + 2 + 65535. A little slack for optional trailing fields; anything longer is refused from the header
# alone, before its body is buffered.
MAX_PACKET_LENGTH = 0x10000 + 0x100
MAX_DATA_LENGTH = 0xFFFF
MAX_RESOURCES = 50
MAX_ALT_RESOURCES = 3
RDP_PROTOCOL = 3  # CHANNEL_CREATE's protocol field: 3 means RDP.

_DATA_HEADER = struct.Struct("<HHIH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class PacketType(enum.IntEnum):
    HANDSHAKE_REQUEST = 0x1
    HANDSHAKE_RESPONSE = 0x2
    EXTENDED_AUTH_MSG = 0x3
    TUNNEL_CREATE = 0x4
    TUNNEL_RESPONSE = 0x5
    TUNNEL_AUTH = 0x6
    TUNNEL_AUTH_RESPONSE = 0x7
    CHANNEL_CREATE = 0x8
    CHANNEL_RESPONSE = 0x9
    DATA = 0xA
    SERVICE_MESSAGE = 0xB
    REAUTH_MESSAGE = 0xC
    KEEPALIVE = 0xD
    CLOSE_CHANNEL = 0x10
    CLOSE_CHANNEL_RESPONSE = 0x11


class ReturnCode(enum.IntEnum):
    """Return codes of MS-TSGU §2.2.6 as FreeRDP defines them (``libfreerdp/core/gateway/tsg.h``).

    Clients test HANDSHAKE/TUNNEL/CHANNEL responses with ``FAILED(hr)``, i.e. bit 31: only the
    ``0x8007....`` codes refuse those. The small Win32-style codes are for CLOSE_CHANNEL and logs.
    """

    S_OK = 0x0
    ERROR_ACCESS_DENIED = 0x5
    ERROR_BAD_ARGUMENTS = 0xA0
    ERROR_GRACEFUL_DISCONNECT = 0x4CA
    E_PROXY_CONNECTIONABORTED = 0x4D4
    E_PROXY_MAXCONNECTIONSREACHED = 0x59E6
    E_PROXY_NOTSUPPORTED = 0x59E8
    E_PROXY_SESSIONTIMEOUT = 0x59F6
    E_PROXY_INTERNALERROR = 0x800759D8
    E_PROXY_RAP_ACCESSDENIED = 0x800759DA
    E_PROXY_NAP_ACCESSDENIED = 0x800759DB
    # The HTTP transport needs the HRESULT form: FreeRDP treats a bare 0x59DD in a CHANNEL_RESPONSE as
    # success (it only checks FAILED()).
    E_PROXY_TS_CONNECTFAILED = 0x800759DD
    E_PROXY_ALREADYDISCONNECTED = 0x800759DF
    E_PROXY_CAPABILITYMISMATCH = 0x800759E9
    E_PROXY_QUARANTINE_ACCESSDENIED = 0x800759ED
    E_PROXY_NOCERTAVAILABLE = 0x800759EE
    E_PROXY_COOKIE_BADPACKET = 0x800759F7
    E_PROXY_COOKIE_AUTHENTICATION_ACCESS_DENIED = 0x800759F8
    E_PROXY_UNSUPPORTED_AUTHENTICATION_METHOD = 0x800759F9


def is_failure(code: int) -> bool:
    """True when a client reads ``code`` as a failure in a HANDSHAKE/TUNNEL/CHANNEL response."""
    return bool(code & 0x80000000)


def describe_code(code: int) -> str:
    """A return code's name and hex value, for logs and close reasons."""
    try:
        return f"{ReturnCode(code).name} (0x{code:08X})"
    except ValueError:
        return f"0x{code:08X}"


class ExtendedAuth(enum.IntFlag):
    """HANDSHAKE extendedAuth values; clients may offer several bits."""

    NONE = 0x0
    SC = 0x1
    PAA = 0x2
    SSPI_NTLM = 0x4
    BEARER = 0x8  # FreeRDP 3 only (``/gateway:bearer:``).


class Capability(enum.IntFlag):
    """TUNNEL_CREATE / TUNNEL_RESPONSE capsFlags."""

    QUAR_SOH = 0x1
    IDLE_TIMEOUT = 0x2
    MESSAGING_CONSENT_SIGN = 0x4
    MESSAGING_SERVICE_MSG = 0x8
    REAUTH = 0x10
    UDP_TRANSPORT = 0x20


class RedirectionFlags(enum.IntFlag):
    """TUNNEL_AUTH_RESPONSE redirFlags: ENABLE_ALL, DISABLE_ALL, or DISABLE_* bits."""

    DISABLE_DRIVE = 0x1
    DISABLE_PRINTER = 0x2
    DISABLE_PORT = 0x4
    DISABLE_CLIPBOARD = 0x8
    DISABLE_PNP = 0x10
    DISABLE_ALL = 0x40000000
    ENABLE_ALL = 0x80000000


# fieldsPresent bits, one group per packet.
TUNNEL_CREATE_FIELD_PAA_COOKIE = 0x1
TUNNEL_CREATE_FIELD_REAUTH = 0x2
TUNNEL_RESPONSE_FIELD_TUNNEL_ID = 0x1
TUNNEL_RESPONSE_FIELD_CAPS = 0x2
TUNNEL_RESPONSE_FIELD_SOH_REQ = 0x4
TUNNEL_RESPONSE_FIELD_CONSENT_MSG = 0x10
TUNNEL_AUTH_FIELD_SOH = 0x1
TUNNEL_AUTH_RESPONSE_FIELD_REDIR_FLAGS = 0x1
TUNNEL_AUTH_RESPONSE_FIELD_IDLE_TIMEOUT = 0x2
TUNNEL_AUTH_RESPONSE_FIELD_SOH_RESPONSE = 0x4
CHANNEL_RESPONSE_FIELD_CHANNEL_ID = 0x1

SOH_NONCE_LENGTH = 16  # per the spec; we never send the SoH request (FreeRDP 2.11 skips 20 bytes).


class ProtocolError(Exception):
    """A packet a gateway must refuse; ``code`` is the HRESULT to answer with.

    ``packet_type`` is the offending packet's type when the header was readable, so the session can
    answer with the matching response packet.
    """

    def __init__(self, code: int, message: str, packet_type: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.packet_type = packet_type


# --- packets ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakeRequest:
    packet_type: ClassVar[PacketType] = PacketType.HANDSHAKE_REQUEST
    version_major: int
    version_minor: int
    client_version: int
    extended_auth: int


@dataclass(frozen=True, slots=True)
class HandshakeResponse:
    packet_type: ClassVar[PacketType] = PacketType.HANDSHAKE_RESPONSE
    error_code: int
    version_major: int
    version_minor: int
    server_version: int
    extended_auth: int


@dataclass(frozen=True, slots=True)
class TunnelCreate:
    packet_type: ClassVar[PacketType] = PacketType.TUNNEL_CREATE
    capabilities: int
    fields_present: int
    reauth_tunnel_context: int | None
    paa_cookie: str | None


@dataclass(frozen=True, slots=True)
class TunnelResponse:
    packet_type: ClassVar[PacketType] = PacketType.TUNNEL_RESPONSE
    server_version: int
    status_code: int
    fields_present: int
    tunnel_id: int | None
    capabilities: int | None
    consent_message: str | None


@dataclass(frozen=True, slots=True)
class TunnelAuth:
    packet_type: ClassVar[PacketType] = PacketType.TUNNEL_AUTH
    fields_present: int
    client_name: str


@dataclass(frozen=True, slots=True)
class TunnelAuthResponse:
    packet_type: ClassVar[PacketType] = PacketType.TUNNEL_AUTH_RESPONSE
    error_code: int
    fields_present: int
    redirection_flags: int | None
    idle_timeout_minutes: int | None


@dataclass(frozen=True, slots=True)
class ChannelCreate:
    packet_type: ClassVar[PacketType] = PacketType.CHANNEL_CREATE
    resources: tuple[str, ...]
    alt_resources: tuple[str, ...]
    port: int
    protocol: int


@dataclass(frozen=True, slots=True)
class ChannelResponse:
    packet_type: ClassVar[PacketType] = PacketType.CHANNEL_RESPONSE
    error_code: int
    fields_present: int
    channel_id: int | None


@dataclass(frozen=True, slots=True)
class DataPacket:
    packet_type: ClassVar[PacketType] = PacketType.DATA
    data: bytes


@dataclass(frozen=True, slots=True)
class ServiceMessage:
    packet_type: ClassVar[PacketType] = PacketType.SERVICE_MESSAGE
    message: str


@dataclass(frozen=True, slots=True)
class Keepalive:
    packet_type: ClassVar[PacketType] = PacketType.KEEPALIVE


@dataclass(frozen=True, slots=True)
class CloseChannel:
    packet_type: ClassVar[PacketType] = PacketType.CLOSE_CHANNEL
    status_code: int


@dataclass(frozen=True, slots=True)
class CloseChannelResponse:
    packet_type: ClassVar[PacketType] = PacketType.CLOSE_CHANNEL_RESPONSE
    status_code: int


Packet = Union[
    HandshakeRequest, HandshakeResponse, TunnelCreate, TunnelResponse, TunnelAuth, TunnelAuthResponse,
    ChannelCreate, ChannelResponse, DataPacket, ServiceMessage, Keepalive, CloseChannel, CloseChannelResponse,
]


# --- parsing ------------------------------------------------------------------------------------


def _type_name(packet_type: int) -> str:
    try:
        return f"{PacketType(packet_type).name} (0x{packet_type:X})"
    except ValueError:
        return f"0x{packet_type:X}"


class _Body:
    """A bounds-checked cursor over one packet's body; every short read is a ProtocolError."""

    __slots__ = ("buf", "pos", "end", "packet_type")

    def __init__(self, buf: bytes | bytearray | memoryview, pos: int, end: int, packet_type: int) -> None:
        self.buf = buf
        self.pos = pos
        self.end = end
        self.packet_type = packet_type

    def _take(self, n: int, what: str) -> int:
        start = self.pos
        if start + n > self.end:
            raise ProtocolError(
                ReturnCode.E_PROXY_INTERNALERROR,
                f"{_type_name(self.packet_type)} body too short for {what}",
                self.packet_type,
            )
        self.pos = start + n
        return start

    def u8(self, what: str) -> int:
        return self.buf[self._take(1, what)]

    def u16(self, what: str) -> int:
        return _U16.unpack_from(self.buf, self._take(2, what))[0]

    def u32(self, what: str) -> int:
        return _U32.unpack_from(self.buf, self._take(4, what))[0]

    def u64(self, what: str) -> int:
        return _U64.unpack_from(self.buf, self._take(8, what))[0]

    def skip(self, n: int, what: str) -> None:
        self._take(n, what)

    def unicode_string(self, what: str, code: int = ReturnCode.E_PROXY_INTERNALERROR) -> str:
        """An HTTP_UNICODE_STRING: u16 byte count, then UTF-16LE text ending in one NUL."""
        if self.pos + 2 > self.end:
            raise ProtocolError(code, f"body too short for the length of {what}", self.packet_type)
        length = self.u16(what)
        if length < 2 or length % 2:
            raise ProtocolError(
                code, f"{what}: byte length {length} cannot hold a NUL-terminated UTF-16 string", self.packet_type
            )
        if self.pos + length > self.end:
            raise ProtocolError(
                code, f"{what}: byte length {length} runs past the end of the packet", self.packet_type
            )
        start = self._take(length, what)
        raw = bytes(self.buf[start:start + length])
        if raw[-2:] != b"\x00\x00":
            raise ProtocolError(code, f"{what} is not NUL-terminated", self.packet_type)
        try:
            text = raw[:-2].decode("utf-16-le")
        except UnicodeDecodeError:
            raise ProtocolError(code, f"{what} is not valid UTF-16LE", self.packet_type) from None
        if "\x00" in text:
            raise ProtocolError(code, f"{what} contains an embedded NUL", self.packet_type)
        return text


def _parse_handshake_request(body: _Body) -> HandshakeRequest:
    return HandshakeRequest(
        version_major=body.u8("versionMajor"),
        version_minor=body.u8("versionMinor"),
        client_version=body.u16("clientVersion"),
        extended_auth=body.u16("extendedAuth"),
    )


def _parse_handshake_response(body: _Body) -> HandshakeResponse:
    return HandshakeResponse(
        error_code=body.u32("errorCode"),
        version_major=body.u8("versionMajor"),
        version_minor=body.u8("versionMinor"),
        server_version=body.u16("serverVersion"),
        extended_auth=body.u16("extendedAuth"),
    )


def _parse_tunnel_create(body: _Body) -> TunnelCreate:
    capabilities = body.u32("capsFlags")
    fields = body.u16("fieldsPresent")
    body.skip(2, "reserved")
    reauth = body.u64("reauthTunnelContext") if fields & TUNNEL_CREATE_FIELD_REAUTH else None
    cookie = None
    if fields & TUNNEL_CREATE_FIELD_PAA_COOKIE:
        cookie = body.unicode_string("PAA cookie", ReturnCode.E_PROXY_COOKIE_BADPACKET)
    return TunnelCreate(capabilities=capabilities, fields_present=fields, reauth_tunnel_context=reauth,
                        paa_cookie=cookie)


def _parse_tunnel_response(body: _Body) -> TunnelResponse:
    server_version = body.u16("serverVersion")
    status = body.u32("statusCode")
    fields = body.u16("fieldsPresent")
    body.skip(2, "reserved")
    tunnel_id = body.u32("tunnelId") if fields & TUNNEL_RESPONSE_FIELD_TUNNEL_ID else None
    capabilities = body.u32("capsFlags") if fields & TUNNEL_RESPONSE_FIELD_CAPS else None
    if fields & TUNNEL_RESPONSE_FIELD_SOH_REQ:
        body.skip(SOH_NONCE_LENGTH, "nonce")
        body.unicode_string("serverCert")
    consent = body.unicode_string("consent message") if fields & TUNNEL_RESPONSE_FIELD_CONSENT_MSG else None
    return TunnelResponse(server_version=server_version, status_code=status, fields_present=fields,
                          tunnel_id=tunnel_id, capabilities=capabilities, consent_message=consent)


def _parse_tunnel_auth(body: _Body) -> TunnelAuth:
    fields = body.u16("fieldsPresent")
    # A statement of health may follow the name (fieldsPresent 0x1); we have no use for it.
    return TunnelAuth(fields_present=fields, client_name=body.unicode_string("client name"))


def _parse_tunnel_auth_response(body: _Body) -> TunnelAuthResponse:
    error = body.u32("errorCode")
    fields = body.u16("fieldsPresent")
    body.skip(2, "reserved")
    redirection = body.u32("redirFlags") if fields & TUNNEL_AUTH_RESPONSE_FIELD_REDIR_FLAGS else None
    idle = body.u32("idleTimeout") if fields & TUNNEL_AUTH_RESPONSE_FIELD_IDLE_TIMEOUT else None
    return TunnelAuthResponse(error_code=error, fields_present=fields, redirection_flags=redirection,
                              idle_timeout_minutes=idle)


def _parse_channel_create(body: _Body) -> ChannelCreate:
    count = body.u8("numResources")
    alt_count = body.u8("numAltResources")
    port = body.u16("port")
    protocol = body.u16("protocol")
    if not 1 <= count <= MAX_RESOURCES:
        raise ProtocolError(ReturnCode.E_PROXY_INTERNALERROR,
                            f"numResources {count} is outside 1..{MAX_RESOURCES}", body.packet_type)
    if alt_count > MAX_ALT_RESOURCES:
        raise ProtocolError(ReturnCode.E_PROXY_INTERNALERROR,
                            f"numAltResources {alt_count} is above {MAX_ALT_RESOURCES}", body.packet_type)
    resources = tuple(body.unicode_string(f"resource name {i + 1}") for i in range(count))
    alternatives = tuple(body.unicode_string(f"alternative resource name {i + 1}") for i in range(alt_count))
    return ChannelCreate(resources=resources, alt_resources=alternatives, port=port, protocol=protocol)


def _parse_channel_response(body: _Body) -> ChannelResponse:
    error = body.u32("errorCode")
    fields = body.u16("fieldsPresent")
    body.skip(2, "reserved")
    # channelId comes first in either reading of the spec's field order; udpPort and the
    # authentication cookie are not read (we never use the UDP side channel).
    channel_id = body.u32("channelId") if fields & CHANNEL_RESPONSE_FIELD_CHANNEL_ID else None
    return ChannelResponse(error_code=error, fields_present=fields, channel_id=channel_id)


def _parse_data(body: _Body) -> DataPacket:
    length = body.u16("cbDataLen")
    # DATA is the one packet with nothing optional after it: a length that disagrees with the
    # header means the stream is out of step, so refuse rather than guess.
    if body.pos + length != body.end:
        raise ProtocolError(
            ReturnCode.E_PROXY_INTERNALERROR,
            f"DATA cbDataLen {length} disagrees with packetLength {body.end - body.pos + 10}",
            body.packet_type,
        )
    start = body.pos
    return DataPacket(data=bytes(body.buf[start:start + length]))


def _parse_service_message(body: _Body) -> ServiceMessage:
    return ServiceMessage(message=body.unicode_string("service message"))


def _parse_keepalive(body: _Body) -> Keepalive:
    return Keepalive()


def _parse_close_channel(body: _Body) -> CloseChannel:
    return CloseChannel(status_code=body.u32("statusCode"))


def _parse_close_channel_response(body: _Body) -> CloseChannelResponse:
    return CloseChannelResponse(status_code=body.u32("statusCode"))


# Packet types of §4.4. EXTENDED_AUTH_MSG (SSPI NTLM) and REAUTH_MESSAGE are not supported: parsing
# them is refused like any unknown type.
_PARSERS = {
    PacketType.HANDSHAKE_REQUEST: _parse_handshake_request,
    PacketType.HANDSHAKE_RESPONSE: _parse_handshake_response,
    PacketType.TUNNEL_CREATE: _parse_tunnel_create,
    PacketType.TUNNEL_RESPONSE: _parse_tunnel_response,
    PacketType.TUNNEL_AUTH: _parse_tunnel_auth,
    PacketType.TUNNEL_AUTH_RESPONSE: _parse_tunnel_auth_response,
    PacketType.CHANNEL_CREATE: _parse_channel_create,
    PacketType.CHANNEL_RESPONSE: _parse_channel_response,
    PacketType.DATA: _parse_data,
    PacketType.SERVICE_MESSAGE: _parse_service_message,
    PacketType.KEEPALIVE: _parse_keepalive,
    PacketType.CLOSE_CHANNEL: _parse_close_channel,
    PacketType.CLOSE_CHANNEL_RESPONSE: _parse_close_channel_response,
}


def parse_packet(buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple[Packet | None, int]:
    """Parse the packet starting at ``buf[offset]``: ``(packet, bytes consumed)``, or ``(None, 0)`` if
    the packet is not complete yet.

    Refuses (``ProtocolError``) as soon as the header shows a bad length or an unsupported type, so a
    caller never buffers more than ``MAX_PACKET_LENGTH`` bytes for one packet. Optional trailing bytes
    after the fields we read are tolerated (newer clients append fields flagged in fieldsPresent),
    except in DATA, whose length must match exactly.
    """
    available = len(buf) - offset
    if available < HEADER_LENGTH:
        return None, 0
    packet_type, _reserved, length = HEADER.unpack_from(buf, offset)
    parser = _PARSERS.get(packet_type)  # type: ignore[call-overload]
    if parser is None:
        raise ProtocolError(ReturnCode.E_PROXY_INTERNALERROR,
                            f"unsupported packet type {_type_name(packet_type)}", packet_type)
    if length < HEADER_LENGTH:
        raise ProtocolError(ReturnCode.E_PROXY_INTERNALERROR,
                            f"{_type_name(packet_type)} packetLength {length} is shorter than its header",
                            packet_type)
    if length > MAX_PACKET_LENGTH:
        raise ProtocolError(ReturnCode.E_PROXY_INTERNALERROR,
                            f"{_type_name(packet_type)} packetLength {length} exceeds {MAX_PACKET_LENGTH}",
                            packet_type)
    if available < length:
        return None, 0
    return parser(_Body(buf, offset + HEADER_LENGTH, offset + length, packet_type)), length


# --- building -----------------------------------------------------------------------------------


def _packet(packet_type: PacketType, body: bytes) -> bytes:
    return HEADER.pack(packet_type, 0, HEADER_LENGTH + len(body)) + body


def encode_unicode_string(text: str) -> bytes:
    """An HTTP_UNICODE_STRING: u16 byte count, UTF-16LE text and a terminating NUL."""
    if "\x00" in text:
        raise ValueError("an HTTP_UNICODE_STRING cannot contain NUL")
    encoded = text.encode("utf-16-le") + b"\x00\x00"
    if len(encoded) > 0xFFFF:
        raise ValueError(f"string of {len(text)} characters does not fit a u16 byte count")
    return _U16.pack(len(encoded)) + encoded


def build_handshake_response(error_code: int = ReturnCode.S_OK, *, extended_auth: int = ExtendedAuth.NONE,
                             version_major: int = 1, version_minor: int = 0, server_version: int = 0) -> bytes:
    """HANDSHAKE_RESPONSE: errorCode, protocol version, serverVersion, the extended auth chosen."""
    body = struct.pack("<IBBHH", error_code, version_major, version_minor, server_version, extended_auth)
    return _packet(PacketType.HANDSHAKE_RESPONSE, body)


def build_tunnel_response(status_code: int = ReturnCode.S_OK, *, tunnel_id: int | None = None,
                          capabilities: int | None = None, server_version: int = 0) -> bytes:
    """TUNNEL_RESPONSE with the optional tunnelId and capsFlags.

    Never carries the SoH nonce/certificate (0x4; FreeRDP 2.11 and the spec disagree on its size) or a
    consent message (0x10; it pops a dialog on the client).
    """
    fields = 0
    optional = b""
    if tunnel_id is not None:
        fields |= TUNNEL_RESPONSE_FIELD_TUNNEL_ID
        optional += _U32.pack(tunnel_id)
    if capabilities is not None:
        fields |= TUNNEL_RESPONSE_FIELD_CAPS
        optional += _U32.pack(capabilities)
    body = struct.pack("<HIHH", server_version, status_code, fields, 0) + optional
    return _packet(PacketType.TUNNEL_RESPONSE, body)


def build_tunnel_auth_response(error_code: int = ReturnCode.S_OK, *, redirection_flags: int | None = None,
                               idle_timeout_minutes: int | None = None) -> bytes:
    """TUNNEL_AUTH_RESPONSE with the optional device-redirection flags and idle timeout (minutes)."""
    fields = 0
    optional = b""
    if redirection_flags is not None:
        fields |= TUNNEL_AUTH_RESPONSE_FIELD_REDIR_FLAGS
        optional += _U32.pack(redirection_flags)
    if idle_timeout_minutes is not None:
        fields |= TUNNEL_AUTH_RESPONSE_FIELD_IDLE_TIMEOUT
        optional += _U32.pack(idle_timeout_minutes)
    return _packet(PacketType.TUNNEL_AUTH_RESPONSE, struct.pack("<IHH", error_code, fields, 0) + optional)


def build_channel_response(error_code: int = ReturnCode.S_OK, *, channel_id: int | None = None) -> bytes:
    """CHANNEL_RESPONSE with the optional channelId (rdpgw: Windows clients need one)."""
    if channel_id is None:
        return _packet(PacketType.CHANNEL_RESPONSE, struct.pack("<IHH", error_code, 0, 0))
    body = struct.pack("<IHHI", error_code, CHANNEL_RESPONSE_FIELD_CHANNEL_ID, 0, channel_id)
    return _packet(PacketType.CHANNEL_RESPONSE, body)


def build_data(payload: bytes | bytearray | memoryview) -> bytes:
    """One DATA packet; ``payload`` must be at most 65535 bytes (split larger writes first)."""
    length = len(payload)
    if length > MAX_DATA_LENGTH:
        raise ValueError(f"DATA payload of {length} bytes exceeds {MAX_DATA_LENGTH}")
    return _DATA_HEADER.pack(PacketType.DATA, 0, HEADER_LENGTH + 2 + length, length) + payload


def build_keepalive() -> bytes:
    return _packet(PacketType.KEEPALIVE, b"")


def build_service_message(text: str) -> bytes:
    """SERVICE_MESSAGE: a text the client shows its user (xfreerdp prints it)."""
    return _packet(PacketType.SERVICE_MESSAGE, encode_unicode_string(text))


def build_close_channel(status_code: int = ReturnCode.S_OK) -> bytes:
    return _packet(PacketType.CLOSE_CHANNEL, _U32.pack(status_code))


def build_close_channel_response(status_code: int = ReturnCode.S_OK) -> bytes:
    return _packet(PacketType.CLOSE_CHANNEL_RESPONSE, _U32.pack(status_code))


# Client-side packets: what FreeRDP sends, for test clients and our own connector.


def build_handshake_request(extended_auth: int = ExtendedAuth.PAA, *, version_major: int = 1,
                            version_minor: int = 0, client_version: int = 0) -> bytes:
    body = struct.pack("<BBHH", version_major, version_minor, client_version, extended_auth)
    return _packet(PacketType.HANDSHAKE_REQUEST, body)


DEFAULT_CLIENT_CAPABILITIES = Capability.QUAR_SOH | Capability.MESSAGING_CONSENT_SIGN | Capability.MESSAGING_SERVICE_MSG


def build_tunnel_create(paa_cookie: str | None, *, capabilities: int = DEFAULT_CLIENT_CAPABILITIES,
                        reauth_tunnel_context: int | None = None) -> bytes:
    fields = 0
    optional = b""
    if reauth_tunnel_context is not None:
        fields |= TUNNEL_CREATE_FIELD_REAUTH
        optional += _U64.pack(reauth_tunnel_context)
    if paa_cookie is not None:
        fields |= TUNNEL_CREATE_FIELD_PAA_COOKIE
        optional += encode_unicode_string(paa_cookie)
    return _packet(PacketType.TUNNEL_CREATE, struct.pack("<IHH", capabilities, fields, 0) + optional)


def build_tunnel_auth(client_name: str) -> bytes:
    return _packet(PacketType.TUNNEL_AUTH, _U16.pack(0) + encode_unicode_string(client_name))


def build_channel_create(resources: list[str] | tuple[str, ...], port: int, *,
                         alt_resources: list[str] | tuple[str, ...] = (), protocol: int = RDP_PROTOCOL) -> bytes:
    if not 1 <= len(resources) <= MAX_RESOURCES or len(alt_resources) > MAX_ALT_RESOURCES:
        raise ValueError("CHANNEL_CREATE takes 1..50 resources and at most 3 alternatives")
    body = struct.pack("<BBHH", len(resources), len(alt_resources), port, protocol)
    body += b"".join(encode_unicode_string(name) for name in (*resources, *alt_resources))
    return _packet(PacketType.CHANNEL_CREATE, body)
