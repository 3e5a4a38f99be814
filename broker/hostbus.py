"""Reaching a session host's agent from any process: the channel-layer side of the host channel.

Each connected agent's consumer (hostagent.consumers) is the only member of the channel-layer group
``hostagent.host.<id>`` (a second channel for the same host replaces the first). Any process — a Celery
worker placing a connection, an admin action, the portal — sends it a typed event through the helpers
here: ``send_to_host`` for a message the agent obeys without answering (the broker's connect order),
``close_host_channel``, and ``aexchange`` for a command whose result the consumer sends back to a reply
channel made for that one request, so it works across processes with the Redis channel layer
(hostagent.commands adds the "is the agent there at all" check in front of it).

The broker owns this bus because it is the bottom of the apps that talk to hosts: the consumer above it
handles these events, and nothing here knows the consumer. The wire messages the events carry are
wire.hostchannel's.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from wire import hostchannel

DEFAULT_COMMAND_TIMEOUT = 30.0


def host_group(host_id: int) -> str:
    return f"hostagent.host.{int(host_id)}"


# --- Channel-layer events (between producers and the consumer) ---------------------------------


class SendEvent(TypedDict):
    type: Literal["hostagent.send"]
    message: dict[str, Any]  # a hostchannel.ServerMessage


class CommandEvent(TypedDict):
    type: Literal["hostagent.command"]
    command: dict[str, Any]  # a hostchannel.Command
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


async def asend_to_host(host_id: int, message: hostchannel.ServerMessage) -> None:
    """Send a typed message to the host's agent if it is connected (fire and forget)."""
    hostchannel.encode(message)  # a malformed message fails here, in the producer, not in the consumer
    event: SendEvent = {"type": "hostagent.send", "message": dict(message)}
    await get_channel_layer().group_send(host_group(host_id), event)


def send_to_host(host_id: int, message: hostchannel.ServerMessage) -> None:
    """Synchronous ``asend_to_host`` for views and Celery tasks."""
    async_to_sync(asend_to_host)(host_id, message)


async def aclose_host_channel(host_id: int, code: int, reason: str) -> None:
    """Close the host's channel (its credentials changed, or it was removed)."""
    event: CloseEvent = {"type": "hostagent.close", "code": code, "reason": reason[:200]}
    await get_channel_layer().group_send(host_group(host_id), event)


def close_host_channel(host_id: int, code: int, reason: str) -> None:
    async_to_sync(aclose_host_channel)(host_id, code, reason)


async def aexchange(host_id: int, message: hostchannel.Command, timeout: float = DEFAULT_COMMAND_TIMEOUT) -> CommandResult:
    """Send a command to the host's group and wait for its result on a reply channel of our own."""
    hostchannel.encode(message)  # a malformed command fails here, in the producer
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
