"""The browser client's transport (RDCleanPath) end to end, with the real stack of test_connection.py
(serve, a real agent, xrdp) and a small Python RDCleanPath client in place of the browser: it opens
``wss://<gateway>/remoteDesktopGateway/rdcleanpath`` from the portal's Origin, sends a real X.224
Connection Request in an RDCleanPath request whose proxy_auth is a web ticket, and checks the answer: the
host's certificate chain, whose leaf is the certificate the agent reported (the gateway pins it), and
xrdp's Connection Confirm. Then it speaks plaintext RDP through the gateway's TLS: an MCS Connect Initial
(built here per [MS-RDPBCGR] 2.2.1.3), to which xrdp answers with an MCS Connect Response.

And the refusals, each recorded with its documented code, each heard by the client as an RDCleanPath
error with an HTTP status and a WebSocket close whose reason is ``<error code> activity <id>``: a drained
pool, an expired web ticket, a reused one, a foreign Origin, and a .rdp file's ticket.
"""
from __future__ import annotations

import hashlib
import re
import ssl
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.e2e.estate import POOL_NAME, Estate, estate  # noqa: F401 - the module's estate
from tests.e2e.test_transports import drained
from wire import rdcleanpath, x224

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PATH = "/remoteDesktopGateway/rdcleanpath"
RECEIVE_TIMEOUT = 20  # an upper bound for a loaded machine (the host dials in within it), not a speed test


# --- a small RDCleanPath client ------------------------------------------------------------------


@dataclass
class Answer:
    pdu: rdcleanpath.Response
    close_code: int | None = None
    close_reason: str = ""


def web_ticket(estate: Estate, *, lifetime_seconds: int | None = None, user: str = "alice") -> str:
    """A web ticket as the portal's page mints it (core.tickets.issue_web_ticket), for the user's desktop."""
    override = (f"from datetime import timedelta; from django.conf import settings;"
                f"settings.WEB_TICKET_LIFETIME = timedelta(seconds={lifetime_seconds});") if lifetime_seconds else ""
    out = estate.plane.manage("shell", "--no-imports", "-c", (
        f"{override}"
        "from django.contrib.auth import get_user_model; from feed.resources import DESKTOP, resources_for;"
        "from core.tickets import issue_web_ticket;"
        f"u = get_user_model().objects.get(username={user!r});"
        f"r = [r for r in resources_for(u) if r.kind == DESKTOP and r.host_pool_name == {POOL_NAME!r}][0];"
        "print(issue_web_ticket(user=u, application_group_id=r.application_group_id, resource=r.key,"
        " host_pool_id=r.host_pool_id, host_pool_name=r.host_pool_name))"
    )).stdout
    return out.strip().splitlines()[-1]


def file_ticket(estate: Estate, tmp_path) -> str:
    text = estate.download_rdp(tmp_path / "desktop.rdp")
    return re.search(r"^gatewayaccesstoken:s:(\S+)", text, re.MULTILINE).group(1)


def gateway_context(estate: Estate) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(estate.ca_file))
    return context


def open_browser_socket(estate: Estate, origin: str | None = None):
    url = f"wss://127.0.0.1:{estate.plane.gateway_port}{PATH}"
    return connect(url, ssl=gateway_context(estate), origin=origin or estate.plane.base_url,
                   open_timeout=RECEIVE_TIMEOUT, max_size=None, compression=None)


def request_for(ticket: str) -> bytes:
    # As IronRDP's web client sends it: a cookie and SSL|HYBRID|HYBRID_EX (PROTOCOLS.md §8).
    connection_request = x224.connection_request(
        x224.PROTOCOL_SSL | x224.PROTOCOL_HYBRID | x224.PROTOCOL_HYBRID_EX, cookie="alice")
    return rdcleanpath.encode_request(destination="somewhere-else:3389", proxy_auth=ticket,
                                      x224_connection_request=connection_request)


@contextmanager
def asking(estate: Estate, ticket: str, origin: str | None = None) -> Iterator[tuple[Answer, object]]:
    """Send the request; the answer and the socket, open while the ``with`` block runs unless refused."""
    with open_browser_socket(estate, origin) as socket:
        socket.send(request_for(ticket))
        answer = Answer(rdcleanpath.decode_response(socket.recv(timeout=RECEIVE_TIMEOUT)))
        if answer.pdu.error is not None:
            try:
                socket.recv(timeout=RECEIVE_TIMEOUT)
            except ConnectionClosed as closed:
                answer.close_code = closed.rcvd.code if closed.rcvd else None
                answer.close_reason = closed.rcvd.reason if closed.rcvd else ""
        yield answer, socket


def ask(estate: Estate, ticket: str, origin: str | None = None) -> Answer:
    with asking(estate, ticket, origin) as (answer, _):
        return answer


def connection(estate: Estate, activity_id: str) -> dict:
    status, body = estate.api("GET", f"/api/v1/connections/?activity_id={activity_id}")
    assert status == 200, body
    matches = [c for c in body["results"] if c["activity_id"] == activity_id]
    assert matches, (activity_id, body)
    return matches[0]


def refused_with(estate: Estate, answer: Answer, code: str, http_status: int) -> dict:
    """The answer is an RDCleanPath error with ``http_status``, closed with ``<code> activity <id>``, and
    the Connection of that activity failed with ``code`` on the browser transport."""
    assert answer.pdu.error is not None, answer
    assert answer.pdu.error.http_status_code == http_status, answer
    shown = re.fullmatch(r"(\S+) activity (\S+)", answer.close_reason)
    assert shown and shown.group(1) == code, answer
    assert 4400 <= (answer.close_code or 0) <= 4599, answer
    record = connection(estate, shown.group(2))
    assert (record["state"], record["error_code"], record["transport"]) == ("failed", code, "rdcleanpath"), record
    return record


# --- MCS Connect Initial ([MS-RDPBCGR] 2.2.1.3, T.125, T.124) ------------------------------------------


def _ber_length(n: int) -> bytes:
    return bytes([n]) if n < 0x80 else (b"\x81" + bytes([n]) if n < 0x100 else b"\x82" + n.to_bytes(2, "big"))


def _ber(tag: bytes, body: bytes) -> bytes:
    return tag + _ber_length(len(body)) + body


def _domain_parameters(*values: int) -> bytes:
    return _ber(b"\x30", b"".join(_ber(b"\x02", v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big")) for v in values))


def _per_length(n: int) -> bytes:
    return bytes([n]) if n < 0x80 else (0x8000 | n).to_bytes(2, "big")


def mcs_connect_initial() -> bytes:
    """A client MCS Connect Initial with core (TLS selected, 800x600, 16 bpp), security and network data,
    in an X.224 Data TPDU: the first plaintext a client sends after the TLS handshake."""
    core = struct.pack("<IHHHHII", 0x00080004, 800, 600, 0xCA01, 0xAA03, 0x409, 2600)
    core += "gateway-e2e".encode("utf-16-le").ljust(32, b"\0")
    core += struct.pack("<III", 4, 0, 12) + bytes(64)
    core += struct.pack("<HHIHHH", 0xCA01, 1, 0, 16, 0x000F, 0x0001) + bytes(64)
    core += struct.pack("<BBI", 0, 0, x224.PROTOCOL_SSL)
    blocks = (struct.pack("<HH", 0xC001, 4 + len(core)) + core
              + struct.pack("<HHII", 0xC002, 12, 0x1B, 0)
              + struct.pack("<HHI", 0xC003, 8, 0))
    inner = bytes.fromhex("00080010 0001c000 44756361") + _per_length(len(blocks)) + blocks
    gcc = bytes.fromhex("00050014 7c0001") + _per_length(len(inner)) + inner
    body = (_ber(b"\x04", b"\x01") + _ber(b"\x04", b"\x01") + _ber(b"\x01", b"\xff")
            + _domain_parameters(34, 2, 0, 1, 0, 1, 65535, 2) + _domain_parameters(1, 1, 1, 1, 0, 1, 1056, 2)
            + _domain_parameters(65535, 64535, 65535, 1, 0, 1, 65535, 2) + _ber(b"\x04", gcc))
    return x224.tpkt(b"\x02\xf0\x80" + _ber(b"\x7f\x65", body))


def is_mcs_connect_response(data: bytes) -> bool:
    """A TPKT with an X.224 Data TPDU holding a BER Connect-Response (application 102)."""
    return len(data) > 9 and data[0] == x224.TPKT_VERSION and data[4:7] == b"\x02\xf0\x80" and data[7:9] == b"\x7f\x66"


# --- the tests ---------------------------------------------------------------------------------


def test_a_browser_client_reaches_xrdp_over_rdcleanpath_with_the_host_certificate_pinned(estate: Estate):
    ticket = web_ticket(estate)
    before = estate.connection_count()

    with asking(estate, ticket) as (answer, socket):
        assert answer.pdu.error is None, answer
        chain = answer.pdu.server_cert_chain
        assert chain, answer
        confirm = x224.parse_connection_confirm(answer.pdu.x224_connection_pdu)
        assert confirm.selected_protocol == x224.PROTOCOL_SSL  # xrdp chose TLS; the gateway ran it
        leaf_sha256 = hashlib.sha256(chain[0]).hexdigest()
        assert leaf_sha256 == estate.presented_rdp_certificate() != ""
        assert answer.pdu.server_addr and ":" in answer.pdu.server_addr

        socket.send(mcs_connect_initial())
        received = b""
        deadline = time.monotonic() + RECEIVE_TIMEOUT
        while len(received) < 9 or len(received) < x224.packet_length(received[:4]):
            received += socket.recv(timeout=max(0.1, deadline - time.monotonic()))
        assert is_mcs_connect_response(received), received[:16].hex()

    assert estate.connection_count() == before + 1
    record = estate.last_connection()
    assert record["transport"] == "rdcleanpath" and record["username"] == "alice"
    assert record["host_rdp_certificate_sha256"] == leaf_sha256
    assert record["relay_started_at"], record


def test_a_reused_web_ticket_is_refused_and_recorded(estate: Estate):
    ticket = web_ticket(estate)
    first = ask(estate, ticket)
    assert first.pdu.error is None, first

    again = ask(estate, ticket)

    refused_with(estate, again, "ConnectionFailedTicketAlreadyUsed", 400)


def test_an_expired_web_ticket_is_refused_and_recorded(estate: Estate):
    ticket = web_ticket(estate, lifetime_seconds=1)
    time.sleep(2.1)  # tickets carry whole seconds

    answer = ask(estate, ticket)

    refused_with(estate, answer, "ConnectionFailedTicketExpired", 400)


def test_a_foreign_origin_is_refused_and_recorded_without_using_the_ticket(estate: Estate):
    ticket = web_ticket(estate)

    answer = ask(estate, ticket, origin="https://evil.example")

    record = refused_with(estate, answer, "ConnectionFailedOriginNotAllowed", 400)
    assert record["username"] == "alice"
    # The ticket was not consumed: the portal's own page can still use it.
    retry = ask(estate, ticket)
    assert retry.pdu.error is None, retry


def test_an_rdp_files_ticket_is_refused_on_the_browser_transport(estate: Estate, tmp_path):
    answer = ask(estate, file_ticket(estate, tmp_path))

    refused_with(estate, answer, "ConnectionFailedTicketWrongClient", 400)


def test_a_drained_pool_is_refused_and_recorded(estate: Estate):
    ticket = web_ticket(estate)
    with drained(estate):
        answer = ask(estate, ticket)

    refused_with(estate, answer, "ConnectionFailedNoHealthyRdshAvailable", 503)


@contextmanager
def reported_fingerprint(estate: Estate, sha256: str) -> Iterator[None]:
    """The host's recorded RDP fingerprint replaced for a ``with`` block (as if its agent had reported
    another certificate), then put back."""
    def set_to(value: str) -> None:
        estate.plane.manage("shell", "--no-imports", "-c", (
            "from broker.models import SessionHost;"
            f"SessionHost.objects.filter(name={estate.host_name!r}).update(rdp_certificate_sha256={value!r})"))

    genuine = estate.host()["rdp_certificate_sha256"]
    set_to(sha256)
    try:
        yield
    finally:
        set_to(genuine)


def test_a_host_presenting_another_certificate_than_its_agent_reported_is_refused(estate: Estate):
    ticket = web_ticket(estate)
    with reported_fingerprint(estate, "ab" * 32):
        answer = ask(estate, ticket)

    record = refused_with(estate, answer, "ConnectionFailedHostCertificateMismatch", 502)
    assert answer.pdu.server_cert_chain is None  # nothing of the host's TLS reached the browser
    assert record["host_rdp_certificate_sha256"] == "ab" * 32
