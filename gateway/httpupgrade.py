"""The RD Gateway's HTTP layer, by hand: request heads, the WebSocket upgrade, legacy responses, chunks.

FreeRDP 2 sends ``RDG_OUT_DATA /remoteDesktopGateway/`` with a 15-character Sec-WebSocket-Key that is not
base64, which every off-the-shelf WebSocket server refuses (PROTOCOLS.md §4.2, §6), so the gateway parses
the request head itself and answers the upgrade with the accept value computed over the key exactly as
sent. The legacy transport (§4.7) is a 200 with a 10-byte seed on RDG_OUT_DATA and a chunked upload on
RDG_IN_DATA. Pure functions over bytes: the listener that owns the sockets calls them.
"""
from __future__ import annotations

import base64
import hashlib
import http
import os
import re
from dataclasses import dataclass

from websockets.datastructures import Headers, MultipleValuesError

from gateway.rdg import MAX_PACKET_LENGTH

RDG_PATH = "/remoteDesktopGateway/"
ALLOWED_METHODS = ("GET", "RDG_OUT_DATA", "RDG_IN_DATA")
MAX_HEAD_SIZE = 16 * 1024
MAX_HEADERS = 64
MAX_WEBSOCKET_KEY_LENGTH = 64
SEED_LENGTH = 10  # what FreeRDP 2.11 skips after the legacy 200 (rdg_skip_seed_payload)
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_CHUNK_SIZE_LINE = 64

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
_HEADER_VALUE = re.compile(r"[\x09\x20-\x7e\x80-\xff]*").fullmatch
_TARGET = re.compile(r"/[\x21-\x7e]*").fullmatch
_WEBSOCKET_KEY = re.compile(r"[\x21-\x7e]+").fullmatch
_DIGITS = re.compile(r"[0-9]{1,19}").fullmatch
_HEX = re.compile(r"[0-9A-Fa-f]{1,8}").fullmatch


class HttpError(Exception):
    """A request we refuse; ``status`` is the HTTP status to answer with (see ``build_error_response``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class RequestHead:
    """A parsed, validated request head. ``headers`` is case-insensitive (websockets' ``Headers``)."""

    method: str
    target: str
    path: str
    query: str
    headers: Headers
    content_length: int | None
    chunked: bool
    # The Sec-WebSocket-Key as sent, when the request asks for a WebSocket upgrade; None otherwise.
    websocket_key: str | None

    @property
    def is_websocket_upgrade(self) -> bool:
        return self.websocket_key is not None

    @property
    def is_rdg_path(self) -> bool:
        """The RD Gateway endpoint; compared case-insensitively, as IIS does."""
        return self.path.lower() == RDG_PATH.lower()

    @property
    def connection_id(self) -> str | None:
        """RDG-Connection-Id, which pairs a legacy client's RDG_OUT_DATA and RDG_IN_DATA requests."""
        return _single(self.headers, "RDG-Connection-Id")

    @property
    def auth_scheme(self) -> str | None:
        """RDG-Auth-Scheme (``PAA`` when the client has an access token)."""
        return _single(self.headers, "RDG-Auth-Scheme")


def _single(headers: Headers, name: str) -> str | None:
    try:
        return headers.get(name)
    except MultipleValuesError:
        raise HttpError(400, f"more than one {name} header") from None


def _tokens(headers: Headers, name: str) -> set[str]:
    """The lower-cased comma-separated tokens of every ``name`` header (Connection, Upgrade)."""
    return {token.strip().lower() for value in headers.get_all(name) for token in value.split(",")}


def upgrade_tokens(head: RequestHead) -> set[str]:
    """What a request asks to upgrade to (lower-cased), or nothing without ``Connection: Upgrade``."""
    if "upgrade" not in _tokens(head.headers, "Connection"):
        return set()
    return _tokens(head.headers, "Upgrade")


def parse_request_head(buf: bytes | bytearray) -> tuple[RequestHead | None, int]:
    """Parse the request head at the start of ``buf``: ``(head, bytes consumed)``, or ``(None, 0)`` while
    the blank line that ends it has not arrived. Bytes after the head (frames, chunks) are not touched.

    Raises ``HttpError`` for anything malformed or unsupported, and once 16 KiB arrived without the end
    of the head.
    """
    end = buf.find(b"\r\n\r\n", 0, MAX_HEAD_SIZE)
    if end < 0:
        if len(buf) >= MAX_HEAD_SIZE:
            raise HttpError(400, f"request head larger than {MAX_HEAD_SIZE} bytes")
        return None, 0
    consumed = end + 4
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    if len(lines) - 1 > MAX_HEADERS:
        raise HttpError(400, f"more than {MAX_HEADERS} header lines")

    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN(parts[0]):
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if version != "HTTP/1.1":
        raise HttpError(400, f"unsupported HTTP version {version[:16]!r}: HTTP/1.1 required")
    if not _TARGET(target):
        raise HttpError(400, "request target must be an absolute path")
    if method not in ALLOWED_METHODS:
        raise HttpError(405, f"method {method[:32]} not allowed")

    headers = Headers()
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN(name):
            # Also refuses obsolete line folding (a line starting with whitespace) and bare CR/LF.
            raise HttpError(400, "malformed header line")
        value = value.strip(" \t")
        if not _HEADER_VALUE(value):
            raise HttpError(400, f"invalid characters in the {name[:64]} header")
        headers[name] = value

    content_length = None
    raw_length = _single(headers, "Content-Length")
    if raw_length is not None:
        if not _DIGITS(raw_length):
            raise HttpError(400, "invalid Content-Length")
        content_length = int(raw_length)
    chunked = False
    transfer_encoding = _single(headers, "Transfer-Encoding")
    if transfer_encoding is not None:
        if transfer_encoding.lower() != "chunked":
            raise HttpError(400, "only Transfer-Encoding: chunked is supported")
        if content_length is not None:
            # Both framings at once is the classic request-smuggling shape; refuse it.
            raise HttpError(400, "both Content-Length and Transfer-Encoding")
        chunked = True

    websocket_key = None
    if "websocket" in _tokens(headers, "Upgrade"):
        if "upgrade" not in _tokens(headers, "Connection"):
            raise HttpError(400, "WebSocket upgrade without Connection: Upgrade")
        ws_version = _single(headers, "Sec-WebSocket-Version")
        if ws_version is not None and ws_version != "13":
            raise HttpError(400, "unsupported Sec-WebSocket-Version")
        key = _single(headers, "Sec-WebSocket-Key")
        # Any key is hashed as sent (FreeRDP 2's is 15 characters of 0x40-0x5F, not base64), but it
        # must be a short run of visible ASCII.
        if key is None or len(key) > MAX_WEBSOCKET_KEY_LENGTH or not _WEBSOCKET_KEY(key):
            raise HttpError(400, "missing or invalid Sec-WebSocket-Key")
        websocket_key = key

    path, _, query = target.partition("?")
    return RequestHead(method=method, target=target, path=path, query=query, headers=headers,
                       content_length=content_length, chunked=chunked, websocket_key=websocket_key), consumed


# --- responses ----------------------------------------------------------------------------------


def websocket_accept(key: str) -> str:
    """Sec-WebSocket-Accept: base64(SHA-1(key exactly as sent + the RFC 6455 GUID))."""
    return base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode("latin-1")).digest()).decode("ascii")


def build_switching_protocols(key: str) -> bytes:
    """The 101 that puts a connection into WebSocket mode; frames may follow it immediately."""
    return (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {websocket_accept(key)}\r\n"
        "\r\n"
    ).encode("ascii")


def build_legacy_out_response(seed: bytes | None = None) -> bytes:
    """The legacy RDG_OUT_DATA answer: 200 without Content-Length, then the 10-byte seed; TSGU packets
    follow raw until the connection closes. (With a Content-Length and a text/plain type FreeRDP would
    read the seed as a body instead; we send neither.)"""
    seed = os.urandom(SEED_LENGTH) if seed is None else seed
    if len(seed) != SEED_LENGTH:
        raise ValueError(f"the seed is {SEED_LENGTH} bytes")
    return b"HTTP/1.1 200 OK\r\nCache-Control: no-cache\r\n\r\n" + seed


def build_legacy_in_response() -> bytes:
    """The answer to the first, empty RDG_IN_DATA; the client then re-sends it with a chunked body."""
    return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def build_error_response(status: int, message: str = "") -> bytes:
    """A short text/plain error (400, 401, 403, 404, 405, ...) that closes the connection."""
    if not 400 <= status <= 599:
        raise ValueError(f"{status} is not an error status")
    phrase = http.HTTPStatus(status).phrase
    body = f"{message or phrase}\n".encode()
    lines = [
        f"HTTP/1.1 {status} {phrase}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if status == 405:
        lines.append("Allow: " + ", ".join(ALLOWED_METHODS))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


# --- the legacy upload --------------------------------------------------------------------------


class ChunkedDecoder:
    """Incremental decoder of the chunked RDG_IN_DATA body (``<hex length>\\r\\n<packet>\\r\\n`` ...).

    ``feed`` returns the body bytes in order; chunk boundaries are not kept (TSGU packets form a stream
    the session reassembles). FreeRDP writes control packets with upper-case and DATA with lower-case
    hex; both are accepted, as are chunk extensions (ignored). Chunk sizes above ``max_chunk_size`` (one
    TSGU packet), trailers and anything after the last chunk are refused with ``HttpError(400)``.
    """

    _SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)

    def __init__(self, max_chunk_size: int = MAX_PACKET_LENGTH) -> None:
        self._max = max_chunk_size
        self._state = self._SIZE
        self._remaining = 0
        self._pending = b""  # an incomplete size line or CRLF, never more than ~66 bytes

    @property
    def finished(self) -> bool:
        """True once the last (zero-length) chunk arrived."""
        return self._state == self._DONE

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        out: list[bytes] = []
        if self._pending:
            data = self._pending + bytes(data)
            self._pending = b""
        pos, end = 0, len(data)
        while pos < end:
            state = self._state
            if state == self._DATA:
                take = min(self._remaining, end - pos)
                out.append(bytes(data[pos:pos + take]))
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = self._DATA_END
            elif state == self._SIZE:
                eol = data.find(b"\r\n", pos, pos + _MAX_CHUNK_SIZE_LINE + 2)
                if eol < 0:
                    # A line of the longest size may have arrived up to its CR, its LF still to come.
                    if end - pos > _MAX_CHUNK_SIZE_LINE + 1:
                        raise HttpError(400, "chunk size line too long")
                    self._pending = bytes(data[pos:])
                    break
                size = self._parse_size(bytes(data[pos:eol]))
                pos = eol + 2
                if size:
                    self._remaining = size
                    self._state = self._DATA
                else:
                    self._state = self._TRAILER
            elif state in (self._DATA_END, self._TRAILER):
                if end - pos < 2:
                    self._pending = bytes(data[pos:])
                    break
                if data[pos:pos + 2] != b"\r\n":
                    raise HttpError(400, "chunk data not followed by CRLF" if state == self._DATA_END
                                    else "chunked trailers are not supported")
                pos += 2
                self._state = self._SIZE if state == self._DATA_END else self._DONE
            else:
                raise HttpError(400, "data after the last chunk")
        return out

    def _parse_size(self, line: bytes) -> int:
        digits = line.split(b";", 1)[0].decode("latin-1")
        if not _HEX(digits):
            raise HttpError(400, "invalid chunk size")
        size = int(digits, 16)
        if size > self._max:
            raise HttpError(400, f"chunk of {size} bytes exceeds {self._max}")
        return size
