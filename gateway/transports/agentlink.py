"""The host side of the relay: a session host's agent dials in at ``/hostagent/relay/<activity id>/``.

Served by the gateway's own listener, beside the client transports, so the whole byte path of a session is
this process's asyncio code: no web server framing, ASGI queue or per-frame task in between (DESIGN.md,
"The gateway"; bench/RESULTS.md has the figures that moved it here from a daphne consumer). The protocol
is wire/relaylink.py: an HTTP upgrade, a challenge the agent signs with its key, its host ticket,
then raw bytes. The database is touched only to authenticate the agent and to record its arrival; the
per-read path is one ``read``, one ``relay.deliver`` and a counter. Flow control is TCP's: the relay's
``send`` waits in ``drain()`` while the agent reads slowly, and this side stops reading the agent while
the client does.
"""
from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING

from broker.hostcertificates import HostAuthenticationRefused, authenticate_host
from core import logcontext
from core.tickets import TicketRefused, verify_host_ticket
from gateway import httpupgrade, records
from gateway.httpupgrade import HttpError, RequestHead
from gateway.relay import Relay, RelayError, Side, pump
from gateway.transports.setup import in_thread
from gateway.transports.stream import ClientStream
from wire import relaylink

if TYPE_CHECKING:
    from gateway.server import GatewayServer

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0


class Refused(Exception):
    """The agent is turned away; ``reason`` goes back to it in a ``refused`` message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_agent_link(head: RequestHead) -> bool:
    return head.path.startswith(relaylink.PATH_PREFIX)


def check_host_ticket(activity_id: str, text: str):
    try:
        ticket = verify_host_ticket(text)
    except TicketRefused as exc:
        raise Refused(f"host ticket refused: {exc.message}") from None
    if ticket.connection_activity_id != activity_id:
        raise Refused("the host ticket is for another connection")
    return ticket


def check_agent(activity_id: str, hello: dict, nonce: bytes) -> int:
    """Who is dialling in: the host ticket must be for this connection and this certificate's host."""
    ticket = check_host_ticket(activity_id, hello["ticket"])
    try:
        host = authenticate_host(hello["certificate"], nonce, hello["signature"])
    except HostAuthenticationRefused as exc:
        raise Refused(str(exc)) from None
    if host.session_host_id != ticket.session_host_id:
        raise Refused("the host ticket was issued to another session host")
    return host.session_host_id


class AgentEnd:
    """The relay's host end: RDP bytes to the agent, waiting while it reads slowly."""

    def __init__(self, stream: ClientStream, relay: Relay) -> None:
        self.stream = stream
        self.relay = relay

    async def send(self, data: bytes) -> None:
        self.stream.write(data)
        try:
            await self.stream.drain()
        except (ConnectionError, RuntimeError):
            self.relay.end(Side.HOST, "host connection lost")

    def close(self, reason: str) -> None:
        self.stream.close()


async def serve(server: GatewayServer, stream: ClientStream, head: RequestHead) -> None:
    """One agent link, from its upgrade request to the end of the relay."""
    activity_id = relaylink.activity_from_path(head.path)
    if head.method != "GET" or activity_id is None:
        raise HttpError(404, f"not found; agents dial {relaylink.PATH_PREFIX}<activity id>/")
    logcontext.set_activity(activity_id)  # this task's lines concern that connection (core/logcontext.py)
    if relaylink.UPGRADE_TOKEN not in httpupgrade.upgrade_tokens(head):
        raise HttpError(426, f"the agent link is an upgrade to {relaylink.UPGRADE_TOKEN}")
    sock = stream.writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # idle sessions behind NAT and firewalls
    nonce = os.urandom(32)
    stream.write(relaylink.switching_protocols() + relaylink.challenge(nonce))
    try:
        stream.authenticating = True  # the checks below read and write the database: let them finish
        try:
            host_id = await _handshake(server, stream, activity_id, nonce)
        finally:
            stream.authenticating = False
        relay = server.rendezvous.get(activity_id)
        if relay is None or relay.is_ended:
            raise Refused("no such connection on this gateway instance")
    except Refused as exc:
        log.info("agent link for %s from %s refused: %s", activity_id, stream.address, exc.reason)
        stream.write(relaylink.refused(exc.reason))
        return
    server.authenticated(stream)  # the agent proved its host: no pre-authentication deadline any more
    await in_thread(records.mark_host_connected)(activity_id)
    # "ready" goes out before the end is wired in: once attached, client bytes may follow at once.
    stream.write(relaylink.ready())
    end = AgentEnd(stream, relay)
    try:
        await relay.attach(Side.HOST, end)
    except RelayError as exc:
        log.info("agent link for %s: %s", activity_id, exc)
        return
    log.info("agent link for %s: host %s connected from %s", activity_id, host_id, stream.address)
    await pump(stream.read, relay, Side.HOST)


async def _handshake(server: GatewayServer, stream: ClientStream, activity_id: str, nonce: bytes) -> int:
    try:
        line = await stream.read_line(relaylink.MAX_CONTROL_LINE, HELLO_TIMEOUT)
        hello = relaylink.decode(line, ("hello", "fail"))
    except TimeoutError:
        raise Refused("no hello in time") from None
    except (ValueError, relaylink.LinkError) as exc:
        raise Refused(str(exc)) from None
    if hello["type"] == "fail":
        # The agent could not reach its RDP listener: refuse the waiting client now, not at the timeout.
        # Only the holder of this connection's host ticket may say so.
        await in_thread(check_host_ticket)(activity_id, hello["ticket"])
        detail = f"The session host could not reach its RDP listener: {hello['detail']}"
        await in_thread(records.fail_activity)(
            activity_id, records.ErrorCode.ConnectionFailedHostListenerUnreachable, detail)
        log.info("agent link for %s: %s", activity_id, detail)
        relay = server.rendezvous.get(activity_id)
        if relay is not None:
            relay.end(Side.HOST, detail)
        raise Refused("recorded")
    return await in_thread(check_agent)(activity_id, hello, nonce)
