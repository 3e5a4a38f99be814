"""The host side of the relay: a session host's agent dials in at ``/ws/relay/<activity id>/``.

A plain ASGI application rather than a Channels consumer class: the stock consumer dispatch closes old
database connections in a worker thread and creates a task for every message, which cost about five
times the throughput (DESIGN.md). Here the per-frame path is one ``receive()``, one ``relay.deliver``
and a counter; the database is touched only to authenticate the agent and to record its arrival. The
channel layer is never used. Flow control is the agent link's credit window (hostagent/relaylink.py).
"""
from __future__ import annotations

import asyncio
import logging
import os
import re

from asgiref.sync import sync_to_async
from django.conf import settings

from gateway import records
from hostagent import relaylink
from gateway.instance import rendezvous
from gateway.relay import RelayError, Side
from hostagent.certificates import HostAuthenticationRefused, authenticate_host
from wvdportal.tickets import TicketRefused, verify_host_ticket

log = logging.getLogger(__name__)

ACTIVITY_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HELLO_TIMEOUT = 10.0
MAX_DATA_FRAME = 1 << 20
# WebSocket close codes (4000-4999 are ours).
CLOSE_REFUSED = 4403
CLOSE_UNKNOWN_CONNECTION = 4404
CLOSE_PROTOCOL = 4400


class Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def check_host_ticket(activity_id: str, text: str):
    try:
        ticket = verify_host_ticket(text)
    except TicketRefused as exc:
        raise Refused(CLOSE_REFUSED, f"host ticket refused: {exc.message}") from None
    if ticket.connection_activity_id != activity_id:
        raise Refused(CLOSE_REFUSED, "the host ticket is for another connection")
    return ticket


def check_agent(activity_id: str, hello: dict, nonce: bytes) -> int:
    """Who is dialling in: the host ticket must be for this connection and this certificate's host."""
    ticket = check_host_ticket(activity_id, hello["ticket"])
    try:
        host = authenticate_host(hello["certificate"], nonce, hello["signature"])
    except HostAuthenticationRefused as exc:
        raise Refused(CLOSE_REFUSED, str(exc)) from None
    if host.session_host_id != ticket.session_host_id:
        raise Refused(CLOSE_REFUSED, "the host ticket was issued to another session host")
    return host.session_host_id


class AgentLinkEnd:
    """The relay's host end: RDP bytes to the agent as binary frames, within the agent's credit."""

    def __init__(self, send, window: int) -> None:
        self._send = send
        self.window = relaylink.CreditWindow(window)
        self.closed_reason: str | None = None

    async def send(self, data: bytes) -> None:
        await self.window.acquire(len(data))
        if self.closed_reason is None:
            await self._send({"type": "websocket.send", "bytes": data})

    def close(self, reason: str) -> None:
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        self.window.grant(1 << 40)  # release a sender waiting for credit: nothing more goes out
        asyncio.ensure_future(self._send({"type": "websocket.close", "code": 1000, "reason": reason[:120]}))


async def host_relay(scope, receive, send) -> None:
    """ASGI application for one agent link."""
    activity_id = scope["url_route"]["kwargs"].get("activity_id", "")
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if not ACTIVITY_ID.match(activity_id):
        await send({"type": "websocket.close", "code": CLOSE_UNKNOWN_CONNECTION})
        return
    await send({"type": "websocket.accept"})
    nonce = os.urandom(32)
    await send({"type": "websocket.send", "text": relaylink.challenge(nonce)})
    try:
        host_id = await _handshake(activity_id, receive, nonce)
    except Refused as exc:
        log.info("agent link for %s refused: %s", activity_id, exc.reason)
        await send({"type": "websocket.close", "code": exc.code, "reason": exc.reason[:120]})
        return
    except _Gone:
        return
    relay = rendezvous.get(activity_id)
    if relay is None or relay.is_ended:
        log.info("agent link for %s: no client waits for it on this instance", activity_id)
        await send({"type": "websocket.close", "code": CLOSE_UNKNOWN_CONNECTION,
                    "reason": "no such connection on this gateway instance"})
        return
    window = settings.GATEWAY_AGENT_WINDOW
    end = AgentLinkEnd(send, window)
    await sync_to_async(records.mark_host_connected, thread_sensitive=False)(activity_id)
    # "ready" goes out before the end is wired in: once attached, client bytes may follow at once.
    await send({"type": "websocket.send", "text": relaylink.ready(window)})
    try:
        await relay.attach(Side.HOST, end)
    except RelayError as exc:
        await send({"type": "websocket.close", "code": CLOSE_UNKNOWN_CONNECTION, "reason": str(exc)[:120]})
        return
    log.info("agent link for %s: host %s connected", activity_id, host_id)
    await _pump(relay, end, receive, window)


class _Gone(Exception):
    pass


async def _handshake(activity_id: str, receive, nonce: bytes) -> int:
    try:
        message = await asyncio.wait_for(receive(), HELLO_TIMEOUT)
    except TimeoutError:
        raise Refused(CLOSE_PROTOCOL, "no hello in time") from None
    if message["type"] == "websocket.disconnect":
        raise _Gone
    text = message.get("text")
    if text is None:
        raise Refused(CLOSE_PROTOCOL, "expected a hello text frame")
    try:
        hello = relaylink.decode(text, ("hello", "fail"))
    except relaylink.LinkError as exc:
        raise Refused(CLOSE_PROTOCOL, str(exc)) from None
    if hello["type"] == "fail":
        # The agent could not reach its RDP listener: refuse the waiting client now, not at the timeout.
        # Only the holder of this connection's host ticket may say so.
        await sync_to_async(check_host_ticket, thread_sensitive=False)(activity_id, hello["ticket"])
        detail = f"The session host could not reach its RDP listener: {hello['detail']}"
        relay = rendezvous.get(activity_id)
        await sync_to_async(records.fail_activity, thread_sensitive=False)(
            activity_id, records.ErrorCode.ConnectionFailedHostListenerUnreachable, detail)
        log.info("agent link for %s: %s", activity_id, detail)
        if relay is not None:
            relay.end(Side.HOST, detail)
        raise Refused(1000, "recorded")
    return await sync_to_async(check_agent, thread_sensitive=False)(activity_id, hello, nonce)


async def _pump(relay, end: AgentLinkEnd, receive, window: int) -> None:
    """The per-frame loop: agent bytes to the client, credit back every half window."""
    counter = relaylink.CreditCounter(window)
    deliver = relay.deliver
    host = Side.HOST
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.receive":
            data = message.get("bytes")
            if data is not None:
                if len(data) > MAX_DATA_FRAME:
                    relay.end(host, "agent sent an oversized frame")
                    continue
                await deliver(host, data)
                grant = counter.consumed(len(data))
                if grant and end.closed_reason is None:
                    await end._send({"type": "websocket.send", "text": relaylink.credit(grant)})  # noqa: SLF001
                continue
            try:
                control = relaylink.decode(message.get("text") or "", ("credit",))
            except relaylink.LinkError as exc:
                log.info("agent link for %s: %s", relay.connection_id, exc)
                relay.end(host, f"agent protocol error: {exc}")
                continue
            end.window.grant(control["bytes"])
        elif kind == "websocket.disconnect":
            relay.end(host, "host closed")
            return
