"""The browser client: RDCleanPath over a WebSocket (PROTOCOLS.md §8; IronRDP's web client).

``GET /remoteDesktopGateway/rdcleanpath`` with an RFC 6455 upgrade, from a page of the portal (its
``Origin`` must be one of settings.WEB_ORIGINS, GatewayConfig.web_origins). The browser's first binary message is an RDCleanPath
request (wire/rdcleanpath.py) whose ``proxy_auth`` is a single-use web ticket (core.tickets.issue_web_ticket;
never in the URL) and whose ``destination`` is ignored: the ticket's host pool decides, as on the raw
WebSocket transport. The setup is every transport's (ticket → record → placement → the host's agent dials
in, transports/setup.py); then the gateway itself speaks to the host through the relay:

1. it forwards the browser's X.224 Connection Request and reads the host's Connection Confirm;
2. unless the host chose TLS (or CredSSP, which runs inside TLS) it refuses (negotiation error, with the
   confirm);
3. it runs the TLS client handshake towards the host over ``ssl.MemoryBIO``s whose ciphertext travels
   through the relay and the agent link (no socket to the host of its own);
4. it pins the host's certificate: the SHA-256 of the presented leaf must equal the fingerprint the
   host's agent reported (SessionHost.rdp_certificate_sha256, read once at setup);
5. it answers the browser with the confirm, the chain (DER, leaf first) and ``server_addr``, and from then
   on relays: each binary message from the browser is RDP plaintext written into the TLS connection, and
   the host's plaintext goes to the browser as binary messages, through ``transform_server_bytes``.

Backpressure is the relay's: the browser's reader waits while the agent link drains, and the host's pump
waits while the browser's WebSocket drains. Payloads are never logged.

Every refusal is a failed Connection with its documented code (setup.py records it; a request that is not
RDCleanPath at all proves no user and is only logged). The browser hears one RDCleanPath error PDU —
error_code 2 with the host's confirm for a negotiation failure, 1 otherwise, and the HTTP status of wst.py's
table (400 the client's side, 502 host unreachable or untrusted, 503 none available, 504 none arrived in
time, 500 otherwise) — then a WebSocket close with wst.py's close code and the reason
``<error code> activity <activity id>``, which the page shows with the code's message.
"""
from __future__ import annotations

import _ssl
import asyncio
import hashlib
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from websockets.datastructures import MultipleValuesError

from broker.admission import Denial
from broker.choices import ConnectionTransport
from core.environment import normalize_origin
from gateway import httpupgrade, records
from gateway.relay import Relay, Side
from gateway.transports import wst
from gateway.transports.setup import ClientSetup, cancel_reader, in_thread
from gateway.transports.stream import READ_SIZE, ClientStream
from gateway.wsframing import ServerWebSocket
from wire import rdcleanpath, rdpbitmap, x224
from wire.errors import ErrorCode

if TYPE_CHECKING:
    from gateway.server import GatewayServer

log = logging.getLogger(__name__)

E = ErrorCode
PATH = rdcleanpath.WEBSOCKET_PATH
FIRST_MESSAGE_TIMEOUT = 10.0  # seconds for the browser's request after the upgrade (preauth's deadline too)
HOST_HANDSHAKE_TIMEOUT = 10.0  # seconds for the host's X.224 confirm and TLS handshake, each
MAX_HANDSHAKE_BYTES = 64 * 1024  # what the host may send before the handshake is done (a chain is ~2-8 KiB)
MAX_EARLY_BYTES = 1 << 20  # browser plaintext held until the TLS connection is up (IronRDP sends none)
# The protocols whose security layer is TLS (CredSSP runs inside it); RDP's own security is refused.
TLS_PROTOCOLS = x224.PROTOCOL_SSL | x224.PROTOCOL_HYBRID | x224.PROTOCOL_HYBRID_EX
# IronRDP parses server_addr as a socket address (and puts it in its Client Info); the host's RDP listener
# as its agent reaches it by default is the truthful one we know.
SERVER_ADDR = "127.0.0.1:3389"

ServerBytesTransform = Callable[[bytes], bytes]


def new_server_transform() -> ServerBytesTransform:
    """The hook on the host → browser plaintext: one per connection (it keeps state across chunks), called
    with each chunk of RDP plaintext the host's TLS yields, before it is framed to the browser; it returns
    the bytes to send (b"" while a PDU is incomplete). It re-presents bitmap rectangles whose width the
    server padded (xrdp does) at their true width, which the published IronRDP web client (0.7.0) needs to
    draw them without shear (wire/rdpbitmap.py); everything else passes byte for byte. It raises
    ``RdpStreamError`` when the host's stream is not RDP framing at all."""
    return rdpbitmap.ServerBitmapFix().feed


def is_rdcleanpath_path(head: httpupgrade.RequestHead) -> bool:
    return head.path.lower().rstrip("/") == PATH.lower()


def origin_allowed(head: httpupgrade.RequestHead, allowed: tuple[str, ...]) -> tuple[bool, str]:
    """Whether the request's Origin is one of the portal's, and the Origin as sent (for the record)."""
    try:
        value = head.headers.get("Origin") or ""
    except MultipleValuesError:
        return False, "(several Origin headers)"
    origin = normalize_origin(value) if value else None
    shown = value[:200] if value.isprintable() else "(an unprintable Origin)"  # it goes into the record
    return origin is not None and origin in allowed, shown


class BridgeRefusal(Exception):
    """The host's side of the handshake failed: a documented code, and the host's confirm for a
    negotiation failure (error_code 2)."""

    def __init__(self, code: str, message: str, confirm: bytes | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.confirm = code, message, confirm


class BrowserEnd:
    """The relay's client end: TLS towards the host over memory BIOs, plaintext to and from the browser.

    Before the handshake, the host's bytes collect in ``inbox``; afterwards ``send`` feeds them to TLS and
    forwards the plaintext (the relay calls it from the agent link's pump, so awaiting the browser's
    drain here is the backpressure towards the host).
    """

    def __init__(self, stream: ClientStream, ws: ServerWebSocket,
                 transform_server_bytes: ServerBytesTransform | None = None) -> None:
        self.stream, self.ws = stream, ws
        self.transform_server_bytes = transform_server_bytes or new_server_transform()
        self.relay: Relay | None = None
        self.inbox = bytearray()
        self.arrived = asyncio.Event()
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls: ssl.SSLObject | None = None
        self.started = False
        # The browser has its answer and may send at once; until the relay runs (start) its messages wait
        # for ``running`` and the frames reader reads no more from it (backpressure, nothing held here).
        self.answered = False
        self.running = asyncio.Event()
        self.early: list[bytes] = []
        self.early_bytes = 0
        self.closed_reason: str | None = None

    # --- the relay's side ----------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        """Bytes from the host."""
        if not self.started:
            if self.tls is None:
                self.inbox += data
            else:
                self.incoming.write(data)
            if len(self.inbox) + self.incoming.pending > MAX_HANDSHAKE_BYTES:
                self._end(Side.HOST, f"the host sent more than {MAX_HANDSHAKE_BYTES} bytes before the handshake ended")
            self.arrived.set()
            return
        self.incoming.write(data)
        await self._to_browser()

    def close(self, reason: str) -> None:
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        self.arrived.set()  # wake a handshake waiting for the host
        self.running.set()  # and a browser message waiting for the relay to run
        if self.started or self.answered:
            self.shut(1000, "")

    # --- the handshake towards the host ----------------------------------------------------------

    async def negotiate(self, connection_request: bytes, pinned_sha256: str) -> tuple[bytes, list[bytes]]:
        """Steps 1-4 of the module docstring: the host's confirm and certificate chain (leaf first), or
        BridgeRefusal."""
        relay = self.relay
        assert relay is not None
        await relay.deliver(Side.CLIENT, connection_request)
        confirm = await self._read_confirm()
        try:
            parsed = x224.parse_connection_confirm(confirm)
        except x224.X224Error as exc:
            raise BridgeRefusal(E.ConnectionFailedHostSecurityNegotiation,
                                f"The host's answer to the X.224 request is not a Connection Confirm ({exc}).") from None
        if parsed.failure is not None or not (parsed.selected_protocol or 0) & TLS_PROTOCOLS:
            why = parsed.failure or ("standard RDP security" if parsed.selected_protocol is None
                                     else f"protocol {parsed.selected_protocol:#x}")
            raise BridgeRefusal(E.ConnectionFailedHostSecurityNegotiation,
                                f"The host did not choose TLS ({why}).", confirm)
        leftover = bytes(self.inbox[len(confirm):])
        self.inbox.clear()
        self.tls = _client_context().wrap_bio(self.incoming, self.outgoing, server_side=False)
        if leftover:
            self.incoming.write(leftover)
        await self._handshake()
        leaf = self.tls.getpeercert(binary_form=True) or b""
        presented = hashlib.sha256(leaf).hexdigest()
        pinned = pinned_sha256.replace(":", "").lower()
        if not pinned:
            raise BridgeRefusal(E.ConnectionFailedHostCertificateMismatch,
                                "The host's agent has reported no RDP certificate to pin.")
        if presented != pinned:
            raise BridgeRefusal(E.ConnectionFailedHostCertificateMismatch,
                                f"The host presented {presented[:16]}…, its agent reported {pinned[:16]}….")
        return confirm, _chain(self.tls, leaf)

    async def _read_confirm(self) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HOST_HANDSHAKE_TIMEOUT
        while True:
            if len(self.inbox) >= x224.TPKT_HEADER:
                try:
                    length = x224.packet_length(bytes(self.inbox[:x224.TPKT_HEADER]))
                except x224.X224Error as exc:
                    raise BridgeRefusal(E.ConnectionFailedHostSecurityNegotiation,
                                        f"The host's answer is not an X.224 PDU ({exc}).") from None
                if len(self.inbox) >= length:
                    return bytes(self.inbox[:length])
            await self._wait_for_host(deadline, "the X.224 Connection Confirm")

    async def _handshake(self) -> None:
        tls = self.tls
        assert tls is not None
        deadline = asyncio.get_running_loop().time() + HOST_HANDSHAKE_TIMEOUT
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush_to_host()
                await self._wait_for_host(deadline, "the TLS handshake")
            except ssl.SSLError as exc:
                raise BridgeRefusal(E.ConnectionFailedHostSecurityNegotiation,
                                    f"The TLS handshake with the host failed ({exc.reason or exc.__class__.__name__}).") from None
        await self._flush_to_host()  # the client's Finished

    async def _wait_for_host(self, deadline: float, what: str) -> None:
        if self.closed_reason is not None:
            raise BridgeRefusal(E.ConnectionFailedHostListenerUnreachable,
                                f"The host's connection ended during {what} ({self.closed_reason}).")
        self.arrived.clear()
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(max(remaining, 0)):
                await self.arrived.wait()
        except TimeoutError:
            raise BridgeRefusal(E.ConnectionFailedHostListenerUnreachable,
                                f"The host did not complete {what} within {HOST_HANDSHAKE_TIMEOUT:g} s.") from None
        if self.closed_reason is not None:
            raise BridgeRefusal(E.ConnectionFailedHostListenerUnreachable,
                                f"The host's connection ended during {what} ({self.closed_reason}).")

    # --- the relay proper ------------------------------------------------------------------------

    async def start(self) -> None:
        """The browser has its answer: forward what it sent meanwhile, and what the host sent."""
        self.started = True
        early, self.early = self.early, []
        for payload in early:
            await self.from_browser(payload)
        self.running.set()
        await self._to_browser()

    async def from_browser(self, payload: bytes) -> None:
        """One binary message of RDP plaintext from the browser, into TLS towards the host."""
        if not self.started and self.answered:
            await self.running.wait()
            if self.closed_reason is not None:
                return
        if not self.started:
            self.early_bytes += len(payload)
            if self.early_bytes > MAX_EARLY_BYTES:
                self._end(Side.CLIENT, "the browser sent too much before the handshake ended")
                return
            self.early.append(payload)
            return
        tls = self.tls
        assert tls is not None
        try:
            tls.write(payload)
        except ssl.SSLError as exc:
            self._end(Side.HOST, f"TLS towards the host failed ({exc.reason or exc.__class__.__name__})")
            return
        await self._flush_to_host()

    async def _to_browser(self) -> None:
        tls, transform = self.tls, self.transform_server_bytes
        assert tls is not None
        while self.closed_reason is None:
            try:
                plain = tls.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self._end(Side.HOST, "the host closed its TLS connection")
                return
            except ssl.SSLError as exc:
                self._end(Side.HOST, f"TLS from the host failed ({exc.reason or exc.__class__.__name__})")
                return
            if not plain:
                break
            try:
                out = transform(plain)
            except rdpbitmap.RdpStreamError as exc:
                self._end(Side.HOST, f"the host's RDP stream cannot be followed ({exc})")
                return
            if out:
                frame = self.ws.send_binary(out)
                if frame:
                    self.stream.write(frame)
                    await self.stream.drain()  # a slow browser slows the host down
        await self._flush_to_host()  # TLS may answer on its own (a key update)

    async def _flush_to_host(self) -> None:
        data = self.outgoing.read()
        if data and self.relay is not None:
            await self.relay.deliver(Side.CLIENT, data)

    def _end(self, side: Side, reason: str) -> None:
        log.info("browser connection %s: %s", self.relay.connection_id if self.relay else "-", reason)
        if self.relay is not None:
            self.relay.end(side, reason)
        else:
            self.close(reason)

    # --- answering the browser -----------------------------------------------------------------

    def ping(self) -> None:
        self.stream.write(self.ws.send_ping(b"wvd"))

    def answer(self, pdu: bytes) -> None:
        self.stream.write(self.ws.send_binary(pdu))

    def shut(self, code: int, reason: str) -> None:
        self.stream.write(self.ws.send_close(code, reason) + self.ws.data_to_send())
        self.stream.close()


def _client_context() -> ssl.SSLContext:
    """TLS towards the host: no CA check here, the leaf is pinned instead (BrowserEnd.negotiate)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _chain(tls: ssl.SSLObject, leaf: bytes) -> list[bytes]:
    """The chain the host presented, DER, leaf first (Python 3.13 has it public; 3.11 only privately);
    the leaf alone when neither is there (the client needs only the leaf's key)."""
    getter = getattr(tls, "get_unverified_chain", None) or getattr(getattr(tls, "_sslobj", None),
                                                                   "get_unverified_chain", None)
    try:
        chain = getter() if getter is not None else None
    except (ssl.SSLError, ValueError):
        chain = None
    if not chain:
        return [leaf]
    der = [cert if isinstance(cert, bytes) else cert.public_bytes(_ssl.ENCODING_DER) for cert in chain]
    return der if der and der[0] == leaf else [leaf]


def refusal_pdu(refusal: records.Refusal, confirm: bytes | None = None) -> bytes:
    """The RDCleanPath error the browser gets for a refusal (see the module docstring)."""
    return rdcleanpath.encode_error(
        error_code=rdcleanpath.NEGOTIATION_ERROR if confirm is not None else rdcleanpath.GENERAL_ERROR,
        http_status_code=wst.http_status_for(refusal.code), x224_connection_confirm=confirm)


async def read_request(stream: ClientStream, ws: ServerWebSocket) -> rdcleanpath.Request | None:
    """The browser's first message, bounded in size and time; None when the browser left. Raises
    RDCleanPathError or X224Error for a message we do not accept."""
    buf = bytearray()
    async with asyncio.timeout(FIRST_MESSAGE_TIMEOUT):
        while True:
            total = rdcleanpath.pdu_length(bytes(buf[:8]))
            if total is not None and len(buf) >= total:
                if len(buf) > total:
                    raise rdcleanpath.RDCleanPathError("more than one message before the answer")
                request = rdcleanpath.decode_request(bytes(buf))
                x224.check_connection_request(request.x224_connection_request)
                return request
            chunk = await stream.read()
            if not chunk:
                return None
            for payload in ws.receive_data(chunk):
                buf += payload
                if len(buf) > rdcleanpath.MAX_REQUEST_SIZE:
                    raise rdcleanpath.RDCleanPathError(f"more than {rdcleanpath.MAX_REQUEST_SIZE} bytes")
            stream.write(ws.data_to_send())
            if ws.should_close_transport:
                return None


async def serve(server: GatewayServer, stream: ClientStream, head: httpupgrade.RequestHead) -> None:
    """One browser connection, from its upgrade to the end of its relay."""
    key = head.websocket_key
    assert key is not None  # the dispatcher only sends upgrades here
    if not wst.is_rfc6455_key(key):
        stream.refuse(400, "Sec-WebSocket-Key must be base64 of 16 bytes (RFC 6455)")
        return
    allowed, origin = origin_allowed(head, server.config.web_origins)
    # Upgrade at once: a browser page sees no HTTP status of a refused upgrade, only the close reason.
    stream.write(httpupgrade.build_switching_protocols(key))
    ws = ServerWebSocket()
    end = BrowserEnd(stream, ws)
    try:
        request = await read_request(stream, ws)
    except TimeoutError:
        log.info("browser %s sent no RDCleanPath request in %g s", stream.address, FIRST_MESSAGE_TIMEOUT)
        _refuse_unrecorded(end, E.ConnectionFailedClientProtocolError)
        return
    except (rdcleanpath.RDCleanPathError, x224.X224Error) as exc:
        log.info("browser %s sent a request we do not accept: %s", stream.address, exc)
        _refuse_unrecorded(end, E.ConnectionFailedClientProtocolError)
        return
    if request is None:
        return
    setup = ClientSetup(server, stream.address, (stream,), transport=ConnectionTransport.RDCLEANPATH)
    denial = None if allowed else Denial(E.ConnectionFailedOriginNotAllowed,
                                         f"The WebSocket came from {origin or 'a page without an Origin'}, "
                                         "not from the portal.")
    refusal = await setup.admit(request.proxy_auth, refuse_with=denial)
    if refusal is not None:
        _refuse(end, refusal)
        return
    frames: asyncio.Task | None = None
    try:
        refusal = await setup.open_relay(end)
        if refusal is not None:
            _refuse(end, refusal)
            return
        end.relay = setup.relay
        frames = asyncio.ensure_future(_frames(stream, ws, setup, end))
        refusal = await _find_host(server, setup, end)
        if refusal is None:
            refusal, confirm, chain = await _bridge(setup, end, request)
        if refusal is not None:
            _refuse(end, refusal, None if refusal.code != E.ConnectionFailedHostSecurityNegotiation else confirm)
            setup.abandon(refusal.message)
            return
        end.answer(rdcleanpath.encode_response(server_addr=SERVER_ADDR, x224_connection_confirm=confirm,
                                               server_cert_chain=chain))
        end.answered = True
        await setup.started()
        await end.start()
        await frames
    finally:
        await cancel_reader(frames)
        if end.closed_reason is None and not ws.should_close_transport:
            end.shut(1000, "")
        await setup.finish()


async def _find_host(server: GatewayServer, setup: ClientSetup, end: BrowserEnd) -> records.Refusal | None:
    admission = setup.admission
    assert admission is not None
    instance = server.config.instance_name
    try:
        return await setup.find_host(lambda: wst.request_pool_host(admission.connection_pk, instance), end.ping)
    except Exception:  # noqa: BLE001 - a bug or a database failure: answer rather than leave the browser
        log.exception("setting up browser connection %s failed", setup.activity_id)
        return records.refusal_for(E.InternalError, "", setup.activity_id)


async def _bridge(setup: ClientSetup, end: BrowserEnd,
                  request: rdcleanpath.Request) -> tuple[records.Refusal | None, bytes | None, list[bytes]]:
    """X.224 and TLS towards the host, through the relay; a refusal is recorded here."""
    admission = setup.admission
    assert admission is not None
    try:
        pinned = await in_thread(records.host_rdp_fingerprint)(admission.connection_pk)
        confirm, chain = await end.negotiate(request.x224_connection_request, pinned)
        return None, confirm, chain
    except BridgeRefusal as refused:
        log.info("browser connection %s refused: %s (%s)", setup.activity_id, refused.code, refused.message)
        await setup.fail(refused.code, refused.message)
        return records.refusal_for(refused.code, refused.message, setup.activity_id), refused.confirm, []
    except Exception:  # noqa: BLE001 - a bug: answer and record rather than leave the browser waiting
        log.exception("bridging browser connection %s failed", setup.activity_id)
        await setup.fail(E.InternalError, "The gateway failed to bridge to the host.")
        return records.refusal_for(E.InternalError, "", setup.activity_id), None, []


def _refuse(end: BrowserEnd, refusal: records.Refusal, confirm: bytes | None = None) -> None:
    end.answer(refusal_pdu(refusal, confirm))
    end.closed_reason = refusal.code
    end.shut(wst.close_code_for(refusal.code), wst.close_reason_for(refusal))


def _refuse_unrecorded(end: BrowserEnd, code: str) -> None:
    _refuse(end, records.refusal_for(code, "", ""))


async def _frames(stream: ClientStream, ws: ServerWebSocket, setup: ClientSetup, end: BrowserEnd) -> None:
    """The browser's messages into TLS until the connection ends."""
    while not ws.should_close_transport:
        chunk = await stream.read()
        if not chunk:
            ws.receive_eof()
            setup.end(Side.CLIENT, "browser closed")
            return
        for payload in ws.receive_data(chunk):
            await end.from_browser(payload)
        stream.write(ws.data_to_send())
    if ws.failure is not None:
        log.info("browser %s WebSocket failed: %s", stream.address, ws.failure)
    setup.end(Side.CLIENT, "browser closed the WebSocket")
