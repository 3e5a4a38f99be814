"""The agent's half of a reverse connection: dial the gateway instance that holds the client, prove who
we are, and bridge that WebSocket to the local RDP listener (steps 8 and 10 of the sequence).

No Django: asyncio, ``websockets`` and the pure agent-link protocol (hostagent/relaylink.py). Flow control
is the link's credit window: we never send more than the gateway credited back, and we credit the
gateway only for bytes already written to the RDP listener.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from hostagent import relaylink
from hostagent import proof
from hostagent.agent.sessions import Outcome
from hostagent.agent.state import AgentState

log = logging.getLogger("wvd-agent")

READ_SIZE = 64 * 1024
CONNECT_TIMEOUT = 10.0


async def connect(state: AgentState, rdp_target: tuple[str, int], relay_url: str, activity_id: str,
                  host_ticket: str) -> Outcome:
    """Serve one connection until either side closes; returns at once with the outcome of the setup
    and leaves the bridge running in the background (the connect order must be answered quickly)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*rdp_target), CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        detail = f"{rdp_target[0]}:{rdp_target[1]}: {exc.__class__.__name__} {exc}".strip()
        log.warning("connection %s: RDP listener unreachable (%s)", activity_id, detail)
        await _report_failure(state, relay_url, host_ticket, detail)
        return Outcome("failed", f"The RDP listener is unreachable ({detail}).")
    try:
        ws = await _open_link(state, relay_url, host_ticket)
    except Exception as exc:  # noqa: BLE001 - reported to the broker as the command's result
        writer.close()
        log.warning("connection %s: gateway link failed: %s", activity_id, exc)
        return Outcome("failed", f"Could not open the relay link: {exc}")
    window = ws.window  # type: ignore[attr-defined]
    asyncio.ensure_future(_bridge(ws, reader, writer, window, activity_id))
    log.info("connection %s: relaying to %s:%s", activity_id, *rdp_target)
    return Outcome("ok", "relaying")


def _ssl_for(state: AgentState, url: str) -> ssl.SSLContext | None:
    return state.ssl_context() if url.startswith("wss://") else None


async def _open_link(state: AgentState, relay_url: str, host_ticket: str) -> ClientConnection:
    key, certificate, pem = state.load_credentials()
    ws = await asyncio.wait_for(
        websockets.connect(relay_url, ssl=_ssl_for(state, relay_url), max_size=1 << 20, compression=None,
                           open_timeout=CONNECT_TIMEOUT, ping_interval=20, ping_timeout=30),
        CONNECT_TIMEOUT,
    )
    try:
        challenge = relaylink.decode(await asyncio.wait_for(ws.recv(), CONNECT_TIMEOUT), ("challenge",))
        signature = proof.sign_challenge(key, challenge["nonce"], certificate)
        await ws.send(relaylink.hello(pem, signature, host_ticket))
        ready = relaylink.decode(await asyncio.wait_for(ws.recv(), CONNECT_TIMEOUT), ("ready",))
    except BaseException:
        await ws.close()
        raise
    ws.window = ready["window"]  # type: ignore[attr-defined]
    return ws


async def _report_failure(state: AgentState, relay_url: str, host_ticket: str, detail: str) -> None:
    """Tell the gateway at once that the RDP listener is down, so the client is refused now."""
    try:
        async with websockets.connect(relay_url, ssl=_ssl_for(state, relay_url), open_timeout=CONNECT_TIMEOUT,
                                      compression=None) as ws:
            await asyncio.wait_for(ws.recv(), CONNECT_TIMEOUT)  # the challenge: not needed for a failure
            await ws.send(relaylink.fail("rdp_unreachable", detail, host_ticket))
            await asyncio.wait_for(ws.wait_closed(), CONNECT_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - the gateway's own timeout still ends the client's wait
        log.info("could not report the failure to the gateway: %s", exc)


async def _bridge(ws: ClientConnection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  window: int, activity_id: str) -> None:
    send_window = relaylink.CreditWindow(window)
    counter = relaylink.CreditCounter(window)

    async def target_to_gateway() -> None:
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                return
            await send_window.acquire(len(data))
            await ws.send(data)

    async def gateway_to_target() -> None:
        async for message in ws:
            if isinstance(message, bytes):
                writer.write(message)
                await writer.drain()
                grant = counter.consumed(len(message))
                if grant:
                    await ws.send(relaylink.credit(grant))
            else:
                control: dict[str, Any] = relaylink.decode(message, ("credit",))
                send_window.grant(control["bytes"])

    tasks = [asyncio.ensure_future(target_to_gateway()), asyncio.ensure_future(gateway_to_target())]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task.exception() is not None:
                log.info("connection %s: %s", activity_id, task.exception())
    finally:
        for task in tasks:
            task.cancel()
        writer.close()
        await ws.close()
        log.info("connection %s: ended", activity_id)
