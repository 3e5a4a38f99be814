"""Server-side WebSocket framing after our hand-made upgrade, on the ``websockets`` library's sans-I/O layer.

``gateway/httpupgrade.py`` answers the upgrade itself (FreeRDP 2's handshake is refused by every library,
PROTOCOLS.md §4.2); once the 101 is out, framing is plain RFC 6455, so this wraps
``websockets.protocol.Protocol`` in server mode and OPEN state: it unmasks FreeRDP's masked client frames,
refuses unmasked ones, sends unmasked frames (FreeRDP aborts on masked server frames, §4.3), answers pings
and runs the close handshake. What it adds is the shape a relay wants per frame: bytes in, binary payloads
out; a payload in, bytes to write out. Binary payloads are a byte stream (FreeRDP lets packets span or
share frames), so fragments are delivered as they arrive and only the frame size is bounded.
"""
from __future__ import annotations

import logging

from websockets.frames import CloseCode, Opcode
from websockets.protocol import SEND_EOF, Protocol, Side, State

log = logging.getLogger(__name__)

# One TSGU packet per frame is at most 65,545 bytes (DATA) and FreeRDP never frames more; a raw-RDP client
# (FreeRDP 3's wst, our connector) sends at most one RDP write per frame. 1 MiB leaves room and bounds what
# one connection can make us buffer.
DEFAULT_MAX_FRAME_SIZE = 1 << 20


class ServerWebSocket:
    """One upgraded connection's framing. Not thread-safe; use it from the connection's task.

    After each ``receive_data``/``receive_eof`` call, write ``data_to_send()`` (pongs, close replies);
    when ``should_close_transport`` turns True, write what is pending and close the TCP connection.
    """

    def __init__(self, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        # (message limit, fragment limit): messages are unbounded because we stream fragments as they
        # come; each frame is bounded before its payload is read.
        self._protocol = Protocol(Side.SERVER, state=State.OPEN, max_size=(None, max_frame_size), logger=log)
        self._binary_message = False  # inside a fragmented binary message: continuation frames are data
        self._eof_requested = False

    def receive_data(self, data: bytes | bytearray) -> list[bytes]:
        """Feed bytes read from the socket; return the binary payloads they completed, in order.

        Text frames are refused (close 1003): nothing we serve speaks text. A protocol violation, an
        oversized frame or a close from the peer ends the connection: see ``should_close_transport``.
        """
        protocol = self._protocol
        protocol.receive_data(data)
        payloads: list[bytes] = []
        for frame in protocol.events_received():
            opcode = frame.opcode
            if opcode is Opcode.BINARY:
                self._binary_message = not frame.fin
                if frame.data:
                    payloads.append(frame.data)
            elif opcode is Opcode.CONT:
                if self._binary_message:
                    self._binary_message = not frame.fin
                    if frame.data:
                        payloads.append(frame.data)
            elif opcode is Opcode.TEXT:
                if protocol.state is State.OPEN:
                    protocol.fail(CloseCode.UNSUPPORTED_DATA, "text frames are not supported")
                break
            # PING is answered by the library; PONG needs nothing; CLOSE is echoed by the library.
        return payloads

    def receive_eof(self) -> None:
        """The peer closed its side of the TCP connection; call ``receive_data`` no more after this."""
        self._protocol.receive_eof()

    def send_binary(self, payload: bytes | bytearray | memoryview) -> bytes:
        """One unmasked binary frame for ``payload``, after anything already pending; b"" once closing."""
        if self._protocol.state is not State.OPEN:
            return b""
        self._protocol.send_binary(payload)
        return self.data_to_send()

    def send_ping(self, data: bytes = b"") -> bytes:
        """A ping (FreeRDP answers with a pong): keeps idle proxies awake without touching TSGU state."""
        if self._protocol.state is not State.OPEN:
            return b""
        self._protocol.send_ping(data)
        return self.data_to_send()

    def send_close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> bytes:
        """Start the closing handshake. FreeRDP answers a close with a pong (sic) and stops writing, so
        close the TCP connection once this is written rather than waiting for its close frame."""
        if self._protocol.state is not State.OPEN:
            return b""
        self._protocol.send_close(code, reason)
        return self.data_to_send()

    def data_to_send(self) -> bytes:
        """Everything queued for the socket (frames, pongs, close echoes), joined."""
        writes = self._protocol.data_to_send()
        if not writes:
            return b""
        if SEND_EOF in writes:  # the library's "half-close the TCP connection now" marker
            self._eof_requested = True
            writes = [chunk for chunk in writes if chunk]
        return b"".join(writes)

    @property
    def should_close_transport(self) -> bool:
        """True once a close was sent or received or the connection failed: write what is pending, then
        close the TCP connection (a server closes first, RFC 6455 §7.1.1; FreeRDP never sends its close)."""
        return self._eof_requested or self._protocol.state is not State.OPEN

    @property
    def is_open(self) -> bool:
        return self._protocol.state is State.OPEN

    @property
    def close_code(self) -> int | None:
        """The close code the peer sent (1006 if it vanished without one), once the connection is closed."""
        return self._protocol.close_code

    @property
    def failure(self) -> Exception | None:
        """Why the library failed the connection (bad masking, oversized frame, ...), if it did."""
        return self._protocol.parser_exc
