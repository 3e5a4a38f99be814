"""The commands the agent obeys, as a registry of handlers.

Each handler gets a ``CommandContext`` and the command's validated arguments and returns an
``Outcome``; the registry turns it into the protocol's result. A command without a handler is
answered "unsupported", never ignored. Another module adds a command with
``registry.register("connect", handler)`` (the gateway's connect order plugs in this way, see
``default_registry``).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from hostagent.agent import AGENT_VERSION
from hostagent.agent import state as agent_state
from hostagent.agent.sessions import Outcome, SessionProvider
from wire import hostchannel

log = logging.getLogger("wvd-agent")

CERTIFICATE_WAIT = 60.0


class CertificateExchangeFailed(Exception):
    """The server refused the CSR, did not answer in time, or the channel closed meanwhile."""


@dataclass
class CommandContext:
    """What handlers may use: the agent's state, its session provider, where RDP listens, and the
    channel's ``exchange_csr`` (send a CSR for a command, wait for the certificate)."""

    state: agent_state.AgentState
    sessions: SessionProvider
    rdp_target: tuple[str, int]
    exchange_csr: Callable[[str, str, float], Awaitable[tuple[str, str]]]
    on_credentials_changed: Callable[[agent_state.AgentState], None]


Handler = Callable[[CommandContext, str, dict[str, Any]], Awaitable[Outcome]]


class CommandRegistry:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, name: str, handler: Handler) -> None:
        if not hostchannel.COMMAND_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid command name")
        self._handlers[name] = handler

    def names(self) -> list[str]:
        return sorted(self._handlers)

    async def run(self, context: CommandContext, command: hostchannel.Command) -> hostchannel.Result:
        """Run a command and return its result; never raises."""
        name, command_id = command["command"], command["id"]
        handler = self._handlers.get(name)
        if handler is None:
            return hostchannel.result(command_id, "unsupported",
                                   f"This agent (version {AGENT_VERSION}) does not implement the command {name!r}.")
        try:
            args = hostchannel.validate_command_args(name, command["args"])
        except hostchannel.ProtocolError as exc:
            return hostchannel.result(command_id, "failed", f"Bad arguments: {exc}")
        try:
            outcome = await handler(context, command_id, args)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing handler is reported to the server, not fatal
            log.exception("command %s failed", name)
            return hostchannel.result(command_id, "failed", f"{type(exc).__name__}: {exc}")
        return hostchannel.result(command_id, outcome.status, outcome.message, outcome.data)


async def logoff(context: CommandContext, command_id: str, args: dict[str, Any]) -> Outcome:
    return await context.sessions.logoff(args["session_id"])


async def disconnect(context: CommandContext, command_id: str, args: dict[str, Any]) -> Outcome:
    return await context.sessions.disconnect(args["session_id"])


async def message(context: CommandContext, command_id: str, args: dict[str, Any]) -> Outcome:
    return await context.sessions.send_message(args["session_id"], args["title"], args["text"])


async def renew_certificate(context: CommandContext, command_id: str, args: dict[str, Any]) -> Outcome:
    """New key, CSR over the channel, certificate back, files swapped in one rename."""
    state = context.state
    key = agent_state.new_key()
    try:
        certificate_pem, ca_pem = await context.exchange_csr(command_id, agent_state.make_csr(key, state.name),
                                                             CERTIFICATE_WAIT)
    except CertificateExchangeFailed as exc:
        return Outcome("failed", str(exc))
    try:
        new_state = await asyncio.to_thread(
            agent_state.install_credentials, state.directory, server=state.server, name=state.name,
            session_host_id=state.session_host_id, host_pool=state.host_pool, key=key,
            certificate_pem=certificate_pem, ca_pem=ca_pem,
        )
    except (agent_state.StateError, OSError) as exc:
        return Outcome("failed", f"The new certificate could not be stored: {exc}")
    context.on_credentials_changed(new_state)
    _, certificate, _ = new_state.load_credentials()
    log.info("certificate renewed: serial %x, valid until %s", certificate.serial_number,
             certificate.not_valid_after_utc.isoformat())
    return Outcome("ok", "Certificate renewed.", {"serial_number": format(certificate.serial_number, "x"),
                                                  "not_after": certificate.not_valid_after_utc.isoformat()})


async def connect(context: CommandContext, command_id: str, args: dict[str, Any]) -> Outcome:
    """The broker's connect order: dial the gateway instance holding the client and bridge it to RDP."""
    from hostagent.agent import relay  # noqa: PLC0415 - relay code only agents that relay need

    return await relay.connect(context.state, context.rdp_target, args["relay_url"], args["activity_id"],
                               args["host_ticket"])


def default_registry() -> CommandRegistry:
    registry = CommandRegistry()
    registry.register("connect", connect)
    registry.register("logoff", logoff)
    registry.register("disconnect", disconnect)
    registry.register("message", message)
    registry.register("renew-certificate", renew_certificate)
    return registry
