"""The first two PDUs of an RDP connection ([MS-RDPBCGR] 2.2.1.1 and 2.2.1.2), as pure functions over bytes.

A TPKT header ([T123] section 8: version 3, a reserved byte, the big-endian length of the whole packet)
carries an X.224 Class 0 Connection Request (code 0xE0), Connection Confirm (0xD0) or Disconnect Request
(0x80, ITU-T X.224 section 13.5). The request may carry
a ``Cookie: mstshash=…`` line and an RDP Negotiation Request (type 1) naming the security protocols the
client supports; the confirm carries an RDP Negotiation Response (type 2) with the protocol the server
selected, or an RDP Negotiation Failure (type 3) with a failure code.

Used by the gateway's browser transport (RDCleanPath) to check the browser's request and read the host's
confirm before it runs TLS towards the host itself, by the host agent to ask its own RDP listener for the certificate it presents (request TLS, read the
confirm, then run a TLS handshake), and by the gateway's raw-WebSocket transport to refuse a client after
the upgrade: FreeRDP 3.10 ignores a WebSocket close, a FIN and a reset there, but stops at once when its RDP
peer answers the Connection Request with a Disconnect Request. Bounded: a confirm is at most
``MAX_PACKET`` bytes.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

TPKT_VERSION = 3
TPKT_HEADER = 4
CONNECTION_REQUEST = 0xE0
CONNECTION_CONFIRM = 0xD0
DISCONNECT_REQUEST = 0x80
REASON_NOT_SPECIFIED = 0  # X.224 section 13.5.3 e)
NEG_REQUEST = 0x01
NEG_RESPONSE = 0x02
NEG_FAILURE = 0x03

PROTOCOL_RDP = 0x00000000
PROTOCOL_SSL = 0x00000001
PROTOCOL_HYBRID = 0x00000002
PROTOCOL_RDSTLS = 0x00000004
PROTOCOL_HYBRID_EX = 0x00000008

# [MS-RDPBCGR] 2.2.1.2.2
FAILURE_CODES = {
    0x01: "SSL_REQUIRED_BY_SERVER",
    0x02: "SSL_NOT_ALLOWED_BY_SERVER",
    0x03: "SSL_CERT_NOT_ON_SERVER",
    0x04: "INCONSISTENT_FLAGS",
    0x05: "HYBRID_REQUIRED_BY_SERVER",
    0x06: "SSL_WITH_USER_AUTH_REQUIRED_BY_SERVER",
}
# A confirm is 11 or 19 bytes; a request with a long cookie stays well below this.
MAX_PACKET = 512


class X224Error(ValueError):
    """The bytes are not the PDU expected; the message says what is wrong."""


@dataclass(frozen=True)
class Confirm:
    """A Connection Confirm: ``selected_protocol`` when the server chose one, or ``failure`` (a name from
    FAILURE_CODES) when it refused; neither when the server sent no negotiation data (standard RDP)."""

    selected_protocol: int | None = None
    failure: str | None = None


def connection_request(requested_protocols: int, *, cookie: str = "") -> bytes:
    """A TPKT-framed X.224 Connection Request with an RDP Negotiation Request.

    ``cookie`` is the user name for the ``Cookie: mstshash=`` line (omitted when empty)."""
    if not 0 <= requested_protocols <= 0xFFFFFFFF:
        raise X224Error("requested_protocols must fit in 32 bits")
    if any(ch in cookie for ch in "\r\n") or not cookie.isascii():
        raise X224Error("the cookie must be ASCII on one line")
    variable = (f"Cookie: mstshash={cookie}\r\n".encode("ascii") if cookie else b"")
    variable += struct.pack("<BBHI", NEG_REQUEST, 0, 8, requested_protocols)
    # Length indicator: the TPDU header's bytes after this one (code, dst-ref, src-ref, class) + variable.
    tpdu = struct.pack(">BBHHB", 6 + len(variable), CONNECTION_REQUEST, 0, 0, 0) + variable
    return tpkt(tpdu)


def disconnect_request(reason: int = REASON_NOT_SPECIFIED) -> bytes:
    """A TPKT carrying an X.224 Disconnect Request: the session host's "no" to a Connection Request."""
    if not 0 <= reason <= 0xFF:
        raise X224Error("an X.224 reason is one byte")
    # Length indicator 6 (code, DST-REF, SRC-REF, reason), code, DST-REF 0, SRC-REF 0, reason.
    return tpkt(struct.pack(">BBHHB", 6, DISCONNECT_REQUEST, 0, 0, reason))


def is_disconnect_request(data: bytes) -> bool:
    """Whether ``data`` is exactly one TPKT carrying an X.224 Disconnect Request."""
    if len(data) < TPKT_HEADER + 7:
        return False
    version, _, length = struct.unpack(">BBH", data[:TPKT_HEADER])
    indicator, code = data[4], data[5]
    return (version == TPKT_VERSION and length == len(data) and indicator == length - TPKT_HEADER - 1
            and code & 0xF0 == DISCONNECT_REQUEST)


def tpkt(payload: bytes) -> bytes:
    length = TPKT_HEADER + len(payload)
    if length > 0xFFFF:
        raise X224Error("a TPKT packet holds at most 65535 bytes")
    return struct.pack(">BBH", TPKT_VERSION, 0, length) + payload


def packet_length(header: bytes) -> int:
    """The whole packet's length from its first four bytes (the TPKT header); refuses anything else."""
    if len(header) < TPKT_HEADER:
        raise X224Error("fewer than 4 bytes: not a TPKT header")
    version, _, length = struct.unpack(">BBH", header[:TPKT_HEADER])
    if version != TPKT_VERSION:
        raise X224Error(f"not a TPKT packet (version byte {version:#04x})")
    if not TPKT_HEADER + 7 <= length <= MAX_PACKET:
        raise X224Error(f"a TPKT length of {length} is not that of a connection PDU")
    return length


def check_connection_request(packet: bytes) -> None:
    """That ``packet`` is exactly one TPKT holding an X.224 Connection Request (what a browser's
    RDCleanPath request carries, and the gateway forwards to the host); X224Error otherwise."""
    length = packet_length(packet)
    if len(packet) != length:
        raise X224Error(f"the packet is {len(packet)} bytes but its header says {length}")
    if packet[5] & 0xF0 != CONNECTION_REQUEST:
        raise X224Error(f"not a Connection Request (TPDU code {packet[5]:#04x})")
    if packet[4] != length - TPKT_HEADER - 1:
        raise X224Error("the X.224 length indicator does not match the packet")


def parse_connection_confirm(packet: bytes) -> Confirm:
    """Parse one whole TPKT packet holding an X.224 Connection Confirm."""
    length = packet_length(packet)
    if len(packet) != length:
        raise X224Error(f"the packet is {len(packet)} bytes but its header says {length}")
    indicator, code = packet[4], packet[5]
    if code & 0xF0 != CONNECTION_CONFIRM:
        raise X224Error(f"not a Connection Confirm (TPDU code {code:#04x})")
    if indicator != length - TPKT_HEADER - 1:
        raise X224Error("the X.224 length indicator does not match the packet")
    negotiation = packet[11:]
    if not negotiation:
        return Confirm()
    if len(negotiation) != 8:
        raise X224Error(f"negotiation data of {len(negotiation)} bytes (8 expected)")
    kind, _flags, size, value = struct.unpack("<BBHI", negotiation)
    if size != 8:
        raise X224Error(f"a negotiation length of {size} (8 expected)")
    if kind == NEG_RESPONSE:
        return Confirm(selected_protocol=value)
    if kind == NEG_FAILURE:
        return Confirm(failure=FAILURE_CODES.get(value, f"failure code {value:#x}"))
    raise X224Error(f"negotiation data of type {kind:#04x} in a Connection Confirm")
