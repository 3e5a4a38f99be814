"""The one RDP transport PDU the gateway ever writes itself: an X.224 Disconnect Request, over bytes only.

Why: FreeRDP 3.10's raw-WebSocket transport (``wst``) ignores everything the gateway can do at the
WebSocket or TCP level once the upgrade is answered (a close frame, a FIN, a reset: it waits until
killed), but it does act on its RDP peer refusing the connection. A refusal after the upgrade therefore
answers the client's X.224 Connection Request with a Disconnect Request (ITU-T X.224 §13.5, class 0, in
a TPKT, RFC 1006), then closes the WebSocket: FreeRDP 3 stops at once ("expected
X224_TPDU_CONNECTION_CONFIRM", exit 133). No sockets and no Django here.
"""
from __future__ import annotations

import struct

TPKT_VERSION = 3
DISCONNECT_REQUEST = 0x80  # the DR TPDU code (1000 xxxx)
REASON_NOT_SPECIFIED = 0  # X.224 §13.5.3 e): "reason not specified"

_TPKT = struct.Struct("!BBH")  # version, reserved, length of the whole packet
_DR = struct.Struct("!BBHHB")  # length indicator, code, DST-REF, SRC-REF, reason


def disconnect_request(reason: int = REASON_NOT_SPECIFIED) -> bytes:
    """A TPKT carrying an X.224 Disconnect Request: the session host's "no" to a Connection Request."""
    if not 0 <= reason <= 0xFF:
        raise ValueError("an X.224 reason is one byte")
    tpdu = _DR.pack(_DR.size - 1, DISCONNECT_REQUEST, 0, 0, reason)  # the length indicator excludes itself
    return _TPKT.pack(TPKT_VERSION, 0, _TPKT.size + len(tpdu)) + tpdu


def is_disconnect_request(data: bytes) -> bool:
    """Whether ``data`` is exactly one TPKT carrying an X.224 Disconnect Request."""
    if len(data) < _TPKT.size + _DR.size:
        return False
    version, _, length = _TPKT.unpack_from(data)
    indicator, code = data[_TPKT.size], data[_TPKT.size + 1]
    return (version == TPKT_VERSION and length == len(data) and indicator == length - _TPKT.size - 1
            and code & 0xF0 == DISCONNECT_REQUEST)
