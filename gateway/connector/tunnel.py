"""The connector's relay: a local TCP listener whose every connection is tunnelled to the gateway's raw
WebSocket transport (``wss://<gateway>/remoteDesktopGateway/``, gateway/transports/wst.py) with the
file's ticket as a Bearer token.

Bytes are relayed as they come, one binary frame per local read; backpressure is TCP's on one side and
the WebSocket library's on the other. A refusal is explained in words: the HTTP body for a refused
ticket, and for a refused setup the close reason's error code with the message from wire/errors.py
(pure Python, shared with the server). No Django.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
from datetime import UTC, datetime

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from gateway.connector.rdpfile import ConnectionFile
from wire.errors import ERRORS

log = logging.getLogger("wvd-connector")

READ_SIZE = 64 * 1024  # one RDP write is far smaller; a frame never exceeds the gateway's 1 MiB limit
# TLS + upgrade: the gateway holds the 101 while the host is on its way (up to wst.UPGRADE_HOLD, 10 s),
# then awaits the host after the upgrade without a timeout of ours.
OPEN_TIMEOUT = 30.0


def explain_close(code: int | None, reason: str) -> str | None:
    """A sentence for a gateway close with one of its 4xxx codes; None for a normal end."""
    if code is None or code < 4000:
        return None
    return _explain(reason, str(code)) or f"the gateway closed the connection with {code} {reason!r}"


def explain_refusal(error: InvalidStatus) -> str:
    """A sentence for an HTTP refusal of the upgrade: the gateway's reason phrase is ``<error code>
    activity <id>`` (gateway/transports/wst.py); anything else is shown with its body."""
    response = error.response
    explained = _explain(response.reason_phrase or "", f"HTTP {response.status_code}")
    if explained:
        return explained
    body = (response.body or b"").decode("utf-8", "replace").strip()[:500]
    return f"the gateway refused the connection: HTTP {response.status_code}: {body or response.reason_phrase}"


def _explain(reason: str, answer: str) -> str | None:
    """``<error code> activity <id>`` as a sentence with the code's documented message; None when the
    reason names none of our error codes."""
    error_code, _, rest = reason.partition(" ")
    entry = ERRORS.get(error_code)
    if entry is None:
        return None
    activity = rest.removeprefix("activity ").strip()
    where = f" (activity {activity})" if activity and activity != "-" else ""
    return f"the gateway refused the connection: {error_code}{where} [{answer}]: {entry.message}"


class Connector:
    """Listens locally and tunnels each accepted connection through the gateway."""

    def __init__(self, file: ConnectionFile, ssl_context: ssl.SSLContext) -> None:
        self.file = file
        self.ssl_context = ssl_context
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Bind the local listener (port 0: any free port); returns the address it listens on."""
        self._server = await asyncio.start_server(self._accept, host, port, limit=READ_SIZE)
        address = self._server.sockets[0].getsockname()
        return address[0], address[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peer = writer.get_extra_info("peername") or ("?", 0)
        try:
            await self.tunnel(reader, writer, f"{peer[0]}:{peer[1]}")
        except Exception:  # noqa: BLE001 - one connection's failure must not stop the listener
            log.exception("unexpected error tunnelling %s", peer)
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        info = self.file.ticket_info
        if info is not None and info.expires_at <= datetime.now(UTC):
            log.error("the connection ticket expired at %s UTC; refresh your resources and open the new "
                      "file", f"{info.expires_at:%Y-%m-%d %H:%M:%S}")
            return
        url = self.file.gateway_url
        log.info("connection from %s: opening %s", peer, url)
        try:
            ws = await connect(
                url, ssl=self.ssl_context, server_hostname=self.file.gateway_host,
                additional_headers={"Authorization": f"Bearer {self.file.ticket}"},
                compression=None, max_size=1 << 20, open_timeout=OPEN_TIMEOUT,
                ping_interval=20, ping_timeout=60, user_agent_header="wvd-connector/1",
            )
        except InvalidStatus as error:
            log.error("%s", explain_refusal(error))
            return
        except ssl.SSLCertVerificationError as error:
            log.error("the gateway's certificate is not trusted (%s); pass --ca-file with the control "
                      "plane's CA (the portal serves it at /ca.pem)", error.verify_message or error)
            return
        except (OSError, TimeoutError, InvalidHandshake) as error:
            log.error("cannot reach the gateway at %s:%s: %s", self.file.gateway_host, self.file.gateway_port,
                      str(error) or error.__class__.__name__)
            return
        try:
            await self._relay(reader, writer, ws)
        finally:
            await ws.close()
        explanation = explain_close(ws.close_code, ws.close_reason or "")
        if explanation:
            log.error("%s", explanation)
        else:
            log.info("connection from %s ended", peer)

    @staticmethod
    async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ws: ClientConnection) -> None:
        async def local_to_gateway() -> None:
            while data := await reader.read(READ_SIZE):
                await ws.send(data)

        async def gateway_to_local() -> None:
            async for message in ws:
                if isinstance(message, bytes):
                    writer.write(message)
                    await writer.drain()

        tasks = [asyncio.ensure_future(local_to_gateway()), asyncio.ensure_future(gateway_to_local())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            # A gateway close (ConnectionClosed) is explained by the caller from its code and reason.
            if isinstance(result, ConnectionError):
                log.info("local connection lost: %s", result.__class__.__name__)
            elif isinstance(result, BaseException) and not isinstance(result, (ConnectionClosed,
                                                                               asyncio.CancelledError)):
                raise result
