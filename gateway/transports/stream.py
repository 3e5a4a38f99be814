"""One client connection as the transports see it: HTTP request heads first, then a byte stream.

Bytes that arrive after a request head (frames, chunks, a pipelined second head) are kept and returned
by the next read, so nothing the client sent early is lost or reordered.
"""
from __future__ import annotations

import asyncio
import logging
import ssl

from gateway import httpupgrade

log = logging.getLogger(__name__)

READ_SIZE = 1 << 16
# How clients end TLS every day, not failures: bytes still in flight after our close_notify (the host
# ended the session and we closed first) and a TCP close without close_notify (FreeRDP's usual end).
ORDINARY_TLS_ENDS = frozenset({"APPLICATION_DATA_AFTER_CLOSE_NOTIFY", "UNEXPECTED_EOF_WHILE_READING"})


def is_ordinary_tls_end(exc: BaseException) -> bool:
    """Whether a TLS error reading from a client is just the client's end of the connection."""
    return isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)) or (
        isinstance(exc, ssl.SSLError) and getattr(exc, "reason", None) in ORDINARY_TLS_ENDS)


def describe_drop(exc: BaseException) -> str:
    """What ended a client's connection, for the log: the TLS reason when there is one."""
    reason = getattr(exc, "reason", None) if isinstance(exc, ssl.SSLError) else None
    return f"{exc.__class__.__name__} ({reason})" if reason else exc.__class__.__name__


class ClientStream:
    """A client's TLS connection with the bytes read past the last request head."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        peer = writer.get_extra_info("peername") or ("", 0)
        self.address: str = peer[0] if peer else ""
        self._buffer = b""
        # Pre-authentication (gateway/preauth.py, GatewayServer): counted against the caps until its
        # ticket is admitted or the agent has proved its host; its ticket being checked right now; closed
        # because the deadline passed first.
        self.counted = False
        self.authenticated = False
        self.authenticating = False
        self.preauth_expired = False

    async def read_head(self, timeout: float) -> httpupgrade.RequestHead | None:
        """The next request head, or None when the client closed or sent none within ``timeout`` seconds.

        Raises ``httpupgrade.HttpError`` for a malformed head (at most 16 KiB is ever buffered).
        """
        buf = bytearray(self._buffer)
        self._buffer = b""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    head, consumed = httpupgrade.parse_request_head(buf)
                    if head is not None:
                        self._buffer = bytes(buf[consumed:])
                        return head
                    chunk = await self.reader.read(4096)
                    if not chunk:
                        return None
                    buf += chunk
        except TimeoutError:
            log.info("client %s sent no request head in %ss", self.address, timeout)
            return None

    async def read_line(self, limit: int, timeout: float) -> bytes:
        """The next line, ``\n`` included; what came before EOF when the peer closed first (no ``\n``).

        Raises ``TimeoutError`` when no whole line arrived within ``timeout`` seconds and ``ValueError``
        when ``limit`` bytes arrived without one (no more than ``limit`` plus one read is ever held).
        """
        buf = bytearray(self._buffer)
        self._buffer = b""
        async with asyncio.timeout(timeout):
            while True:
                end = buf.find(b"\n", 0, limit)
                if end >= 0:
                    self._buffer = bytes(buf[end + 1:])
                    return bytes(buf[:end + 1])
                if len(buf) >= limit:
                    raise ValueError(f"no line end in {limit} bytes")
                chunk = await self.reader.read(4096)
                if not chunk:
                    return bytes(buf)
                buf += chunk

    async def read(self) -> bytes:
        """The next bytes from the client (b"" at EOF, an ordinary TLS end included), starting with any
        left over from the head."""
        if self._buffer:
            data, self._buffer = self._buffer, b""
            return data
        try:
            return await self.reader.read(READ_SIZE)
        except ssl.SSLError as exc:
            if not is_ordinary_tls_end(exc):
                raise
            log.debug("client %s ended its TLS connection (%s)", self.address, describe_drop(exc))
            return b""

    def write(self, data: bytes) -> None:
        if not data:
            return
        try:
            self.writer.write(data)
        except (ConnectionError, RuntimeError):
            pass  # the client is gone; its reader sees the end

    async def drain(self) -> None:
        """Wait while the client reads slowly: the backpressure that reaches the host side."""
        await self.writer.drain()

    def refuse(self, status: int, message: str) -> None:
        """Answer a request with an HTTP error and close (the client gets a sentence, never a traceback)."""
        log.info("refused request from %s: %s %s", self.address, status, message)
        self.write(httpupgrade.build_error_response(status, message))
        self.close()

    def close(self) -> None:
        try:
            self.writer.close()
        except (ConnectionError, RuntimeError):
            pass

    async def wait_closed(self) -> None:
        self.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError, RuntimeError):
            pass
