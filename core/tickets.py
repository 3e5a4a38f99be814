"""Connection tickets (the feed issues them, the gateway checks them) and host tickets (the broker
issues them with a connect order, the gateway checks them when the agent dials in).

The envelope and the claims are wire.tickets'; this module signs and checks. The signature is Django's
salted HMAC-SHA256 of ``<kind>.<payload>`` with a key derived from SECRET_KEY (SECRET_KEY_FALLBACKS still
verify during a key rotation). Each kind has its own salt, so one kind can never pass as the other even if
the kind label were edited.

Signature and expiry are checked without the database; revocation costs one indexed query.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction

from core.models import RevokedTicket
from wire import tickets as envelope
from wire.tickets import MAX_TICKET_LENGTH, ConnectionTicket, HostTicket, TicketFormatError

__all__ = ["MAX_TICKET_LENGTH", "ConnectionTicket", "HostTicket", "TicketRefused", "consume_single_use",
           "issue_connection_ticket", "issue_host_ticket", "issue_web_ticket", "purge_expired_revocations",
           "revoke_ticket", "verify_connection_ticket", "verify_host_ticket"]

logger = logging.getLogger(__name__)
T = TypeVar("T", ConnectionTicket, HostTicket)

# Part of every signature: changing a salt invalidates every ticket issued before (they name the module
# where tickets were first signed).
_SALTS = {envelope.CONNECTION_KIND: "wvdportal.tickets.connection", envelope.HOST_KIND: "wvdportal.tickets.host"}
DEFAULT_HOST_TICKET_LIFETIME = timedelta(seconds=60)


class TicketRefused(Exception):
    """A ticket was refused; ``reason_code`` is one of malformed, bad_signature, expired, revoked, used
    (a single-use ticket presented again), wrong_kind, and ``message`` a sentence for the user."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message


def _signer(kind: str) -> signing.Signer:
    return signing.Signer(salt=_SALTS[kind], sep=".", algorithm="sha256")


def _sign(kind: str, claims: dict, lifetime: timedelta) -> str:
    if not isinstance(lifetime, timedelta) or lifetime <= timedelta(0):
        raise ValueError(f"A ticket lifetime must be a positive duration, not {lifetime!r}.")
    unsigned, _ = envelope.unsigned(kind, claims, issued=int(time.time()),
                                    lifetime_seconds=int(lifetime.total_seconds()))
    ticket = _signer(kind).sign(unsigned)
    if len(ticket) > MAX_TICKET_LENGTH:
        raise ValueError(f"The ticket would be {len(ticket)} characters; the limit is {MAX_TICKET_LENGTH}.")
    return ticket


def _refuse(reason_code: str, message: str, jti: str = "") -> TicketRefused:
    # Never log the ticket itself: it is a bearer credential.
    logger.info("Ticket refused (%s)%s: %s", reason_code, f" jti={jti}" if jti else "", message)
    return TicketRefused(reason_code, message)


def _decode(ticket: str, kind: str, now: datetime | None) -> dict:
    """Check shape, kind, signature and expiry; return the claims. No database access."""
    try:
        parts = envelope.parse_envelope(ticket)
    except TicketFormatError as exc:
        raise _refuse("malformed", str(exc)) from None
    if len(parts.signature) != envelope.SIGNATURE_LENGTH:
        raise _refuse("malformed", "The ticket is not in the expected format.")
    if parts.kind != kind:
        raise _refuse("wrong_kind", f"A {envelope.KIND_NAMES[parts.kind]} was presented where a "
                                    f"{envelope.KIND_NAMES[kind]} is needed.")
    try:
        _signer(kind).unsign(ticket)
    except signing.BadSignature:
        raise _refuse("bad_signature", "The ticket's signature is not valid.") from None
    try:
        # Signed by us, so this holds unless the format changed; still checked rather than trusted blindly.
        claims = envelope.decode_claims(parts)
    except TicketFormatError as exc:
        raise _refuse("malformed", str(exc)) from None
    moment = (now or datetime.now(UTC)).timestamp()
    if moment >= claims["e"]:
        raise _refuse("expired", "The ticket has expired; get a new one from the feed.", claims["j"])
    return claims


def _verify(ticket: str, kind: str, read: Callable[[dict], T], now: datetime | None) -> T:
    """The ticket's value (``read`` makes it from the claims) once every check has passed."""
    claims = _decode(ticket, kind, now)
    try:
        value = read(claims)
    except TicketFormatError as exc:
        raise _refuse("malformed", str(exc), claims["j"]) from None
    revoked = RevokedTicket.objects.filter(jti=value.jti).values_list("used", flat=True).first()
    if revoked is not None:
        if revoked:
            raise _refuse("used", "This single-use ticket has been used already.", value.jti)
        raise _refuse("revoked", "The ticket has been revoked.", value.jti)
    return value


def issue_connection_ticket(*, user, application_group_id: int, resource: str, host_pool_id: int,
                            host_pool_name: str, lifetime: timedelta | None = None) -> str:
    """A signed, expiring ticket that lets ``user`` reach ``resource`` of one application group
    through the gateway (default lifetime settings.CONNECTION_TICKET_LIFETIME)."""
    if user is None or getattr(user, "pk", None) is None:
        raise ValueError("A connection ticket is issued to a saved user.")
    claims = envelope.connection_claims(
        user_id=user.pk, username=user.get_username(), application_group_id=application_group_id,
        resource=resource, host_pool_id=host_pool_id, host_pool_name=host_pool_name,
    )
    return _sign(envelope.CONNECTION_KIND, claims,
                 settings.CONNECTION_TICKET_LIFETIME if lifetime is None else lifetime)


def issue_web_ticket(*, user, application_group_id: int, resource: str, host_pool_id: int,
                     host_pool_name: str) -> str:
    """A connection ticket for the browser client: single use, short-lived (settings.WEB_TICKET_LIFETIME,
    60 s by default), accepted only on the gateway's RDCleanPath transport. The user's page mints one
    per click and hands it to the page's client, which sends it as RDCleanPath's proxy_auth (never in a
    URL)."""
    if user is None or getattr(user, "pk", None) is None:
        raise ValueError("A connection ticket is issued to a saved user.")
    claims = envelope.connection_claims(
        user_id=user.pk, username=user.get_username(), application_group_id=application_group_id,
        resource=resource, host_pool_id=host_pool_id, host_pool_name=host_pool_name, single_use=True,
    )
    return _sign(envelope.CONNECTION_KIND, claims, settings.WEB_TICKET_LIFETIME)


def consume_single_use(ticket: ConnectionTicket) -> bool:
    """Use up a single-use ticket (call it inside the admission's transaction): True the first time,
    False when it was used (or revoked) already. The unique jti decides a race: one insert wins."""
    try:
        with transaction.atomic():  # a savepoint: the caller's transaction survives the loser's insert
            RevokedTicket.objects.create(jti=ticket.jti, expires_at=ticket.expires_at, used=True)
    except IntegrityError:
        logger.info("Single-use ticket presented again jti=%s", ticket.jti)
        return False
    return True


def verify_connection_ticket(ticket: str, *, now: datetime | None = None) -> ConnectionTicket:
    """The contents of a valid connection ticket, or TicketRefused. ``now`` (an addition) checks
    expiry at another moment than the current time. Whether its user's access changed since it was
    issued is the admission's next question (core.access.ticket_predates_access_change)."""
    return _verify(ticket, envelope.CONNECTION_KIND, envelope.connection_ticket, now)


def issue_host_ticket(*, connection_activity_id: str, session_host_id: int,
                      lifetime: timedelta = DEFAULT_HOST_TICKET_LIFETIME) -> str:
    """A short-lived ticket that lets one session host's agent join one connection at the gateway."""
    claims = envelope.host_claims(connection_activity_id=connection_activity_id, session_host_id=session_host_id)
    return _sign(envelope.HOST_KIND, claims, lifetime)


def verify_host_ticket(ticket: str, *, now: datetime | None = None) -> HostTicket:
    """The contents of a valid host ticket, or TicketRefused (same reason codes as connection tickets)."""
    return _verify(ticket, envelope.HOST_KIND, envelope.host_ticket, now)


def revoke_ticket(jti: str, expires_at: datetime) -> None:
    """Refuse the ticket ``jti`` from now until ``expires_at`` (after that it is refused as expired,
    and the purge task drops the row). Revoking twice is harmless."""
    if not isinstance(jti, str) or not envelope.JTI.fullmatch(jti):
        raise ValueError("Not a ticket id.")
    # ignore_conflicts: a concurrent or repeated revocation of the same ticket is not an error.
    RevokedTicket.objects.bulk_create([RevokedTicket(jti=jti, expires_at=expires_at)], ignore_conflicts=True)
    logger.info("Revoked ticket jti=%s", jti)


def purge_expired_revocations(*, now: datetime | None = None) -> int:
    """Delete revocation rows of tickets that have expired anyway; returns how many."""
    deleted, _ = RevokedTicket.objects.filter(expires_at__lte=now or datetime.now(UTC)).delete()
    return deleted
