"""``run``: keep the host channel open, heartbeat, obey commands, reconnect after any failure.

One connection at a time: connect, answer the server's challenge by signing its nonce with the
agent's key, then three things at once until the channel ends: heartbeats, the receive loop
(acknowledgements, commands, certificates), and waiting for a stop signal. Any transient failure
ends the connection and the agent tries again after a jittered exponential backoff; only SIGTERM
or SIGINT stop it (exit code 0), after telling the server it shuts down. It logs one line per state
change, never one per heartbeat.
"""
from __future__ import annotations

import asyncio
import logging
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from hostagent.agent import AGENT_VERSION
from hostagent.agent import state as agent_state
from hostagent.agent.commands import CertificateExchangeFailed, CommandContext, CommandRegistry, default_registry
from hostagent.agent.health import HealthSettings, run_checks
from hostagent.agent.rdpcert import RETRY_SECONDS, RdpCertificateKeeper, RdpCertificateOptions
from hostagent.agent.sessions import SessionProvider, detect_provider
from wire import hostchannel, proof

log = logging.getLogger("wvd-agent")

HANDSHAKE_TIMEOUT = 15.0
MAX_CONCURRENT_COMMANDS = 16
# A connection that stayed up this long was a success: the next failure starts the backoff again.
STABLE_AFTER = 30.0
# Without acknowledgements for this many intervals the channel is dead even if TCP says otherwise.
MISSED_ACKS = 3


class ChannelEnded(Exception):
    """The connection ended; the message says why, for the log."""


class ServerRefused(ChannelEnded):
    """The server refused this agent (authentication, or credentials replaced): retry slowly."""


@dataclass
class RunOptions:
    rdp_target: tuple[str, int] = ("127.0.0.1", 3389)
    heartbeat_interval: float | None = None  # None: the interval the server asks for
    disk_path: Path = Path("/")
    disk_min_free_percent: float = 10.0
    ca_file: Path | None = None  # trust this CA for wss:// instead of the one stored at registration
    # Keep the local RDP server's certificate from our CA in these files (hostagent/agent/rdpcert.py).
    rdp_certificate: RdpCertificateOptions | None = None
    backoff_initial: float = 1.0
    backoff_max: float = 60.0


@dataclass
class Backoff:
    """Exponential backoff with jitter: each delay is drawn from [base/2, base], base doubling up to
    the maximum, so a fleet of agents that lost the server at once does not return at once."""

    initial: float
    maximum: float
    attempt: int = 0

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * 2 ** min(self.attempt, 30))
        self.attempt += 1
        return random.uniform(base / 2, base)

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class _Connection:
    ws: ClientConnection
    last_ack: float
    server_error: str = ""
    csr_waiters: dict[str, asyncio.Future] = field(default_factory=dict)
    commands: set[asyncio.Task] = field(default_factory=set)
    background: set[asyncio.Task] = field(default_factory=set)  # ends with the channel, never ends it


class HostAgent:
    def __init__(self, state_dir: Path, options: RunOptions | None = None, *,
                 registry: CommandRegistry | None = None, sessions: SessionProvider | None = None) -> None:
        self.state_dir = state_dir
        self.options = options or RunOptions()
        self.registry = registry or default_registry()
        self.sessions = sessions or detect_provider()
        self.health = HealthSettings(rdp_host=self.options.rdp_target[0], rdp_port=self.options.rdp_target[1],
                                     disk_path=self.options.disk_path,
                                     disk_min_free_percent=self.options.disk_min_free_percent)
        self.state: agent_state.AgentState | None = None
        self.rdp_keeper = (RdpCertificateKeeper(self.options.rdp_certificate, self.options.rdp_target)
                           if self.options.rdp_certificate else None)
        self._stopping = asyncio.Event()
        self._stop_reason = ""
        self._last_state = ""
        self._failing_checks: set[str] | None = None

    # --- Lifecycle ---------------------------------------------------------------------------------

    def stop(self, reason: str = "stop requested") -> None:
        if not self._stopping.is_set():
            self._stop_reason = reason
            self._stopping.set()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(signum, self.stop, f"received {signum.name}")
            except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
                signal.signal(signum, lambda number, frame: loop.call_soon_threadsafe(
                    self.stop, f"received {signal.Signals(number).name}"))

    def _state(self, text: str, level: int = logging.INFO) -> None:
        """Log a state change; the same state twice in a row is logged once."""
        if text != self._last_state:
            self._last_state = text
            log.log(level, "%s", text)

    async def run(self) -> int:
        """Run until stopped; returns the exit code (0 stopped, 2 not registered)."""
        try:
            agent_state.load_state(self.state_dir)
        except agent_state.StateError as exc:
            log.error("%s", exc)
            return 2
        self._install_signal_handlers()
        backoff = Backoff(self.options.backoff_initial, self.options.backoff_max)
        log.info("wvd-agent %s starting; sessions via %s, RDP at %s:%s", AGENT_VERSION, self.sessions.name,
                 *self.options.rdp_target)
        while not self._stopping.is_set():
            try:
                # Read again on every attempt: a renewal may have made other files current.
                self.state = agent_state.load_state(self.state_dir)
            except agent_state.StateError as exc:
                self._state(f"cannot read the state directory: {exc}", logging.ERROR)
                self.state = None
            started = time.monotonic()
            try:
                if self.state is not None:
                    await self._connect_once(self.state)
            except ServerRefused as exc:
                self._state(f"refused by the server: {exc}", logging.WARNING)
                backoff.attempt = max(backoff.attempt, 30)  # retrying soon cannot help
            except (ChannelEnded, OSError, asyncio.TimeoutError, websockets.WebSocketException,
                    hostchannel.ProtocolError, agent_state.StateError) as exc:
                self._state(f"channel down: {_describe(exc)}", logging.WARNING)
            except Exception:  # noqa: BLE001 - a daemon on a host: log the bug, keep the host reachable
                log.exception("unexpected error on the host channel; reconnecting")
                self._last_state = ""
            if self._stopping.is_set():
                break
            if time.monotonic() - started >= STABLE_AFTER:
                backoff.reset()
            delay = backoff.next_delay()
            log.debug("reconnecting in %.1f s", delay)
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
            except asyncio.TimeoutError:
                pass
        self._state(f"stopped ({self._stop_reason})")
        return 0

    # --- One connection ----------------------------------------------------------------------------

    async def _connect_once(self, state: agent_state.AgentState) -> None:
        url = state.channel_url
        ssl_context = state.ssl_context(self.options.ca_file) if url.startswith("wss://") else None
        if not self._last_state.startswith(("channel down", "refused")):
            # While the server stays unreachable for the same reason, retries log nothing new.
            self._state(f"connecting to {url}")
        async with websockets.connect(
            url, ssl=ssl_context, max_size=hostchannel.MAX_FRAME_BYTES, open_timeout=HANDSHAKE_TIMEOUT,
            ping_interval=20, ping_timeout=20, close_timeout=5, compression=None,
            user_agent_header=f"wvd-agent/{AGENT_VERSION}",
        ) as ws:
            welcome = await self._authenticate(ws, state)
            interval = self.options.heartbeat_interval or welcome["heartbeat_interval"]
            self._state(f"online as {welcome['name']} (host {welcome['session_host_id']}), "
                        f"heartbeat every {interval:g} s")
            connection = _Connection(ws=ws, last_ack=time.monotonic())
            tasks = {
                asyncio.ensure_future(self._heartbeats(connection, interval)),
                asyncio.ensure_future(self._receive(connection, state)),
            }
            if self.rdp_keeper is not None:
                connection.background.add(asyncio.ensure_future(self._keep_rdp_certificate(connection)))
            stop = asyncio.ensure_future(self._stopping.wait())
            try:
                done, _ = await asyncio.wait({*tasks, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (*tasks, stop, *connection.commands, *connection.background):
                    task.cancel()
                for waiter in connection.csr_waiters.values():
                    if not waiter.done():
                        waiter.set_exception(CertificateExchangeFailed("The channel closed."))
                await asyncio.gather(*tasks, stop, *connection.commands, *connection.background,
                                     return_exceptions=True)
            if stop in done:
                await self._say_goodbye(ws)
                return
            for task in done:
                task.result()  # raises why the channel ended

    async def _authenticate(self, ws: ClientConnection, state: agent_state.AgentState) -> hostchannel.Welcome:
        challenge = await self._expect(ws, "challenge")
        key, certificate, certificate_pem = state.load_credentials()
        nonce = hostchannel.decode_base64url(challenge["nonce"])
        signature = proof.sign_challenge(key, nonce, certificate)
        await ws.send(hostchannel.encode(hostchannel.hello(certificate_pem, signature, AGENT_VERSION)))
        return await self._expect(ws, "welcome")

    async def _expect(self, ws: ClientConnection, kind: str) -> Any:
        try:
            frame = await asyncio.wait_for(ws.recv(), HANDSHAKE_TIMEOUT)
        except websockets.ConnectionClosed as exc:
            raise _closed(exc.rcvd.code if exc.rcvd else None, "") from None
        message = hostchannel.decode_server_message(frame)
        if message["type"] == "error":
            refused = message["code"] in (hostchannel.CLOSE_AUTH_FAILED, hostchannel.CLOSE_CREDENTIALS_SUPERSEDED)
            raise (ServerRefused if refused else ChannelEnded)(f"{message['message']} (code {message['code']})")
        if message["type"] != kind:
            raise hostchannel.ProtocolError(f"expected {kind}, the server sent {message['type']}")
        return message

    async def _say_goodbye(self, ws: ClientConnection) -> None:
        try:
            await ws.send(hostchannel.encode(hostchannel.shutdown(f"agent stopped ({self._stop_reason})")))
            await ws.close(hostchannel.CLOSE_GOING_AWAY, "agent stopping")
        except (websockets.WebSocketException, OSError):
            pass

    # --- While online --------------------------------------------------------------------------------

    async def _heartbeats(self, connection: _Connection, interval: float) -> None:
        seq = 0
        while True:
            checks, sessions = await asyncio.gather(run_checks(self.health), self._session_report())
            self._log_health(checks)
            await connection.ws.send(hostchannel.encode(hostchannel.heartbeat(seq, AGENT_VERSION, checks, sessions)))
            seq += 1
            await asyncio.sleep(interval)
            if time.monotonic() - connection.last_ack > interval * MISSED_ACKS + HANDSHAKE_TIMEOUT:
                raise ChannelEnded(f"no heartbeat acknowledged for {MISSED_ACKS} intervals")

    async def _session_report(self) -> list | str:
        try:
            sessions = await self.sessions.list_sessions()
        except OSError as exc:
            log.warning("cannot list user sessions: %s", exc)
            sessions = None
        if sessions is None:
            return "unsupported"
        return [session.report() for session in sessions[: hostchannel.MAX_SESSIONS]]

    def _log_health(self, checks: list[hostchannel.HealthCheck]) -> None:
        failing = {check["name"] for check in checks if not check["ok"]}
        if failing == self._failing_checks:
            return
        self._failing_checks = failing
        if failing:
            details = "; ".join(f"{check['name']}: {check['detail']}" for check in checks if not check["ok"])
            log.warning("health: %s", details)
        else:
            log.info("health: all checks pass")

    async def _receive(self, connection: _Connection, state: agent_state.AgentState) -> None:
        ws = connection.ws
        try:
            async for frame in ws:
                try:
                    message = hostchannel.decode_server_message(frame)
                except hostchannel.ProtocolError as exc:
                    await ws.close(exc.close_code, str(exc)[:120])
                    raise ChannelEnded(f"the server sent a bad message: {exc}") from None
                await self._handle(connection, state, message)
        except websockets.ConnectionClosedError as exc:
            raise _closed(exc.rcvd.code if exc.rcvd else None, connection.server_error) from None
        raise _closed(ws.close_code, connection.server_error)

    async def _handle(self, connection: _Connection, state: agent_state.AgentState,
                      message: hostchannel.ServerMessage) -> None:
        kind = message["type"]
        if kind == "heartbeat_ack":
            connection.last_ack = time.monotonic()
        elif kind == "command":
            if len(connection.commands) >= MAX_CONCURRENT_COMMANDS:
                busy = hostchannel.result(message["id"], "failed", "The agent is busy with other commands.")
                await connection.ws.send(hostchannel.encode(busy))
                return
            task = asyncio.ensure_future(self._run_command(connection, state, message))
            connection.commands.add(task)
            task.add_done_callback(connection.commands.discard)
        elif kind in ("certificate", "certificate_refused"):
            waiter = connection.csr_waiters.get(message["id"])
            if waiter is None or waiter.done():
                log.warning("ignoring a %s nobody asked for", kind)
            elif kind == "certificate":
                waiter.set_result((message["certificate"], message["ca_certificate"]))
            else:
                waiter.set_exception(CertificateExchangeFailed(f"The server refused the CSR: {message['message']}"))
        elif kind == "error":
            connection.server_error = f"{message['message']} (code {message['code']})"
        else:
            raise hostchannel.ProtocolError(f"the server sent an unexpected {kind}")

    async def _exchange_csr(self, connection: _Connection, request: hostchannel.AgentMessage, request_id: str,
                            timeout: float) -> tuple[str, str]:
        """Send a CSR message and wait for the certificate (or the refusal) that names its id."""
        waiter = asyncio.get_running_loop().create_future()
        connection.csr_waiters[request_id] = waiter
        try:
            await connection.ws.send(hostchannel.encode(request))
            return await asyncio.wait_for(waiter, timeout)
        except asyncio.TimeoutError:
            raise CertificateExchangeFailed(f"No certificate arrived within {timeout:g} s.") from None
        except websockets.ConnectionClosed:
            raise CertificateExchangeFailed("The channel closed before the certificate arrived.") from None
        finally:
            connection.csr_waiters.pop(request_id, None)

    async def _keep_rdp_certificate(self, connection: _Connection) -> None:
        async def exchange(request_id: str, csr_pem: str, timeout: float) -> tuple[str, str]:
            request = hostchannel.rdp_certificate_request(request_id, csr_pem)
            return await self._exchange_csr(connection, request, request_id, timeout)

        async def report(presented_sha256: str, detail: str) -> None:
            await connection.ws.send(hostchannel.encode(hostchannel.rdp_certificate_report(presented_sha256, detail)))

        while True:
            try:
                # self.state, not the state the channel opened with: a renewal may have replaced it.
                wait = await self.rdp_keeper.step(self.state, exchange, report)
            except asyncio.CancelledError:
                raise
            except websockets.ConnectionClosed:
                return  # the receive loop reports why the channel ended
            except Exception:  # noqa: BLE001 - the certificate must never take the channel down
                log.exception("RDP certificate: unexpected error; trying again in %g s", RETRY_SECONDS)
                wait = RETRY_SECONDS
            await asyncio.sleep(wait)

    async def _run_command(self, connection: _Connection, state: agent_state.AgentState,
                           command: hostchannel.Command) -> None:
        async def exchange_csr(command_id: str, csr_pem: str, timeout: float) -> tuple[str, str]:
            request = hostchannel.certificate_request(command_id, csr_pem)
            return await self._exchange_csr(connection, request, command_id, timeout)

        def credentials_changed(new_state: agent_state.AgentState) -> None:
            self.state = new_state

        # self.state when there is one, not the state the channel opened with: after a renewal on this channel
        # only the new key and certificate exist (the old files are removed), and a connect order needs them.
        current = self.state if self.state is not None else state
        context = CommandContext(state=current, sessions=self.sessions, rdp_target=self.options.rdp_target,
                                 exchange_csr=exchange_csr, on_credentials_changed=credentials_changed)
        result = await self.registry.run(context, command)
        log.info("command %s (%s): %s %s", command["command"], command["id"], result["status"], result["message"])
        try:
            await connection.ws.send(hostchannel.encode(result))
        except websockets.ConnectionClosed:
            log.warning("command %s (%s): the channel closed before the result was sent", command["command"],
                        command["id"])


def _closed(code: int | None, server_error: str) -> ChannelEnded:
    reason = server_error or hostchannel.CLOSE_REASONS.get(code or 0, "the connection was lost")
    refused = code in (hostchannel.CLOSE_AUTH_FAILED, hostchannel.CLOSE_CREDENTIALS_SUPERSEDED)
    return (ServerRefused if refused else ChannelEnded)(f"closed by the server: {reason} (code {code})")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, websockets.InvalidStatus):
        return f"the server answered HTTP {exc.response.status_code}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return str(exc) or type(exc).__name__
