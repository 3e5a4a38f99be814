"""Raw RDP over a standard WebSocket (PROTOCOLS.md §4.9, FreeRDP 3's ``wst``; our connector uses it too).

``GET /remoteDesktopGateway/`` with an RFC 6455 upgrade and the connection ticket as
``Authorization: Bearer <ticket>``. No TSGU: binary frames carry raw RDP bytes both ways, and the target
is the ticket's host pool (there is no CHANNEL_CREATE to name one). Orchestration is as for every
transport. FreeRDP 3 would be pointed here with
``/gateway:url:wss://<gateway>:<port>/remoteDesktopGateway/,bearer:<ticket>`` (from its source; this test
bed has FreeRDP 2 only, so the connector and Python clients are what is tested).

Answers (every refusal is also a failed Connection record with its documented error code):

* HTTP ``401`` (with ``WWW-Authenticate: Bearer``): no Bearer ticket, or one that is malformed, forged,
  expired or revoked; ``403``: a valid ticket whose user or host pool no longer qualifies. The body is
  ``<error code>: <message> (activity <id>)``.
* After the upgrade, a setup that fails closes the WebSocket with the code below and the reason
  ``<error code> activity <activity id>``:

  | close code | error codes |
  | --- | --- |
  | 4400 | ConnectionFailedClientProtocolError (e.g. the same connection opened twice) |
  | 4401 | the ticket codes (only if a ticket fails after the upgrade) |
  | 4403 | ConnectionFailedUserNotAuthorized, ResourceNotFound, ResourceMismatch, NoPersonalDesktopAssigned |
  | 4502 | ConnectionFailedAgentDisconnected, HostListenerUnreachable (the host cannot be reached) |
  | 4503 | ConnectionFailedNoHealthyRdshAvailable, MaxSessionsReached, PersonalDesktopFailed, NoPersonalDesktopFree |
  | 4504 | ConnectionFailedOrchestrationTimeout, ReverseConnectTimeout (no host arrived in time) |
  | 4500 | InternalError and any other code |

* Once the relay runs, either side ending closes the WebSocket with 1000.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import http
import logging
from typing import TYPE_CHECKING

from websockets.datastructures import MultipleValuesError

from broker.models import Connection
from gateway import httpupgrade, records
from gateway.relay import Side
from gateway.transports.setup import ClientSetup
from gateway.transports.stream import ClientStream
from gateway.wsframing import ServerWebSocket
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
    E.ConnectionFailedUserNotAuthorized: 4403,
    E.ConnectionFailedResourceNotFound: 4403,
    E.ConnectionFailedResourceMismatch: 4403,
    E.ConnectionFailedNoPersonalDesktopAssigned: 4403,
    E.ConnectionFailedAgentDisconnected: 4502,
    E.ConnectionFailedHostListenerUnreachable: 4502,
    E.ConnectionFailedNoHealthyRdshAvailable: 4503,
    E.ConnectionFailedMaxSessionsReached: 4503,
    E.ConnectionFailedPersonalDesktopFailed: 4503,
    E.ConnectionFailedNoPersonalDesktopFree: 4503,
    E.ConnectionFailedOrchestrationTimeout: 4504,
    E.ConnectionFailedReverseConnectTimeout: 4504,
}
CLOSE_INTERNAL_ERROR = 4500
MAX_CLOSE_REASON = 123  # bytes: RFC 6455 leaves 125 for the code and the reason


def close_code_for(error_code: str) -> int:
    """The WebSocket close code a failed setup answers with (see the table above)."""
    return CLOSE_CODES.get(error_code, CLOSE_INTERNAL_ERROR)


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
    """401 for a ticket that is missing or not good (a new one from the feed fixes it), 403 otherwise."""
    status = 401 if describe(refusal.code).stage == "ticket" else 403
    body = f"{refusal.code}: {refusal.message} (activity {refusal.activity_id or '-'})\n".encode()
    lines = [
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if status == 401:
        lines.append('WWW-Authenticate: Bearer realm="remoteDesktopGateway", error="invalid_token"')
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


def request_pool_host(connection_pk: int, instance_name: str) -> records.Refusal | None:
    """The raw transport names no resource: ask for the ticket's host pool, by its current name (so a
    pool renamed since the file was issued still matches)."""
    pool_name = Connection.objects.filter(pk=connection_pk).values_list("host_pool__name", flat=True).first()
    return records.request_channel(connection_pk, (pool_name or "",), 0, "", instance_name)


class RawClientEnd:
    """The relay's client end: RDP bytes out as binary frames; a normal close once the relay ran."""

    def __init__(self, stream: ClientStream, ws: ServerWebSocket) -> None:
        self.stream, self.ws = stream, ws
        self.started = False
        self.closed_reason: str | None = None

    async def send(self, data: bytes) -> None:
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
        # During setup the setup flow closes with the refusal's own code.

    def shut(self, code: int, reason: str) -> None:
        ws = self.ws
        self.stream.write(ws.send_close(code, reason) + ws.data_to_send())
        self.stream.close()


async def serve(server: GatewayServer, stream: ClientStream, head: httpupgrade.RequestHead) -> None:
    """Check the ticket, upgrade, and relay raw RDP once the pool's host has arrived."""
    key = head.websocket_key
    assert key is not None  # the dispatcher only sends upgrades here
    if not is_rfc6455_key(key):
        stream.refuse(400, "Sec-WebSocket-Key must be base64 of 16 bytes (RFC 6455)")
        return
    setup = ClientSetup(server, stream.address, (stream,))
    refusal = await setup.admit(bearer_ticket(head))
    if refusal is not None:
        stream.write(build_refusal_response(refusal))
        stream.close()
        return
    stream.write(httpupgrade.build_switching_protocols(key))
    ws = ServerWebSocket()
    end = RawClientEnd(stream, ws)
    connecting: asyncio.Task | None = None
    try:
        refusal = await setup.open_relay(end)
        if refusal is not None:
            end.shut(close_code_for(refusal.code), close_reason_for(refusal))
            return
        connecting = asyncio.ensure_future(_connect(server, setup, end))
        await _frames(stream, ws, setup)
    finally:
        if connecting is not None and not connecting.done():
            connecting.cancel()
            try:
                await connecting
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - already ending
                pass
        end.shut(1000, "")  # a no-op when already closed
        await setup.finish()


async def _connect(server: GatewayServer, setup: ClientSetup, end: RawClientEnd) -> None:
    """Steps 7-9 beside the frame loop: the client's first bytes wait in the relay meanwhile."""
    try:
        await _find_host(server, setup, end)
    except Exception:  # noqa: BLE001 - a bug or a database failure: close rather than leave the client
        log.exception("setting up raw connection %s failed", setup.activity_id)
        end.shut(CLOSE_INTERNAL_ERROR, f"{ErrorCode.InternalError} activity {setup.activity_id or '-'}")
        setup.abandon("the gateway failed to set the connection up")


async def _find_host(server: GatewayServer, setup: ClientSetup, end: RawClientEnd) -> None:
    admission = setup.admission
    assert admission is not None
    instance = server.config.instance_name
    refusal = await setup.find_host(lambda: request_pool_host(admission.connection_pk, instance),
                                    lambda: end.stream.write(end.ws.send_ping(b"wvd")))
    if refusal is not None:
        end.shut(close_code_for(refusal.code), close_reason_for(refusal))
        setup.abandon(refusal.message)
        return
    end.started = True
    if end.closed_reason is not None:
        end.shut(1000, "")  # the host hung up between arriving and now
        return
    await setup.started()


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
