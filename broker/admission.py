"""Whether the user of a connection ticket may still use what it names, asked at every admission.

A ticket is signed and valid for hours; what it grants can be taken away meanwhile: the user unassigned
(or removed from the assigned group), the application group, its desktop or RemoteApp, or its host pool
deleted. Who may use what is the feed's knowledge (assignments, resources), and the gateway must not import
the feed (docs/architecture.md): the feed installs its rule here at start-up (feed/apps.py) and the
gateway asks ``entitlement_denial`` for every connection it admits. Without a rule installed, every
admission is refused: access is never granted by default.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from wire.errors import ErrorCode
from wire.tickets import ConnectionTicket


@dataclass(frozen=True)
class Denial:
    """Why the ticket's user may not use its resource now."""

    code: ErrorCode
    message: str


EntitlementRule = Callable[[object, ConnectionTicket], Denial | None]
_rule: EntitlementRule | None = None


def install_entitlement_rule(rule: EntitlementRule) -> None:
    """The feed's rule (once per process, from its AppConfig.ready)."""
    global _rule
    _rule = rule


def entitlement_denial(user, ticket: ConnectionTicket) -> Denial | None:
    """None when ``user`` (active, as the gateway found it) may use what ``ticket`` names right now."""
    if _rule is None:
        return Denial(ErrorCode.InternalError, "No entitlement rule is installed: the feed app is not loaded.")
    return _rule(user, ticket)
