"""Raw RDP over a standard WebSocket (PROTOCOLS.md §4.9 and §7, FreeRDP 3's ``wst``; our connector uses it too).

``GET /remoteDesktopGateway/`` with an RFC 6455 upgrade and the connection ticket as
``Authorization: Bearer <ticket>``. No TSGU: binary frames carry raw RDP bytes both ways, and the target
is the ticket's host pool (there is no CHANNEL_CREATE to name one). Orchestration is as for every
transport. FreeRDP 3 is pointed here with
``/gateway:url:wss://<gateway>:<port>/remoteDesktopGateway/,bearer:<ticket>``.

The 101 waits for the verdict. The ticket is checked, the broker places the connection and the session
host's reverse connection is awaited before the upgrade is answered, for up to ``UPGRADE_HOLD`` seconds,
so a refusal is almost always a plain HTTP answer: FreeRDP 3.10 acts on those at once but ignores a
WebSocket close after the upgrade and hangs until killed (its websocket.c answers the close frame and
reads on; a FIN or a reset does not end it either). It waits ``TcpConnectTimeout`` (15 s by default) for the upgrade's answer (http.c), hence
the hold's bound; a host still on its way then gets the 101 and pings, and a refusal after that can only
be a close frame.

Answers (every refusal is also a failed Connection record with its documented error code):

* Before the upgrade, an HTTP status whose reason phrase is ``<error code> activity <activity id>`` and
  whose text/plain body is ``<error code>: <message> (activity <id>)``. FreeRDP 3.10 logs the status and
  the reason phrase of every answer but 200, 401 and 403 (it treats 401 as a request to authenticate
  and 403 as AVD's load-balancer retry, and says nothing of either, wst.c), so refusals of the client's
  request are 400 rather than 401/403, and show their code and activity id there too:

  | HTTP | close code | error codes |
  | --- | --- | --- |
  | 400 | 4400 | ConnectionFailedClientProtocolError (e.g. the same connection opened twice) |
  | 400 | 4401 | the ticket codes (missing, malformed, forged, expired, revoked, already used, wrong client; with ``WWW-Authenticate: Bearer``) |
  | 400 | 4403 | ConnectionFailedUserNotAuthorized, ResourceNotFound, ResourceMismatch, NoPersonalDesktopAssigned, OriginNotAllowed |
  | 502 | 4502 | ConnectionFailedAgentDisconnected, HostListenerUnreachable, HostSecurityNegotiation, HostCertificateMismatch (the host cannot be reached, or not safely) |
  | 503 | 4503 | ConnectionFailedNoHealthyRdshAvailable, MaxSessionsReached, PersonalDesktopFailed, NoPersonalDesktopFree |
  | 504 | 4504 | ConnectionFailedOrchestrationTimeout, ReverseConnectTimeout (no host arrived in time) |
  | 500 | 4500 | InternalError and any other code |

* After the upgrade (only when the host takes longer than ``UPGRADE_HOLD``), a setup that fails sends
  one binary frame with an X.224 Disconnect Request (wire/x224.py: the answer to the client's
  Connection Request, which FreeRDP 3.10 acts on at once; it ignores a close frame, a FIN and a reset
  alike), then closes the WebSocket with the close code above and the reason
  ``<error code> activity <activity id>`` (which our connector shows; FreeRDP 3 shows no reason here).
* Once the relay runs, either side ending closes the WebSocket with 1000.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import TYPE_CHECKING

from websockets.datastructures import MultipleValuesError

from broker.choices import ConnectionTransport
from broker.models import Connection
from gateway import httpupgrade, records
from gateway.relay import Side
from gateway.transports.setup import ClientSetup, cancel_reader
from gateway.transports.stream import ClientStream
from gateway.wsframing import ServerWebSocket
from wire import x224
from wire.errors import ErrorCode, describe

if TYPE_CHECKING:
    from gateway.server import GatewayServer

log = logging.getLogger(__name__)

E = ErrorCode
CLOSE_CODES: dict[str, int] = {
    E.ConnectionFailedClientProtocolError: 4400,
    E.ConnectionFailedTicketInvalid: 4401,
    E.ConnectionFailedTicketExpired: 4401,
    E.ConnectionFailedTicketRevoked: 4401,
    E.ConnectionFailedUnsupportedAuthentication: 4401,
    E.ConnectionFailedTicketAlreadyUsed: 4401,
    E.ConnectionFailedTicketWrongClient: 4401,
    E.ConnectionFailedOriginNotAllowed: 4403,
    E.ConnectionFailedUserNotAuthorized: 4403,
    E.ConnectionFailedResourceNotFound: 4403,
    E.ConnectionFailedResourceMismatch: 4403,
    E.ConnectionFailedNoPersonalDesktopAssigned: 4403,
    E.ConnectionFailedAgentDisconnected: 4502,
    E.ConnectionFailedHostListenerUnreachable: 4502,
    E.ConnectionFailedHostSecurityNegotiation: 4502,
    E.ConnectionFailedHostCertificateMismatch: 4502,
    E.ConnectionFailedNoHealthyRdshAvailable: 4503,
    E.ConnectionFailedMaxSessionsReached: 4503,
    E.ConnectionFailedPersonalDesktopFailed: 4503,
    E.ConnectionFailedNoPersonalDesktopFree: 4503,
    E.ConnectionFailedOrchestrationTimeout: 4504,
    E.ConnectionFailedReverseConnectTimeout: 4504,
}
CLOSE_INTERNAL_ERROR = 4500
MAX_CLOSE_REASON = 123  # bytes: RFC 6455 leaves 125 for the code and the reason
# The HTTP status of a refusal before the upgrade, by its close code (the table above).
HTTP_STATUSES: dict[int, int] = {4400: 400, 4401: 400, 4403: 400, 4502: 502, 4503: 503, 4504: 504, 4500: 500}
# Seconds the 101 waits for the verdict or the host: below FreeRDP 3's 15 s wait for the answer (http.c).
UPGRADE_HOLD = 10.0


def close_code_for(error_code: str) -> int:
    """The WebSocket close code a failed setup answers with (see the table above)."""
    return CLOSE_CODES.get(error_code, CLOSE_INTERNAL_ERROR)


def http_status_for(error_code: str) -> int:
    """The HTTP status a refusal before the upgrade answers with (see the table above)."""
    return HTTP_STATUSES[close_code_for(error_code)]


def close_reason_for(refusal: records.Refusal) -> str:
    """``<error code> activity <activity id>``: what a client needs to show and to quote to support."""
    return f"{refusal.code} activity {refusal.activity_id or '-'}"[:MAX_CLOSE_REASON]


def is_rfc6455_key(key: str) -> bool:
    """A standard client's key is base64 of 16 random bytes (FreeRDP 2's 15-character key is not)."""
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def bearer_ticket(head: httpupgrade.RequestHead) -> str:
    """The ticket of ``Authorization: Bearer <ticket>``; "" when there is none (admission refuses it)."""
    try:
        value = head.headers.get("Authorization") or ""
    except MultipleValuesError:
        return ""
    scheme, _, ticket = value.strip().partition(" ")
    return ticket.strip() if scheme.lower() == "bearer" else ""


def build_refusal_response(refusal: records.Refusal) -> bytes:
    """The HTTP refusal of the upgrade: the status of the table above, ``<error code> activity <id>`` as
    the reason phrase (what FreeRDP 3 shows its user) and the message in the body (what our connector
    shows)."""
    status = http_status_for(refusal.code)
    reason = close_reason_for(refusal)
    body = f"{refusal.code}: {refusal.message} (activity {refusal.activity_id or '-'})\n".encode()
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if describe(refusal.code).stage == "ticket":
        lines.append('WWW-Authenticate: Bearer realm="remoteDesktopGateway", error="invalid_token"')
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


def request_pool_host(connection_pk: int, instance_name: str) -> records.Refusal | None:
    """The raw transport names no resource: ask for the ticket's host pool, by its current name (so a
    pool renamed since the file was issued still matches)."""
    pool_name = Connection.objects.filter(pk=connection_pk).values_list("host_pool__name", flat=True).first()
    return records.request_channel(connection_pk, (pool_name or "",), 0, "", instance_name)


class RawClientEnd:
    """The relay's client end: the 101 once the verdict is in, then RDP bytes out as binary frames."""

    def __init__(self, stream: ClientStream, ws: ServerWebSocket, key: str) -> None:
        self.stream, self.ws, self.key = stream, ws, key
        self.upgraded = asyncio.Event()
        self.started = False
        self.closed_reason: str | None = None

    def upgrade(self, activity_id: str) -> None:
        """Answer the upgrade (once)."""
        if not self.upgraded.is_set():
            self.stream.write(httpupgrade.build_switching_protocols(self.key))
            self.upgraded.set()
            log.info("raw WebSocket upgraded for %s (%s)", activity_id, self.stream.address)

    def ping(self) -> None:
        """A keep-alive while the host is on its way; nothing can be sent before the 101."""
        if self.upgraded.is_set():
            self.stream.write(self.ws.send_ping(b"wvd"))

    async def send(self, data: bytes) -> None:
        await self.upgraded.wait()  # a frame before the 101 would break the client's HTTP parser
        frame = self.ws.send_binary(data)
        if frame:
            self.stream.write(frame)
            await self.stream.drain()  # waits while the client reads slowly: backpressure to the host

    def close(self, reason: str) -> None:
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        if self.started:
            self.shut(1000, "")
        # During setup the setup flow answers with the refusal's own status or close code.

    def refuse(self, refusal: records.Refusal) -> None:
        """Tell the client why: an HTTP status before the upgrade; after it, an X.224 Disconnect Request
        as the answer to its Connection Request (what FreeRDP 3 acts on), then the close code."""
        if self.upgraded.is_set():
            self.stream.write(self.ws.send_binary(x224.disconnect_request()))
            self.shut(close_code_for(refusal.code), close_reason_for(refusal))
        else:
            self.stream.write(build_refusal_response(refusal))
            self.stream.close()

    def shut(self, code: int, reason: str) -> None:
        if self.upgraded.is_set():
            ws = self.ws
            self.stream.write(ws.send_close(code, reason) + ws.data_to_send())
        self.stream.close()


async def serve(server: GatewayServer, stream: ClientStream, head: httpupgrade.RequestHead) -> None:
    """Check the ticket, place the connection and wait for the host (holding the 101 meanwhile, up to
    ``UPGRADE_HOLD``), then relay raw RDP."""
    key = head.websocket_key
    assert key is not None  # the dispatcher only sends upgrades here
    if not is_rfc6455_key(key):
        stream.refuse(400, "Sec-WebSocket-Key must be base64 of 16 bytes (RFC 6455)")
        return
    setup = ClientSetup(server, stream.address, (stream,), transport=ConnectionTransport.WEBSOCKET)
    refusal = await setup.admit(bearer_ticket(head))
    if refusal is not None:
        stream.write(build_refusal_response(refusal))
        stream.close()
        return
    ws = ServerWebSocket()
    end = RawClientEnd(stream, ws, key)
    frames: asyncio.Task | None = None
    try:
        refusal = await setup.open_relay(end)
        if refusal is not None:
            end.refuse(refusal)
            return
        # Read beside the setup: a client that hangs up while it waits ends its connection at once.
        frames = asyncio.ensure_future(_frames(stream, ws, setup))
        refusal = await _find_host(server, setup, end)
        if refusal is not None:
            end.refuse(refusal)
            setup.abandon(refusal.message)
            return
        end.upgrade(setup.activity_id)
        end.started = True
        if end.closed_reason is not None:
            return  # the host hung up between arriving and now
        await setup.started()
        await frames
    finally:
        await cancel_reader(frames)
        end.shut(1000, "")  # a no-op when already closed
        await setup.finish()


async def _find_host(server: GatewayServer, setup: ClientSetup, end: RawClientEnd) -> records.Refusal | None:
    """Steps 7-9; the 101 goes out only if they outlast ``UPGRADE_HOLD``."""
    admission = setup.admission
    assert admission is not None
    instance = server.config.instance_name
    finding = asyncio.ensure_future(
        setup.find_host(lambda: request_pool_host(admission.connection_pk, instance), end.ping))
    try:
        try:
            return await asyncio.wait_for(asyncio.shield(finding), UPGRADE_HOLD)
        except TimeoutError:
            end.upgrade(setup.activity_id)  # the client would give up waiting: keep it with pings
            return await finding
    except Exception:  # noqa: BLE001 - a bug or a database failure: answer rather than leave the client
        log.exception("setting up raw connection %s failed", setup.activity_id)
        return records.refusal_for(ErrorCode.InternalError, "The gateway failed to set the connection up.",
                                   setup.activity_id)
    finally:
        if not finding.done():
            finding.cancel()


async def _frames(stream: ClientStream, ws: ServerWebSocket, setup: ClientSetup) -> None:
    """Client frames into the relay until the connection ends."""
    relay = setup.relay
    assert relay is not None
    deliver, client = relay.deliver, Side.CLIENT
    while not ws.should_close_transport:
        chunk = await stream.read()
        if not chunk:
            ws.receive_eof()
            setup.end(client, "client closed")
            return
        for payload in ws.receive_data(chunk):
            await deliver(client, payload)
        stream.write(ws.data_to_send())  # pongs, close echoes
    if ws.failure is not None:
        log.info("client %s WebSocket failed: %s", stream.address, ws.failure)
    setup.end(client, "client closed the WebSocket")
