"""The browser transport's bridge (gateway/transports/rdcleanpath.py) in process: its TLS client runs over
memory BIOs through a real Relay to a scripted session host (a real TLS server on ``ssl.SSLObject`` with
a throwaway certificate, answering the X.224 request as xrdp does), and its browser side writes real
WebSocket frames to a socket. The end-to-end tests (tests/e2e/test_rdcleanpath.py) run the same path
against xrdp through serve and a real agent.
"""
from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
import struct

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway import httpupgrade
from gateway.records import refusal_for
from gateway.relay import Relay, Side
from gateway.transports import rdcleanpath as transport
from gateway.transports.stream import ClientStream
from gateway.wsframing import ServerWebSocket
from testbed.xrdp import self_signed_certificate
from testbed import rdpbitmap_vectors as v
from tests.wire.test_rdpbitmap import drawn
from wire import rdcleanpath, rdpbitmap, x224
from wire.errors import ErrorCode

E = ErrorCode
REQUEST = x224.connection_request(x224.PROTOCOL_SSL | x224.PROTOCOL_HYBRID, cookie="alice")


def confirm(protocol: int | None = x224.PROTOCOL_SSL, failure: int | None = None) -> bytes:
    """A Connection Confirm as xrdp sends it ([MS-RDPBCGR] 2.2.1.2)."""
    negotiation = b""
    if protocol is not None:
        negotiation = struct.pack("<BBHI", x224.NEG_RESPONSE, 0, 8, protocol)
    if failure is not None:
        negotiation = struct.pack("<BBHI", x224.NEG_FAILURE, 0, 8, failure)
    return x224.tpkt(struct.pack(">BBHHB", 6 + len(negotiation), x224.CONNECTION_CONFIRM, 0, 0x1234, 0) + negotiation)


class ScriptedHost:
    """The relay's host end: answers the X.224 request with ``answer``, then is a TLS server that echoes
    plaintext back as one TPKT ``echo:<data>`` (RDP framing, which the bridge's bitmap rewriter passes through
    unchanged)."""

    def __init__(self, relay: Relay, answer: bytes, certificate: tuple[bytes, bytes] | None, tmp_path) -> None:
        self.relay, self.answer = relay, answer
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = None
        self.plaintext = b""
        if certificate is not None:
            (tmp_path / "host.pem").write_bytes(certificate[0] + certificate[1])
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tmp_path / "host.pem")
            self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.x224_done = False
        self.tasks: set[asyncio.Task] = set()

    async def send(self, data: bytes) -> None:
        if not self.x224_done:
            assert data == REQUEST
            self.x224_done = True
            self._later(self.answer)
            return
        self.incoming.write(data)
        try:
            self.tls.do_handshake()
            while True:
                chunk = self.tls.read(4096)
                if not chunk:
                    break
                self.plaintext += chunk
                self.tls.write(x224.tpkt(b"echo:" + chunk))
        except ssl.SSLWantReadError:
            pass
        self._later(self.outgoing.read())

    async def push(self, plaintext: bytes) -> None:
        """Send ``plaintext`` to the browser through TLS, as xrdp does (waits while the relay waits)."""
        self.tls.write(plaintext)
        await self.relay.deliver(Side.HOST, self.outgoing.read())

    def _later(self, data: bytes) -> None:
        if data:  # as from the network: on the loop's next turn
            task = asyncio.ensure_future(self.relay.deliver(Side.HOST, data))
            self.tasks.add(task)

    def close(self, reason: str) -> None:
        pass


async def browser_pair() -> tuple[ClientStream, socket.socket]:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    theirs.setblocking(False)
    return ClientStream(reader, writer), theirs


async def bridge(tmp_path, answer: bytes, certificate=None, pinned: str = ""):
    relay = Relay("activity-1")
    stream, browser = await browser_pair()
    end = transport.BrowserEnd(stream, ServerWebSocket())
    end.relay = relay
    host = ScriptedHost(relay, answer, certificate, tmp_path)
    await relay.attach(Side.CLIENT, end)
    await relay.attach(Side.HOST, host)
    return end, host, browser, await _try(end.negotiate(REQUEST, pinned))


async def _try(coroutine):
    try:
        return await coroutine
    except transport.BridgeRefusal as refusal:
        return refusal


def certificate_and_fingerprint() -> tuple[tuple[bytes, bytes], str]:
    cert_pem, key_pem = self_signed_certificate("e2e-host", ("e2e-pool",))
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return (cert_pem, key_pem), hashlib.sha256(der).hexdigest()


async def test_it_runs_tls_through_the_relay_and_answers_with_the_pinned_chain(tmp_path):
    certificate, fingerprint = certificate_and_fingerprint()

    end, host, browser, outcome = await bridge(tmp_path, confirm(), certificate, pinned=fingerprint.upper())

    cc, chain = outcome
    assert cc == confirm() and hashlib.sha256(chain[0]).hexdigest() == fingerprint
    # Plaintext both ways: the browser's message reaches the host through TLS, the answer comes back
    # as one binary WebSocket frame.
    await end.start()
    await end.from_browser(b"mcs connect initial")
    for _ in range(50):
        await asyncio.sleep(0.01)
        try:
            received = browser.recv(65536)
        except BlockingIOError:
            continue
        break
    assert host.plaintext == b"mcs connect initial"
    echoed = x224.tpkt(b"echo:mcs connect initial")
    assert received == b"\x82" + bytes([len(echoed)]) + echoed
    browser.close()


async def test_a_browser_that_reads_slowly_holds_the_host_back(tmp_path):
    """Backpressure: while the browser reads nothing, the host's deliveries wait and what the gateway
    holds for the browser stays bounded; once it reads, everything arrives."""
    certificate, fingerprint = certificate_and_fingerprint()
    end, host, browser, _ = await bridge(tmp_path, confirm(), certificate, pinned=fingerprint)
    await end.start()
    chunk, count = b"x" * 65536, 128  # 8 MiB, far more than the socket buffers hold

    async def host_sends() -> None:
        for _ in range(count):
            await host.push(chunk)

    sending = asyncio.ensure_future(host_sends())
    await asyncio.sleep(0.5)
    assert not sending.done()
    assert end.stream.writer.transport.get_write_buffer_size() < 1 << 20

    received = 0
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(20):
        while not (sending.done() and received >= count * len(chunk)):
            data = await loop.sock_recv(browser, 1 << 20)
            assert data
            received += len(data)
    await sending
    browser.close()


async def test_a_browser_that_sends_at_once_after_its_answer_waits_for_the_relay(tmp_path):
    """Once the browser has its answer it may send at once, before the relay runs (the record of its start
    is still being written): its messages wait, nothing is held beyond the first, and nothing is refused as
    "too much before the handshake" (bench/browser.py's client → host transfer found it)."""
    certificate, fingerprint = certificate_and_fingerprint()
    end, host, browser, _ = await bridge(tmp_path, confirm(), certificate, pinned=fingerprint)
    end.answered = True
    chunk, count = b"y" * 65536, 24  # 1.5 MiB, more than MAX_EARLY_BYTES

    async def browser_sends() -> None:
        for _ in range(count):
            await end.from_browser(chunk)

    sending = asyncio.ensure_future(browser_sends())
    await asyncio.sleep(0.1)
    assert not sending.done() and not end.early and end.closed_reason is None
    await end.start()
    async with asyncio.timeout(20):
        await sending
        while len(host.plaintext) < count * len(chunk):
            await asyncio.sleep(0.01)
    assert host.plaintext == chunk * count and end.closed_reason is None
    browser.close()


async def test_a_relay_that_ends_after_the_answer_closes_the_browsers_websocket(tmp_path):
    certificate, fingerprint = certificate_and_fingerprint()
    end, host, browser, _ = await bridge(tmp_path, confirm(), certificate, pinned=fingerprint)
    end.answered = True

    end.close("the host went away")

    loop = asyncio.get_running_loop()
    async with asyncio.timeout(5):
        data = await loop.sock_recv(browser, 65536)
    assert data[0] == 0x88  # a WebSocket close frame, not a browser left waiting
    browser.close()


async def test_it_refuses_a_host_whose_certificate_is_not_the_reported_one(tmp_path):
    certificate, _ = certificate_and_fingerprint()

    _, _, _, outcome = await bridge(tmp_path, confirm(), certificate, pinned="00" * 32)

    assert isinstance(outcome, transport.BridgeRefusal)
    assert outcome.code == E.ConnectionFailedHostCertificateMismatch and outcome.confirm is None


async def test_it_refuses_when_the_agent_reported_no_certificate(tmp_path):
    certificate, _ = certificate_and_fingerprint()

    _, _, _, outcome = await bridge(tmp_path, confirm(), certificate, pinned="")

    assert outcome.code == E.ConnectionFailedHostCertificateMismatch


@pytest.mark.parametrize("answer", [confirm(x224.PROTOCOL_RDP), confirm(None), confirm(None, failure=2)],
                         ids=["standard-rdp-chosen", "no-negotiation", "negotiation-failure"])
async def test_it_refuses_a_host_that_does_not_choose_tls_with_its_confirm(tmp_path, answer):
    _, _, _, outcome = await bridge(tmp_path, answer)

    assert outcome.code == E.ConnectionFailedHostSecurityNegotiation
    assert outcome.confirm == answer  # the browser gets it in a negotiation error (code 2)


async def test_it_refuses_a_host_that_answers_with_something_else(tmp_path):
    _, _, _, outcome = await bridge(tmp_path, x224.disconnect_request())

    assert outcome.code == E.ConnectionFailedHostSecurityNegotiation and outcome.confirm is None


async def test_a_silent_host_is_refused_after_the_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(transport, "HOST_HANDSHAKE_TIMEOUT", 0.2)
    silent = b""  # ScriptedHost sends nothing for an empty answer

    _, _, _, outcome = await bridge(tmp_path, silent)

    assert outcome.code == E.ConnectionFailedHostListenerUnreachable


def test_a_refusal_is_an_rdcleanpath_error_with_the_http_status_of_its_code():
    drained = rdcleanpath.decode_response(transport.refusal_pdu(
        refusal_for(E.ConnectionFailedNoHealthyRdshAvailable, "", "a-1")))
    assert drained.error == rdcleanpath.ErrorInfo(1, http_status_code=503)
    negotiation = rdcleanpath.decode_response(transport.refusal_pdu(
        refusal_for(E.ConnectionFailedHostSecurityNegotiation, "", "a-1"), confirm(x224.PROTOCOL_RDP)))
    assert negotiation.error == rdcleanpath.ErrorInfo(2, http_status_code=502)
    assert negotiation.x224_connection_pdu == confirm(x224.PROTOCOL_RDP)
    used = rdcleanpath.decode_response(transport.refusal_pdu(refusal_for(E.ConnectionFailedTicketAlreadyUsed, "", "")))
    assert used.error.http_status_code == 400


def head(origin: str | None, path: str = transport.PATH) -> httpupgrade.RequestHead:
    lines = [f"GET {path} HTTP/1.1", "Host: gw", "Connection: Upgrade", "Upgrade: websocket",
             "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    parsed, _ = httpupgrade.parse_request_head(("\r\n".join(lines) + "\r\n\r\n").encode())
    return parsed


PORTAL = ("https://portal.example", "https://127.0.0.1:8000")


@pytest.mark.parametrize("origin, allowed", [
    ("https://portal.example", True),
    ("https://PORTAL.example:443", True),
    ("https://127.0.0.1:8000", True),
    ("http://portal.example", False),
    ("https://portal.example:8443", False),
    ("https://evil.example", False),
    ("null", False),
    (None, False),
])
def test_only_the_portals_origins_are_allowed(origin, allowed):
    assert transport.origin_allowed(head(origin), PORTAL)[0] is allowed


def test_the_transport_has_its_own_path_beside_the_rd_gateways():
    assert transport.is_rdcleanpath_path(head(None, "/remoteDesktopGateway/rdcleanpath"))
    assert transport.is_rdcleanpath_path(head(None, "/remotedesktopgateway/RDCleanPath/"))
    assert not transport.is_rdcleanpath_path(head(None, "/remoteDesktopGateway/"))


def test_the_bridge_re_presents_xrdps_padded_bitmaps_for_the_web_client():
    """Each connection's host → browser hook is the bitmap rewriter (wire/rdpbitmap.py): a rectangle
    xrdp padded to a multiple of 4 pixels reaches the browser at its true width; other PDUs pass as they
    are; and a stream that is not RDP framing is an error the bridge ends the connection on."""
    transform = transport.new_server_transform()
    assert transform(v.DEMAND_ACTIVE) == v.DEMAND_ACTIVE
    block = transform(v.GREEN_BLOCK)
    assert block != v.GREEN_BLOCK and drawn(block) == drawn(v.GREEN_BLOCK_FIXED)
    assert transform(v.LICENSE) == v.LICENSE
    with pytest.raises(rdpbitmap.RdpStreamError):
        transport.new_server_transform()(b"echo: not RDP")
