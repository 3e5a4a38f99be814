"""Reaching a session host's agent from any process: the one sender helper for the host channel.

Each connected agent's consumer is the only member of the channel-layer group ``hostagent.host.<id>``
(a second channel for the same host replaces the first). A Celery worker, the gateway or an admin
action sends it a typed message with ``send_to_host``; ``request_command`` also waits for the
agent's acknowledgement, which the consumer sends back to a reply channel made for that one request,
so it works across processes with the Redis channel layer.

The channel-layer events below are internal to this module and hostagent.consumers; the wire
messages they carry are hostagent.protocol's.
"""
from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from hostagent import protocol
from hostagent.health import host_is_connected

DEFAULT_COMMAND_TIMEOUT = 30.0


def host_group(host_id: int) -> str:
    return f"hostagent.host.{int(host_id)}"


# --- Channel-layer events (between producers and the consumer) ---------------------------------


class SendEvent(TypedDict):
    type: Literal["hostagent.send"]
    message: dict[str, Any]  # a protocol.ServerMessage


class CommandEvent(TypedDict):
    type: Literal["hostagent.command"]
    command: dict[str, Any]  # a protocol.Command
    reply_to: str


class ReplacedEvent(TypedDict):
    type: Literal["hostagent.replaced"]
    channel: str


class CloseEvent(TypedDict):
    type: Literal["hostagent.close"]
    code: int
    reason: str


class ResultEvent(TypedDict):
    type: Literal["hostagent.result"]
    status: str
    message: str
    data: dict[str, Any]


@dataclass(frozen=True)
class CommandResult:
    """A command's outcome: the agent's answer (ok, failed, unsupported), or offline / timeout when
    no agent answered."""

    status: Literal["ok", "failed", "unsupported", "offline", "timeout"]
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# --- Sending -------------------------------------------------------------------------------------


async def asend_to_host(host_id: int, message: protocol.ServerMessage) -> None:
    """Send a typed message to the host's agent if it is connected (fire and forget)."""
    protocol.encode(message)  # a malformed message fails here, in the producer, not in the consumer
    event: SendEvent = {"type": "hostagent.send", "message": dict(message)}
    await get_channel_layer().group_send(host_group(host_id), event)


def send_to_host(host_id: int, message: protocol.ServerMessage) -> None:
    """Synchronous ``asend_to_host`` for views and Celery tasks."""
    async_to_sync(asend_to_host)(host_id, message)


async def aclose_host_channel(host_id: int, code: int, reason: str) -> None:
    """Close the host's channel (its credentials changed, or it was removed)."""
    event: CloseEvent = {"type": "hostagent.close", "code": code, "reason": reason[:200]}
    await get_channel_layer().group_send(host_group(host_id), event)


def close_host_channel(host_id: int, code: int, reason: str) -> None:
    async_to_sync(aclose_host_channel)(host_id, code, reason)


def _command(command: str, args: dict[str, Any] | None) -> protocol.Command:
    message = protocol.command(secrets.token_urlsafe(16), command,
                               protocol.validate_command_args(command, args or {}))
    protocol.encode(message)  # a malformed command fails here, in the producer
    return message


async def _exchange(host_id: int, message: protocol.Command, timeout: float) -> CommandResult:
    """Send a command to the host's group and wait for the result on a reply channel of our own."""
    layer = get_channel_layer()
    # The default "specific." prefix: channels_redis pulls every process-specific channel of one prefix
    # through one shared receive loop, and a reply channel with a prefix of its own could wait behind a
    # consumer's receive that never fetches it (seen as a lost reply under load).
    reply_to = await layer.new_channel()
    event: CommandEvent = {"type": "hostagent.command", "command": dict(message), "reply_to": reply_to}
    await layer.group_send(host_group(host_id), event)
    try:
        reply = await asyncio.wait_for(layer.receive(reply_to), timeout)
    except asyncio.TimeoutError:
        return CommandResult("timeout", f"The host did not answer within {timeout:g} s.")
    return CommandResult(reply["status"], reply.get("message", ""), reply.get("data") or {})


OFFLINE = CommandResult("offline", "The host's agent is not connected.")


async def arequest_command(host_id: int, command: str, args: dict[str, Any] | None = None,
                           timeout: float = DEFAULT_COMMAND_TIMEOUT) -> CommandResult:
    """Send a command to the host's agent and wait up to ``timeout`` seconds for its result."""
    message = _command(command, args)
    if not await database_sync_to_async(host_is_connected)(host_id):
        return OFFLINE
    return await _exchange(host_id, message, timeout)


def request_command(host_id: int, command: str, args: dict[str, Any] | None = None,
                    timeout: float = DEFAULT_COMMAND_TIMEOUT) -> CommandResult:
    """``arequest_command`` for views and Celery tasks. The database is read here, in the caller's
    thread and transaction; only the channel-layer exchange runs in an event loop."""
    message = _command(command, args)
    if not host_is_connected(host_id):
        return OFFLINE
    return async_to_sync(_exchange)(host_id, message, timeout)
