"""The persistent host channel: one WebSocket per connected agent, at /ws/hostagent/.

The agent proves who it is by signing this connection's nonce with its certificate's key (see
broker.hostcertificates), then sends heartbeats and answers commands. Every frame is validated by
wire.hostchannel; a bad one closes the channel with a reason code and a log line, never touching
any host's records. Commands from other processes arrive as channel-layer events (broker.hostbus).

The receive loop is kept lean for thousands of idle channels: no per-frame database-connection
cleanup hop (Channels' default dispatch does one per message); database work happens in
database_sync_to_async calls, which clean up connections themselves.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
import weakref
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import InterfaceError, OperationalError

from broker import hostcertificates
from broker.hostbus import CloseEvent, CommandEvent, ReplacedEvent, ResultEvent, SendEvent, host_group
from core import logcontext, metrics
from hostagent import health
from hostagent.models import HostChannel
from wire import hostchannel

log = logging.getLogger(__name__)

AUTH_TIMEOUT = 15.0
MAX_PENDING_COMMANDS = 64
# A command the agent never answers is forgotten after this; its requester timed out long before.
PENDING_COMMAND_LIFETIME = 600.0
# An agent asks for its RDP certificate when it has none and again two thirds into its life; anything
# beyond this many in an hour on one channel is refused (each costs a signature and a database row).
RDP_CERTIFICATES_PER_HOUR = 12


_hello_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def hello_turns() -> asyncio.Semaphore:
    """This process's turns for hellos (WVD_HOST_HELLOS_IN_FLIGHT), one set per event loop (tests run several).

    A hello's work runs in the database thread that every heartbeat of this instance queues for. Without a bound
    a reconnecting fleet put thousands of hellos in that queue: heartbeats waited behind them, and hellos that
    had already been refused for lateness still ran (bench/RESULTS.md). A hello now waits for a turn first, and
    one refused while it waited never reaches the database."""
    loop = asyncio.get_running_loop()
    turns = _hello_turns.get(loop)
    if turns is None:
        turns = _hello_turns[loop] = asyncio.Semaphore(settings.HOST_HELLOS_IN_FLIGHT)
    return turns


@dataclass
class PendingCommand:
    reply_to: str
    command: str
    sent_at: float
    new_certificate_id: int | None = None
    previous_certificate_id: int | None = None


class HostAgentConsumer(AsyncWebsocketConsumer):
    host_id: int | None = None
    auth_timer: asyncio.TimerHandle | None = None
    auth_task: asyncio.Future | None = None

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' default dispatch runs close_old_connections in a thread before every message;
        # heartbeats do not need it, and the database calls below clean up after themselves.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None or message["type"].startswith("_"):
            log.warning("host channel: ignoring event of unknown type %r", message["type"][:60])
            return
        try:
            await handler(message)
        except (OperationalError, InterfaceError) as exc:
            # The database is down or restarting: a log line, not a traceback per frame. The agent is told to
            # come back (it reconnects with backoff and authenticates again once the database answers).
            log.warning("host channel from %s (host %s): the database is unreachable during %s: %s", self.peer,
                        self.host_id, message["type"], logcontext.first_line(exc))
            if message["type"] == "websocket.disconnect":
                raise StopConsumer() from None
            await self.refuse(hostchannel.CLOSE_INTERNAL_ERROR, "The server cannot reach its database; try again.")

    # --- Connection lifecycle ----------------------------------------------------------------------

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        client = self.scope.get("client") or (None, None)
        self.peer = f"{client[0]}:{client[1]}"
        self.remote_address = client[0]
        self.nonce: bytes | None = secrets.token_bytes(hostchannel.NONCE_BYTES)
        self.host_id: int | None = None
        self.host_name = ""
        self.closing = False
        self.replaced = False
        self.shut_down = False
        self.close_reason = ""
        self.pending: dict[str, PendingCommand] = {}
        self.last_sessions: Any = None
        self.last_checks: list[hostchannel.HealthCheck] | None = None  # of the last heartbeat stored
        self.rdp_certificates_issued: list[float] = []
        self.counted = False  # in wvd_host_channels_connected
        await self.accept()
        await self.send_message(hostchannel.challenge(self.nonce))
        self.auth_timer = asyncio.get_running_loop().call_later(AUTH_TIMEOUT, self._auth_timed_out)

    def _auth_timed_out(self) -> None:
        if self.host_id is None and not self.closing:
            self.auth_task = asyncio.ensure_future(
                self.refuse(hostchannel.CLOSE_AUTH_TIMEOUT, "No hello within the time allowed.")
            )

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        if self.auth_timer is not None:
            self.auth_timer.cancel()
        code = message.get("code")
        if getattr(self, "counted", False):
            self.counted = False
            metrics.HOST_CHANNELS.dec()
        if self.host_id is not None:
            await self.channel_layer.group_discard(host_group(self.host_id), self.channel_name)
            for command_id in list(self.pending):
                await self.answer(command_id, "failed", "The host channel closed before the host answered.")
            if not self.replaced:
                known = hostchannel.CLOSE_REASONS.get(code)
                why = self.close_reason or (f"code {code}: {known}" if known else f"code {code}")
                reason = (f"The agent shut down: {self.close_reason}" if self.shut_down
                          else f"The host channel closed ({why}).")
                await database_sync_to_async(health.channel_closed)(self.host_id, self.channel_name, reason[:300])
            log.info("host %s (%s) disconnected from %s: code %s %s", self.host_id, self.host_name, self.peer,
                     code, self.close_reason)
        raise StopConsumer()

    async def send_message(self, message: hostchannel.ServerMessage) -> None:
        await self.send(text_data=hostchannel.encode(message))

    async def refuse(self, code: int, reason: str) -> None:
        """Close the channel with a reason code; the agent also gets the reason as an error message."""
        if self.closing:
            return
        self.closing = True
        self.close_reason = reason
        level = logging.INFO if code in (hostchannel.CLOSE_REPLACED, hostchannel.CLOSE_NORMAL) else logging.WARNING
        log.log(level, "host channel from %s (host %s): closing with %s: %s", self.peer, self.host_id, code, reason)
        try:
            await self.send_message(hostchannel.error(code, reason))
        except hostchannel.ProtocolError:
            pass
        await self.close(code=code)

    # --- Frames from the agent -------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        try:
            message = hostchannel.decode_agent_message(text_data if text_data is not None else bytes_data)
        except hostchannel.ProtocolError as exc:
            await self.refuse(exc.close_code, str(exc))
            return
        kind = message["type"]
        if self.host_id is None:
            if kind != "hello":
                await self.refuse(hostchannel.CLOSE_PROTOCOL_ERROR, "The first message must be hello.")
                return
            await self.authenticate(message)
        elif kind == "heartbeat":
            await self.on_heartbeat(message)
        elif kind == "result":
            await self.on_result(message)
        elif kind == "csr":
            await self.on_certificate_request(message)
        elif kind == "rdp_csr":
            await self.on_rdp_certificate_request(message)
        elif kind == "rdp_certificate":
            await database_sync_to_async(hostcertificates.record_rdp_certificate)(
                self.host_id, message["presented_sha256"], message["detail"]
            )
        elif kind == "shutdown":
            self.shut_down = True
            self.close_reason = message["reason"]
            await database_sync_to_async(health.record_shutdown)(self.host_id, message["reason"])
        else:
            await self.refuse(hostchannel.CLOSE_PROTOCOL_ERROR, f"A {kind} message is not expected now.")

    async def authenticate(self, hello: hostchannel.Hello) -> None:
        nonce, self.nonce = self.nonce, None  # one use: a second hello can never reuse it
        if nonce is None:
            await self.refuse(hostchannel.CLOSE_PROTOCOL_ERROR, "Only one hello per channel.")
            return
        async with hello_turns():
            if self.closing:  # refused while it waited for its turn (no hello in time): nothing to do
                return
            try:
                signature = hostchannel.decode_base64url(hello["signature"], "hello.signature")
                host = await database_sync_to_async(hostcertificates.authenticate_host)(
                    hello["certificate"], nonce, signature
                )
            except (hostchannel.ProtocolError, hostcertificates.HostAuthenticationRefused) as exc:
                await self.refuse(hostchannel.CLOSE_AUTH_FAILED, str(exc))
                return
            if self.closing:
                return
            self.auth_timer.cancel()
            self.host_id, self.host_name = host.session_host_id, host.name
            await self.channel_layer.group_add(host_group(self.host_id), self.channel_name)
            await database_sync_to_async(health.channel_opened)(
                self.host_id, self.channel_name, certificate_id=host.certificate_id,
                remote_address=self.remote_address, agent_version=hello["agent_version"],
            )
        replaced: ReplacedEvent = {"type": "hostagent.replaced", "channel": self.channel_name}
        await self.channel_layer.group_send(host_group(self.host_id), replaced)
        await self.send_message(hostchannel.welcome(self.host_id, self.host_name, health.heartbeat_interval()))
        self.counted = True
        metrics.HOST_CHANNELS.inc()
        log.info("host %s (%s) connected from %s, agent %s", self.host_id, self.host_name, self.peer,
                 hello["agent_version"])

    async def on_heartbeat(self, heartbeat: hostchannel.Heartbeat) -> None:
        arrived = time.monotonic()
        # Sessions are written only when the report changed, and the previous checks come from this channel's
        # memory: most heartbeats are one UPDATE … RETURNING.
        sync_sessions = heartbeat["sessions"] != self.last_sessions
        status = await database_sync_to_async(health.record_heartbeat)(
            self.host_id, heartbeat, sync_sessions=sync_sessions, previous_checks=self.last_checks
        )
        if status is None:
            await self.refuse(hostchannel.CLOSE_CREDENTIALS_SUPERSEDED, "This session host no longer exists.")
            return
        self.last_sessions, self.last_checks = heartbeat["sessions"], heartbeat["checks"]
        await self.send_message(hostchannel.heartbeat_ack(heartbeat["seq"]))
        metrics.HEARTBEAT_SECONDS.observe(time.monotonic() - arrived)
        # Re-join the host's group with every heartbeat (one ZADD): a Redis that restarted forgot every group
        # while this channel lived on, and commands and connect orders reach the host again within one
        # heartbeat; channels_redis also drops members after a day (group_expiry).
        await self.channel_layer.group_add(host_group(self.host_id), self.channel_name)

    async def on_result(self, result: hostchannel.Result) -> None:
        pending = self.pending.get(result["id"])
        if pending is None:
            # A fire-and-forget command, or one whose requester gave up long ago.
            log.debug("host %s: result for command %s nobody waits for", self.host_id, result["id"])
            return
        if pending.new_certificate_id is not None:
            finish = hostcertificates.complete_renewal if result["status"] == "ok" else hostcertificates.abandon_renewal
            await database_sync_to_async(finish)(self.host_id, pending.new_certificate_id,
                                                 pending.previous_certificate_id)
        await self.answer(result["id"], result["status"], result["message"], result["data"])

    async def on_certificate_request(self, request: hostchannel.CertificateRequest) -> None:
        pending = self.pending.get(request["id"])
        if pending is None or pending.command != "renew-certificate" or pending.new_certificate_id is not None:
            await self.refuse(hostchannel.CLOSE_PROTOCOL_ERROR, "A CSR must answer a pending renew-certificate command.")
            return
        try:
            cert_pem, ca_pem, new_id, previous_id = await database_sync_to_async(
                hostcertificates.issue_renewed_certificate
            )(self.host_id, request["csr"])
        except hostcertificates.RenewalRefused as exc:
            log.warning("host %s: renewal refused: %s", self.host_id, exc)
            await self.send_message(hostchannel.certificate_refused(request["id"], str(exc)))
            await self.answer(request["id"], "failed", f"The CSR was refused: {exc}")
            return
        pending.new_certificate_id, pending.previous_certificate_id = new_id, previous_id
        await self.send_message(hostchannel.issued_certificate(request["id"], cert_pem, ca_pem))

    async def on_rdp_certificate_request(self, request: hostchannel.RdpCertificateRequest) -> None:
        now = time.monotonic()
        self.rdp_certificates_issued = [at for at in self.rdp_certificates_issued if now - at < 3600]
        if len(self.rdp_certificates_issued) >= RDP_CERTIFICATES_PER_HOUR:
            log.warning("host %s: RDP certificate request refused: %d issued in the last hour", self.host_id,
                        len(self.rdp_certificates_issued))
            await self.send_message(hostchannel.certificate_refused(
                request["id"], f"More than {RDP_CERTIFICATES_PER_HOUR} RDP certificates in an hour; try later."))
            return
        try:
            cert_pem, ca_pem = await database_sync_to_async(hostcertificates.issue_rdp_certificate)(
                self.host_id, request["csr"]
            )
        except hostcertificates.RenewalRefused as exc:
            log.warning("host %s: RDP certificate request refused: %s", self.host_id, exc)
            await self.send_message(hostchannel.certificate_refused(request["id"], str(exc)))
            return
        self.rdp_certificates_issued.append(now)
        await self.send_message(hostchannel.issued_certificate(request["id"], cert_pem, ca_pem))

    async def answer(self, command_id: str, status: str, message: str = "", data: dict | None = None) -> None:
        """Send a command's result to whoever waits for it, once."""
        pending = self.pending.pop(command_id, None)
        if pending is None:
            return
        event: ResultEvent = {"type": "hostagent.result", "status": status, "message": message, "data": data or {}}
        await self.channel_layer.send(pending.reply_to, event)

    # --- Events from other processes (broker.hostbus) ---------------------------------------------

    async def hostagent_send(self, event: SendEvent) -> None:
        if not self.closing:
            await self.send_message(event["message"])

    async def hostagent_command(self, event: CommandEvent) -> None:
        command = event["command"]
        if self.closing:
            return
        self._forget_stale_commands()
        if len(self.pending) >= MAX_PENDING_COMMANDS:
            result: ResultEvent = {"type": "hostagent.result", "status": "failed",
                                   "message": "Too many commands are waiting for this host.", "data": {}}
            await self.channel_layer.send(event["reply_to"], result)
            return
        self.pending[command["id"]] = PendingCommand(event["reply_to"], command["command"], time.monotonic())
        await self.send_message(command)

    def _forget_stale_commands(self) -> None:
        cutoff = time.monotonic() - PENDING_COMMAND_LIFETIME
        for command_id in [key for key, pending in self.pending.items() if pending.sent_at < cutoff]:
            del self.pending[command_id]

    async def hostagent_replaced(self, event: ReplacedEvent) -> None:
        if event["channel"] == self.channel_name or self.closing:
            return
        # Two channels that authenticated at the same moment both get the other's event: the one
        # the database names as the holder stays.
        if await database_sync_to_async(HostChannel.objects.holder)(self.host_id) != self.channel_name:
            self.replaced = True
            await self.refuse(hostchannel.CLOSE_REPLACED, "A newer channel for this host replaced this one.")

    async def hostagent_close(self, event: CloseEvent) -> None:
        await self.refuse(event["code"], event["reason"])
