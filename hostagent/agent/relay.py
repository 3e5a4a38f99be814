"""The agent's half of a reverse connection: dial the gateway instance that holds the client, prove who
we are, and bridge that link to the local RDP listener (steps 8 and 10 of the sequence).

No Django: asyncio streams and the pure agent-link protocol (wire/relaylink.py). After the
handshake the link carries raw bytes; each direction reads only when the previous write drained, so a
slow client or a slow RDP listener slows the other side down instead of filling memory.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl

from hostagent.agent.sessions import Outcome
from hostagent.agent.state import AgentState
from wire import proof, relaylink

log = logging.getLogger("wvd-agent")

READ_SIZE = 64 * 1024
CONNECT_TIMEOUT = 10.0

# The bridges running now. The event loop keeps only weak references to tasks: without this set a
# bridge nobody awaits can be garbage-collected in the middle of a session.
_bridges: set[asyncio.Task] = set()


class LinkRefused(Exception):
    """The gateway turned the link away; the message says why in its words."""


async def connect(state: AgentState, rdp_target: tuple[str, int], relay_url: str, activity_id: str,
                  host_ticket: str) -> Outcome:
    """Serve one connection until either side closes; returns at once with the outcome of the setup
    and leaves the bridge running in the background (the connect order must be answered quickly)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*rdp_target, limit=READ_SIZE),
                                                CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        detail = f"{rdp_target[0]}:{rdp_target[1]}: {exc.__class__.__name__} {exc}".strip()
        log.warning("connection %s: RDP listener unreachable (%s)", activity_id, detail)
        await _report_failure(state, relay_url, host_ticket, detail)
        return Outcome("failed", f"The RDP listener is unreachable ({detail}).")
    try:
        link_reader, link_writer = await asyncio.wait_for(_open_link(state, relay_url, host_ticket), CONNECT_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - reported to the broker as the command's result
        writer.close()
        reason = "no answer in time" if isinstance(exc, TimeoutError) else str(exc) or exc.__class__.__name__
        log.warning("connection %s: gateway link failed: %s", activity_id, reason)
        return Outcome("failed", f"Could not open the relay link: {reason}")
    start_bridge(link_reader, link_writer, reader, writer, activity_id)
    log.info("connection %s: relaying to %s:%s", activity_id, *rdp_target)
    return Outcome("ok", "relaying")


async def _dial(state: AgentState, relay_url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect, upgrade, and return the stream positioned at the gateway's first control message."""
    tls, host, port, path = relaylink.split_url(relay_url)
    context: ssl.SSLContext | None = state.relay_ssl_context() if tls else None
    reader, writer = await asyncio.open_connection(host, port, ssl=context, limit=READ_SIZE,
                                                   server_hostname=host if tls else None)
    try:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        writer.write(relaylink.upgrade_request(host, port, path))
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.LimitOverrunError, asyncio.IncompleteReadError):
            raise relaylink.LinkError("malformed HTTP response from the gateway") from None
        status, length = relaylink.parse_response_head(head)
        if status != 101:
            body = await reader.read(min(length, 2000)) if length else b""
            text = body.decode("utf-8", "replace").strip()
            raise LinkRefused(f"the gateway answered HTTP {status}{': ' + text if text else ''}")
    except BaseException:
        writer.close()
        raise
    return reader, writer


async def _read_control(reader: asyncio.StreamReader, expected: tuple[str, ...]) -> dict:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        line = exc.partial
    except asyncio.LimitOverrunError:
        raise relaylink.LinkError("control message longer than the link allows") from None
    return relaylink.decode(line, expected)


async def _open_link(state: AgentState, relay_url: str,
                     host_ticket: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    key, certificate, pem = state.load_credentials()
    reader, writer = await _dial(state, relay_url)
    try:
        challenge = await _read_control(reader, ("challenge",))
        signature = proof.sign_challenge(key, challenge["nonce"], certificate)
        writer.write(relaylink.hello(pem, signature, host_ticket))
        answer = await _read_control(reader, ("ready", "refused"))
        if answer["type"] == "refused":
            raise LinkRefused(f"the gateway refused the link: {answer['reason']}")
    except BaseException:
        writer.close()
        raise
    return reader, writer


async def _report_failure(state: AgentState, relay_url: str, host_ticket: str, detail: str) -> None:
    """Tell the gateway at once that the RDP listener is down, so the client is refused now."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            reader, writer = await _dial(state, relay_url)
            try:
                await _read_control(reader, ("challenge",))  # not needed for a failure, but comes first
                writer.write(relaylink.fail("rdp_unreachable", detail, host_ticket))
                await _read_control(reader, ("refused",))  # "recorded", or why not
            finally:
                writer.close()
    except Exception as exc:  # noqa: BLE001 - the gateway's own timeout still ends the client's wait
        log.info("could not report the failure to the gateway: %s", exc)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(READ_SIZE):
        writer.write(data)
        await writer.drain()


def start_bridge(link_reader: asyncio.StreamReader, link_writer: asyncio.StreamWriter,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter, activity_id: str) -> asyncio.Task:
    """Copy both ways in the background until either side ends (held in ``_bridges`` meanwhile)."""
    bridge = asyncio.ensure_future(_bridge(link_reader, link_writer, reader, writer, activity_id))
    _bridges.add(bridge)
    bridge.add_done_callback(_bridges.discard)
    return bridge


async def _bridge(link_reader: asyncio.StreamReader, link_writer: asyncio.StreamWriter,
                  reader: asyncio.StreamReader, writer: asyncio.StreamWriter, activity_id: str) -> None:
    tasks = [asyncio.ensure_future(_copy(reader, link_writer)), asyncio.ensure_future(_copy(link_reader, writer))]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task.exception() is not None:
                log.info("connection %s: %s", activity_id, task.exception().__class__.__name__)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        writer.close()
        link_writer.close()
        log.info("connection %s: ended", activity_id)
