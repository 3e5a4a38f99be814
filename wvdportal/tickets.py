"""Connection tickets (the feed issues them, the gateway checks them) and host tickets (the broker
issues them with a connect order, the gateway checks them when the agent dials in).

A ticket is ``<kind>.<payload>.<signature>``: kind ``wct1`` (connection) or ``wht1`` (host), the
payload compact JSON in unpadded URL-safe base64, the signature Django's salted HMAC-SHA256 of
``<kind>.<payload>`` with a key derived from SECRET_KEY (SECRET_KEY_FALLBACKS still verify during a
key rotation). Each kind has its own salt, so one kind can never pass as the other even if the kind
label were edited. Only ``[A-Za-z0-9._-]`` appears: safe in URLs, headers and .rdp files, and about
300 characters, far below FreeRDP's 32766-character PAA cookie limit (PROTOCOLS.md §4.6).

Signature and expiry are checked without the database; revocation costs one indexed query.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core import signing

from wvdportal.models import RevokedTicket

logger = logging.getLogger(__name__)

CONNECTION_KIND = "wct1"
HOST_KIND = "wht1"
_SALTS = {CONNECTION_KIND: "wvdportal.tickets.connection", HOST_KIND: "wvdportal.tickets.host"}
_KIND_NAMES = {CONNECTION_KIND: "connection ticket", HOST_KIND: "host ticket"}
# Real tickets are well under 1,000 characters; anything longer is refused before any parsing.
MAX_TICKET_LENGTH = 2048
MAX_RESOURCE_LENGTH = 255
_SHAPE = re.compile(r"(wct1|wht1)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{43})")
_JTI = re.compile(r"[A-Za-z0-9_-]{16,64}")
DEFAULT_HOST_TICKET_LIFETIME = timedelta(seconds=60)


class TicketRefused(Exception):
    """A ticket was refused; ``reason_code`` is one of malformed, bad_signature, expired, revoked,
    wrong_kind, and ``message`` a sentence for the user."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message


@dataclass(frozen=True)
class ConnectionTicket:
    jti: str
    user_id: int
    username: str
    application_group_id: int
    resource: str
    host_pool_id: int
    host_pool_name: str
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class HostTicket:
    jti: str
    connection_activity_id: str
    session_host_id: int
    issued_at: datetime
    expires_at: datetime


def _signer(kind: str) -> signing.Signer:
    return signing.Signer(salt=_SALTS[kind], sep=".", algorithm="sha256")


def _encode(kind: str, claims: dict, lifetime: timedelta) -> tuple[str, str]:
    if not isinstance(lifetime, timedelta) or lifetime <= timedelta(0):
        raise ValueError(f"A ticket lifetime must be a positive duration, not {lifetime!r}.")
    jti = secrets.token_urlsafe(16)
    issued = int(time.time())
    body = {"j": jti, "i": issued, "e": issued + max(1, int(lifetime.total_seconds())), **claims}
    payload = base64.urlsafe_b64encode(
        json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode()
    ).rstrip(b"=").decode()
    ticket = _signer(kind).sign(f"{kind}.{payload}")
    if len(ticket) > MAX_TICKET_LENGTH:
        raise ValueError(f"The ticket would be {len(ticket)} characters; the limit is {MAX_TICKET_LENGTH}.")
    return ticket, jti


def _refuse(reason_code: str, message: str, jti: str = "") -> TicketRefused:
    # Never log the ticket itself: it is a bearer credential.
    logger.info("Ticket refused (%s)%s: %s", reason_code, f" jti={jti}" if jti else "", message)
    return TicketRefused(reason_code, message)


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _decode(ticket: str, kind: str, now: datetime | None) -> dict:
    """Check shape, kind, signature and expiry; return the claims. No database access."""
    if not isinstance(ticket, str) or not ticket or len(ticket) > MAX_TICKET_LENGTH or not ticket.isascii():
        raise _refuse("malformed", "The ticket is missing or not in the expected format.")
    shape = _SHAPE.fullmatch(ticket)
    if shape is None:
        raise _refuse("malformed", "The ticket is not in the expected format.")
    if shape.group(1) != kind:
        raise _refuse("wrong_kind", f"A {_KIND_NAMES[shape.group(1)]} was presented where a "
                                    f"{_KIND_NAMES[kind]} is needed.")
    try:
        _signer(kind).unsign(ticket)
    except signing.BadSignature:
        raise _refuse("bad_signature", "The ticket's signature is not valid.") from None
    try:
        payload = shape.group(2)
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        claims = None
    # Signed by us, so this holds unless the format changed; still checked rather than trusted blindly.
    if (not isinstance(claims, dict)
            or not isinstance(claims.get("j"), str) or not _JTI.fullmatch(claims["j"])
            or not _positive_int(claims.get("i")) or not _positive_int(claims.get("e"))):
        raise _refuse("malformed", "The ticket's contents are not in the expected format.")
    moment = (now or datetime.now(UTC)).timestamp()
    if moment >= claims["e"]:
        raise _refuse("expired", "The ticket has expired; get a new one from the feed.", claims["j"])
    return claims


def _check_not_revoked(jti: str) -> None:
    if RevokedTicket.objects.filter(jti=jti).exists():
        raise _refuse("revoked", "The ticket has been revoked.", jti)


def _at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def issue_connection_ticket(*, user, application_group_id: int, resource: str, host_pool_id: int,
                            host_pool_name: str, lifetime: timedelta | None = None) -> str:
    """A signed, expiring ticket that lets ``user`` reach ``resource`` of one application group
    through the gateway (default lifetime settings.CONNECTION_TICKET_LIFETIME)."""
    if user is None or getattr(user, "pk", None) is None:
        raise ValueError("A connection ticket is issued to a saved user.")
    if not isinstance(resource, str) or not resource or len(resource) > MAX_RESOURCE_LENGTH:
        raise ValueError(f"The resource must be 1-{MAX_RESOURCE_LENGTH} characters.")
    if not _positive_int(application_group_id) or not _positive_int(host_pool_id):
        raise ValueError("application_group_id and host_pool_id must be positive integers.")
    claims = {
        "u": user.pk, "n": user.get_username(), "g": application_group_id, "r": resource,
        "h": host_pool_id, "p": str(host_pool_name),
    }
    ticket, _ = _encode(CONNECTION_KIND, claims, settings.CONNECTION_TICKET_LIFETIME if lifetime is None else lifetime)
    return ticket


def verify_connection_ticket(ticket: str, *, now: datetime | None = None) -> ConnectionTicket:
    """The contents of a valid connection ticket, or TicketRefused. ``now`` (an addition) checks
    expiry at another moment than the current time."""
    claims = _decode(ticket, CONNECTION_KIND, now)
    fields = (claims.get("u"), claims.get("n"), claims.get("g"), claims.get("r"), claims.get("h"), claims.get("p"))
    user_id, username, group_id, resource, pool_id, pool_name = fields
    if not (_positive_int(user_id) and isinstance(username, str) and _positive_int(group_id)
            and isinstance(resource, str) and _positive_int(pool_id) and isinstance(pool_name, str)):
        raise _refuse("malformed", "The ticket's contents are not in the expected format.", claims["j"])
    _check_not_revoked(claims["j"])
    return ConnectionTicket(
        jti=claims["j"], user_id=user_id, username=username, application_group_id=group_id,
        resource=resource, host_pool_id=pool_id, host_pool_name=pool_name,
        issued_at=_at(claims["i"]), expires_at=_at(claims["e"]),
    )


def issue_host_ticket(*, connection_activity_id: str, session_host_id: int,
                      lifetime: timedelta = DEFAULT_HOST_TICKET_LIFETIME) -> str:
    """A short-lived ticket that lets one session host's agent join one connection at the gateway."""
    activity = str(connection_activity_id)
    if not activity or len(activity) > 64:
        raise ValueError("The connection activity id must be 1-64 characters.")
    if not _positive_int(session_host_id):
        raise ValueError("session_host_id must be a positive integer.")
    ticket, _ = _encode(HOST_KIND, {"a": activity, "s": session_host_id}, lifetime)
    return ticket


def verify_host_ticket(ticket: str, *, now: datetime | None = None) -> HostTicket:
    """The contents of a valid host ticket, or TicketRefused (same reason codes as connection tickets)."""
    claims = _decode(ticket, HOST_KIND, now)
    activity, host_id = claims.get("a"), claims.get("s")
    if not (isinstance(activity, str) and activity and _positive_int(host_id)):
        raise _refuse("malformed", "The ticket's contents are not in the expected format.", claims["j"])
    _check_not_revoked(claims["j"])
    return HostTicket(jti=claims["j"], connection_activity_id=activity, session_host_id=host_id,
                      issued_at=_at(claims["i"]), expires_at=_at(claims["e"]))


def revoke_ticket(jti: str, expires_at: datetime) -> None:
    """Refuse the ticket ``jti`` from now until ``expires_at`` (after that it is refused as expired,
    and the purge task drops the row). Revoking twice is harmless."""
    if not isinstance(jti, str) or not _JTI.fullmatch(jti):
        raise ValueError("Not a ticket id.")
    # ignore_conflicts: a concurrent or repeated revocation of the same ticket is not an error.
    RevokedTicket.objects.bulk_create([RevokedTicket(jti=jti, expires_at=expires_at)], ignore_conflicts=True)
    logger.info("Revoked ticket jti=%s", jti)


def purge_expired_revocations(*, now: datetime | None = None) -> int:
    """Delete revocation rows of tickets that have expired anyway; returns how many."""
    deleted, _ = RevokedTicket.objects.filter(expires_at__lte=now or datetime.now(UTC)).delete()
    return deleted
