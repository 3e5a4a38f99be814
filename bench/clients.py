"""The benchmark client's streams: one byte stream to the target through each contender.

- ``TcpStream``: plain TCP (to the target directly, or through the plain asyncio TCP relay).
- ``WebSocketStream``: a standard ``GET`` WebSocket client with masked frames (for websockify).
- ``RdgStream``: an RD Gateway client speaking MS-TSGU over WebSocket as FreeRDP 2.11 does — TLS, the
  ``RDG_OUT_DATA`` upgrade with a 15-character key, masked binary frames, HANDSHAKE → TUNNEL_CREATE (the
  .rdp file's ticket) → TUNNEL_AUTH → CHANNEL_CREATE, then DATA packets both ways.
- ``RdpTlsStream``: an RDP client's X.224 request and TLS with the host, over any of the above.
- ``BrowserStream``: the browser client of the RDCleanPath transport (IronRDP's web client's shape).

Each offers ``write(data)`` (waits for the socket like a real client), ``read()`` (the next bytes, b"" at
the end) and ``close()``. Framing uses the ``websockets`` sans-I/O layer (its C speedups mask and unmask)
and the TSGU builders and parser of ``gateway/rdg.py``, so the client costs about what FreeRDP's would.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import os
import random
import ssl
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from websockets.frames import Opcode
from websockets.protocol import Protocol, Side, State

from gateway import rdg
from gateway.httpupgrade import websocket_accept
from wire import rdcleanpath, x224

READ_SIZE = 1 << 18
SETUP_TIMEOUT = 30.0
MAX_HEAD = 16 * 1024


class StreamError(Exception):
    """The stream could not be opened or broke mid-way (the message says where)."""


class GatewayRefused(StreamError):
    def __init__(self, what: str, code: int, after: float = 0.0) -> None:
        super().__init__(f"{what} refused: {rdg.describe_code(code)}")
        self.code = code
        self.after = after  # seconds from TUNNEL_CREATE sent to the refusal received (0 before that)


class TcpStream:
    """A plain TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> TcpStream:
        reader, writer = await asyncio.open_connection(host, port, limit=READ_SIZE)
        return cls(reader, writer)

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read(self) -> bytes:
        return await self.reader.read(READ_SIZE)

    async def close(self) -> None:
        await _close(self.writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    try:
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 5)
    except (ConnectionError, ssl.SSLError, TimeoutError, OSError):
        pass


async def _read_head(reader: asyncio.StreamReader) -> str:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise StreamError(f"no HTTP response head: {exc.__class__.__name__}") from None
    if len(head) > MAX_HEAD:
        raise StreamError("HTTP response head too long")
    return head.decode("latin-1")


def _check_switching(head: str, key: str) -> None:
    lines = head.split("\r\n")
    if not lines[0].startswith("HTTP/1.1 101"):
        raise StreamError(f"upgrade refused: {lines[0][:80]!r}")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    if headers.get("sec-websocket-accept") != websocket_accept(key):
        raise StreamError("wrong Sec-WebSocket-Accept")


class MaskedFraming:
    """Client-side WebSocket framing after an upgrade: masked frames out, payloads of unmasked frames in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.protocol = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
        self.eof = False

    def frame(self, payload: bytes | memoryview) -> bytes:
        """A masked binary frame; b"" once the WebSocket is closing (the peer closed first)."""
        protocol = self.protocol
        if protocol.state is not State.OPEN:
            return b""
        protocol.send_binary(payload)
        return b"".join(protocol.data_to_send())

    async def payloads(self) -> list[bytes]:
        """The binary payloads completed by the next socket read; [] and ``eof`` set at the end."""
        protocol = self.protocol
        while True:
            chunk = await self.reader.read(READ_SIZE)
            if not chunk:
                self.eof = True
                return []
            protocol.receive_data(chunk)
            out = [frame.data for frame in protocol.events_received()
                   if frame.opcode is Opcode.BINARY or frame.opcode is Opcode.CONT]
            control = protocol.data_to_send()  # pongs, the close echo
            if control:
                self.writer.writelines([c for c in control if c])
            if protocol.state is not State.OPEN:
                self.eof = True
                return [p for p in out if p]
            if out:
                return out


class WebSocketStream:
    """A standard WebSocket client (for websockify): ``GET`` upgrade, binary frames both ways."""

    def __init__(self, framing: MaskedFraming) -> None:
        self.framing = framing

    @classmethod
    async def open(cls, host: str, port: int, path: str = "/", tls: ssl.SSLContext | None = None) -> WebSocketStream:
        reader, writer = await asyncio.open_connection(host, port, ssl=tls, limit=READ_SIZE)
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        writer.write((
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode("ascii"))
        _check_switching(await _read_head(reader), key)
        return cls(MaskedFraming(reader, writer))

    async def write(self, data: bytes) -> None:
        framing = self.framing
        framing.writer.write(framing.frame(data))
        await framing.writer.drain()

    async def read(self) -> bytes:
        if self.framing.eof:
            return b""
        payloads = await self.framing.payloads()
        return payloads[0] if len(payloads) == 1 else b"".join(payloads)

    async def close(self) -> None:
        await _close(self.framing.writer)


@dataclass
class SetupTimings:
    """Seconds spent in each step of an RD Gateway connection's setup, as the client saw them."""

    tls: float = 0.0  # TCP connect + TLS handshake
    upgrade: float = 0.0  # RDG_OUT_DATA request → 101
    handshake: float = 0.0  # HANDSHAKE_REQUEST → RESPONSE
    tunnel: float = 0.0  # TUNNEL_CREATE → TUNNEL_RESPONSE (the ticket checked, the Connection recorded)
    channel: float = 0.0  # CHANNEL_CREATE → CHANNEL_RESPONSE (placement, connect order, the agent dials in)
    setup: float = 0.0  # TUNNEL_CREATE sent → CHANNEL_RESPONSE received: the figure the target is about


def freerdp2_websocket_key() -> str:
    """What FreeRDP 2 sends as Sec-WebSocket-Key: 15 random characters in 0x40-0x5F, not base64."""
    return "".join(chr((random.getrandbits(8) | 0x40) & 0x5F) for _ in range(15))


def client_tls_context(ca_file: Path | str) -> ssl.SSLContext:
    """Verify the server against ``ca_file`` only (the plane's /ca.pem, or a bench relay's own certificate),
    as a real client does: the handshake costs the same, and nothing here ignores a certificate."""
    return ssl.create_default_context(cafile=str(ca_file))


class RdgStream:
    """One RD Gateway tunnel and channel, as FreeRDP 2.11 opens them (WebSocket transport, PAA ticket)."""

    def __init__(self, framing: MaskedFraming) -> None:
        self.framing = framing
        self.timings = SetupTimings()
        self._pending = b""  # the start of a TSGU packet that spans frames
        self._closed = False

    @classmethod
    async def open(cls, host: str, port: int, ticket: str, resource: str, *, rdp_port: int = 3389,
                   client_name: str = "bench", ssl_context: ssl.SSLContext) -> RdgStream:
        """TLS, the upgrade and the TSGU setup; raises GatewayRefused when the gateway says no."""
        clock = time.perf_counter
        started = clock()
        reader, writer = await asyncio.open_connection(host, port, ssl=ssl_context,
                                                       limit=READ_SIZE)
        stream: RdgStream | None = None
        try:
            async with asyncio.timeout(SETUP_TIMEOUT):
                tls_done = clock()
                key = freerdp2_websocket_key()
                writer.write((
                    "RDG_OUT_DATA /remoteDesktopGateway/ HTTP/1.1\r\nCache-Control: no-cache\r\n"
                    "Pragma: no-cache\r\nAccept: */*\r\nUser-Agent: MS-RDGateway/1.0\r\n"
                    f"Host: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                    f"Sec-Websocket-Version: 13\r\nSec-Websocket-Key: {key}\r\n"
                    f"RDG-Connection-Id: {{{uuid.uuid4()}}}\r\nRDG-Auth-Scheme: PAA\r\nContent-Length: 0\r\n\r\n"
                ).encode("ascii"))
                _check_switching(await _read_head(reader), key)
                upgraded = clock()
                stream = cls(MaskedFraming(reader, writer))
                t = stream.timings
                t.tls, t.upgrade = tls_done - started, upgraded - tls_done

                response = await stream._exchange(rdg.build_handshake_request(), rdg.HandshakeResponse)
                if rdg.is_failure(response.error_code):
                    raise GatewayRefused("handshake", response.error_code)
                handshaken = clock()
                response = await stream._exchange(rdg.build_tunnel_create(ticket), rdg.TunnelResponse)
                if rdg.is_failure(response.status_code):
                    raise GatewayRefused("tunnel", response.status_code)
                tunnelled = clock()
                response = await stream._exchange(rdg.build_tunnel_auth(client_name), rdg.TunnelAuthResponse)
                if rdg.is_failure(response.error_code):
                    raise GatewayRefused("tunnel auth", response.error_code)
                authorised = clock()
                response = await stream._exchange(rdg.build_channel_create([resource], rdp_port), rdg.ChannelResponse)
                if rdg.is_failure(response.error_code):
                    raise GatewayRefused("channel", response.error_code, after=clock() - handshaken)
                opened = clock()
                t.handshake, t.tunnel = handshaken - upgraded, tunnelled - handshaken
                t.channel, t.setup = opened - authorised, opened - handshaken
        except TimeoutError:
            await _close(writer)
            raise StreamError(f"setup took longer than {SETUP_TIMEOUT}s") from None
        except BaseException:
            await _close(writer)
            raise
        return stream

    async def _exchange(self, packet: bytes, expected: type) -> rdg.Packet:
        """Send one setup packet and wait for the answer of type ``expected``."""
        framing = self.framing
        framing.writer.write(framing.frame(packet))
        while True:
            payloads = await framing.payloads()
            if framing.eof and not payloads:
                raise StreamError(f"the gateway closed the connection while we waited for {expected.__name__}")
            for payload in payloads:
                for answer in self._packets(payload):
                    if isinstance(answer, expected):
                        return answer
                    raise StreamError(f"expected {expected.__name__}, got {type(answer).__name__}")

    def _packets(self, payload: bytes) -> list[rdg.Packet]:
        buf = self._pending + payload if self._pending else payload
        offset, found = 0, []
        while True:
            try:
                packet, used = rdg.parse_packet(buf, offset)
            except rdg.ProtocolError as exc:
                raise StreamError(f"bad packet from the gateway: {exc}") from None
            if packet is None:
                break
            offset += used
            found.append(packet)
        self._pending = bytes(buf[offset:]) if offset < len(buf) else b""
        return found

    async def write(self, data: bytes) -> None:
        """One client write: DATA packets of at most 65,535 bytes (a 64 KiB write splits in two halves),
        one masked frame each, as FreeRDP frames them."""
        framing = self.framing
        length = len(data)
        if length <= rdg.MAX_DATA_LENGTH:
            framing.writer.write(framing.frame(rdg.build_data(data)))
        else:
            size = math.ceil(length / math.ceil(length / rdg.MAX_DATA_LENGTH))
            view = memoryview(data)
            framing.writer.writelines([framing.frame(rdg.build_data(view[i:i + size]))
                                       for i in range(0, length, size)])
        await framing.writer.drain()

    async def read(self) -> bytes:
        """The target's next bytes; b"" once the gateway closed the channel or the connection."""
        framing = self.framing
        while not self._closed:
            payloads = await framing.payloads()
            if framing.eof and not payloads:
                self._closed = True
                return b""
            data: list[bytes] = []
            for payload in payloads:
                for packet in self._packets(payload):
                    if type(packet) is rdg.DataPacket:
                        data.append(packet.data)
                    elif type(packet) is rdg.Keepalive:
                        framing.writer.write(framing.frame(rdg.build_keepalive()))
                    elif type(packet) is rdg.CloseChannel:
                        framing.writer.write(framing.frame(rdg.build_close_channel_response(0)))
                        self._closed = True
            if data:
                return data[0] if len(data) == 1 else b"".join(data)
        return b""

    async def close(self) -> None:
        await _close(self.framing.writer)


class RdpTlsStream:
    """An RDP client's own security layer over any of the streams above, as mstsc or FreeRDP run it through
    the RD Gateway (or straight to the host): the X.224 Connection Request, the host's Confirm, then TLS with
    the host over memory BIOs whose ciphertext travels through ``inner``. The host's certificate is pinned
    to ``pinned_sha256`` (the fingerprint its agent reported), as the gateway pins it on the browser path.
    ``write``/``read`` carry the RDP plaintext."""

    def __init__(self, inner, tls: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO) -> None:
        self.inner, self.tls, self.incoming, self.outgoing = inner, tls, incoming, outgoing

    @classmethod
    async def open(cls, inner, pinned_sha256: str) -> RdpTlsStream:
        try:
            await inner.write(x224.connection_request(x224.PROTOCOL_SSL, cookie="bench"))
            buf = b""
            while len(buf) < x224.TPKT_HEADER or len(buf) < x224.packet_length(buf[:x224.TPKT_HEADER]):
                data = await inner.read()
                if not data:
                    raise StreamError("the host closed before its X.224 Connection Confirm")
                buf += data
            length = x224.packet_length(buf[:x224.TPKT_HEADER])
            if x224.parse_connection_confirm(buf[:length]).selected_protocol != x224.PROTOCOL_SSL:
                raise StreamError("the host did not choose TLS")
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # pinned below instead
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            incoming.write(buf[length:])
            tls = context.wrap_bio(incoming, outgoing, server_side=False)
            stream = cls(inner, tls, incoming, outgoing)
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    await stream._flush()
                    if not await stream._fill():
                        raise StreamError("the host closed during the TLS handshake") from None
            await stream._flush()
            leaf = tls.getpeercert(binary_form=True) or b""
            if hashlib.sha256(leaf).hexdigest() != pinned_sha256.replace(":", "").lower():
                raise StreamError("the host presented another certificate than its agent reported")
        except BaseException:
            await inner.close()
            raise
        return stream

    async def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            await self.inner.write(data)

    async def _fill(self) -> bool:
        data = await self.inner.read()
        if not data:
            return False
        self.incoming.write(data)
        return True

    async def write(self, data: bytes) -> None:
        self.tls.write(data)
        await self._flush()

    async def read(self) -> bytes:
        while True:
            try:
                return self.tls.read(READ_SIZE)
            except ssl.SSLWantReadError:
                if not await self._fill():
                    return b""
            except ssl.SSLZeroReturnError:
                return b""

    async def close(self) -> None:
        await self.inner.close()


class BrowserStream(WebSocketStream):
    """The browser client of the gateway's RDCleanPath transport, as IronRDP's web client opens it: a
    WebSocket over TLS to ``/remoteDesktopGateway/rdcleanpath`` from the portal's ``Origin``, an RDCleanPath
    request with the web ticket as proxy_auth and an X.224 Connection Request choosing TLS, the answer (the
    host's Confirm and certificate chain; the gateway ran TLS with the host), then RDP plaintext as one
    masked binary message per write both ways."""

    def __init__(self, framing: MaskedFraming, chain: list[bytes]) -> None:
        super().__init__(framing)
        self.chain = chain

    @classmethod
    async def open(cls, host: str, port: int, ticket: str, origin: str, *,
                   ssl_context: ssl.SSLContext) -> BrowserStream:
        reader, writer = await asyncio.open_connection(host, port, ssl=ssl_context, limit=READ_SIZE)
        try:
            async with asyncio.timeout(SETUP_TIMEOUT):
                key = base64.b64encode(os.urandom(16)).decode("ascii")
                writer.write((
                    f"GET {rdcleanpath.WEBSOCKET_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                    f"Origin: {origin}\r\n\r\n"
                ).encode("ascii"))
                _check_switching(await _read_head(reader), key)
                framing = MaskedFraming(reader, writer)
                request = rdcleanpath.encode_request(
                    destination="bench:3389", proxy_auth=ticket,
                    x224_connection_request=x224.connection_request(
                        x224.PROTOCOL_SSL | x224.PROTOCOL_HYBRID | x224.PROTOCOL_HYBRID_EX, cookie="bench"))
                writer.write(framing.frame(request))
                answer = b""
                while True:
                    total = rdcleanpath.pdu_length(answer[:8])
                    if total is not None and len(answer) >= total:
                        break
                    payloads = await framing.payloads()
                    if framing.eof and not payloads:
                        raise StreamError("the gateway closed the WebSocket before its RDCleanPath answer")
                    answer += b"".join(payloads)
                response = rdcleanpath.decode_response(answer[:total])
                if response.error is not None:
                    raise StreamError(f"RDCleanPath refused: {response.error}")
                if len(answer) > total:
                    raise StreamError("RDP bytes in the same message as the RDCleanPath answer")
        except TimeoutError:
            await _close(writer)
            raise StreamError(f"setup took longer than {SETUP_TIMEOUT}s") from None
        except BaseException:
            await _close(writer)
            raise
        return cls(framing, list(response.server_cert_chain or []))
