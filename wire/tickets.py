"""The ticket envelope: the one definition of what a ticket looks like and what its payload says.

A ticket is ``<kind>.<payload>.<signature>``:

* ``kind``: ``wct1``, a connection ticket (the feed puts it in every .rdp file as the gateway access
  token; the gateway checks it), or ``wht1``, a host ticket (the broker puts it in a connect order; the
  gateway checks it when the agent dials in);
* ``payload``: the claims as compact JSON in unpadded base64url (wire.base64url);
* ``signature``: 43 base64url characters, an HMAC-SHA256 of ``<kind>.<payload>`` that core.tickets makes and
  checks with the server's secret key. Nothing here checks a signature: a ticket read here is unverified.

Only ``[A-Za-z0-9._-]`` appears: safe in URLs, headers and .rdp files, and about 300 characters, far
below FreeRDP's 32766-character PAA cookie limit (PROTOCOLS.md §4.6).

Claims, with short keys to keep tickets small (times in seconds since the epoch):

| key | every ticket | connection ticket | host ticket |
| --- | --- | --- | --- |
| j | ticket id (jti) | | |
| i | issued at | | |
| e | expires at | | |
| u, n | | user id, user name | |
| g, r | | application group id, resource | |
| h, p | | host pool id, host pool name | |
| a, s | | | connection activity id, session host id |
| o | | 1 on a single-use web ticket (absent otherwise) | |

A single-use (web) ticket is what the user's page hands the browser client: about a minute long, admitted
once (gateway/records.admit consumes it), and only on the browser's transport (RDCleanPath); an ordinary
connection ticket (the .rdp file's) is refused there, and a web ticket everywhere else.

Pure functions (no Django): core.tickets issues and verifies tickets with them, and the connector reads a
file's ticket to show its expiry.
"""
from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from wire import base64url

CONNECTION_KIND = "wct1"
HOST_KIND = "wht1"
KIND_NAMES = {CONNECTION_KIND: "connection ticket", HOST_KIND: "host ticket"}
# Real tickets are well under 1,000 characters; anything longer is refused before any parsing.
MAX_TICKET_LENGTH = 2048
SIGNATURE_LENGTH = 43  # base64url of an HMAC-SHA256
MAX_RESOURCE_LENGTH = 255
MAX_ACTIVITY_LENGTH = 64
_ENVELOPE = re.compile(r"(wct1|wht1)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")
JTI = re.compile(r"[A-Za-z0-9_-]{16,64}")  # a ticket id (jti)


class TicketFormatError(ValueError):
    """Not a ticket, or a ticket whose payload is not what its kind says; the message is for the user."""


@dataclass(frozen=True)
class Envelope:
    kind: str
    payload: str
    signature: str

    @property
    def signed_part(self) -> str:
        """What the signature covers."""
        return f"{self.kind}.{self.payload}"


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
    single_use: bool = False  # a web ticket: admitted once, on the browser transport only


@dataclass(frozen=True)
class HostTicket:
    jti: str
    connection_activity_id: str
    session_host_id: int
    issued_at: datetime
    expires_at: datetime


# --- writing ---------------------------------------------------------------------------------------


def connection_claims(*, user_id: int, username: str, application_group_id: int, resource: str,
                      host_pool_id: int, host_pool_name: str, single_use: bool = False) -> dict:
    """A connection ticket's own claims; ValueError for a value no ticket may carry."""
    if not _positive_int(user_id):
        raise ValueError("A connection ticket is issued to a saved user.")
    if not isinstance(resource, str) or not resource or len(resource) > MAX_RESOURCE_LENGTH:
        raise ValueError(f"The resource must be 1-{MAX_RESOURCE_LENGTH} characters.")
    if not _positive_int(application_group_id) or not _positive_int(host_pool_id):
        raise ValueError("application_group_id and host_pool_id must be positive integers.")
    claims = {"u": user_id, "n": str(username), "g": application_group_id, "r": resource, "h": host_pool_id,
              "p": str(host_pool_name)}
    if single_use:
        claims["o"] = 1
    return claims


def host_claims(*, connection_activity_id: str, session_host_id: int) -> dict:
    """A host ticket's own claims; ValueError for a value no ticket may carry."""
    activity = str(connection_activity_id)
    if not activity or len(activity) > MAX_ACTIVITY_LENGTH:
        raise ValueError(f"The connection activity id must be 1-{MAX_ACTIVITY_LENGTH} characters.")
    if not _positive_int(session_host_id):
        raise ValueError("session_host_id must be a positive integer.")
    return {"a": activity, "s": session_host_id}


def unsigned(kind: str, claims: dict, *, issued: int, lifetime_seconds: int) -> tuple[str, str]:
    """``<kind>.<payload>`` for ``claims`` with a new ticket id, and that id; the signer appends the rest."""
    if kind not in KIND_NAMES:
        raise ValueError(f"unknown ticket kind {kind!r}")
    jti = secrets.token_urlsafe(16)
    body = {"j": jti, "i": issued, "e": issued + max(1, int(lifetime_seconds)), **claims}
    payload = base64url.encode(json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode())
    return f"{kind}.{payload}", jti


# --- reading -------------------------------------------------------------------------------------


def parse_envelope(ticket: str) -> Envelope:
    """The three parts of a ticket, by shape alone; TicketFormatError when it is not one."""
    if not isinstance(ticket, str) or not ticket or len(ticket) > MAX_TICKET_LENGTH or not ticket.isascii():
        raise TicketFormatError("The ticket is missing or not in the expected format.")
    match = _ENVELOPE.fullmatch(ticket)
    if match is None:
        raise TicketFormatError("The ticket is not in the expected format.")
    return Envelope(*match.groups())


def decode_claims(envelope: Envelope) -> dict:
    """The payload's claims, with the ticket id and both times checked; TicketFormatError otherwise."""
    try:
        claims = json.loads(base64url.decode(envelope.payload))
    except (base64url.Base64urlError, ValueError, RecursionError):
        claims = None
    if (not isinstance(claims, dict)
            or not isinstance(claims.get("j"), str) or not JTI.fullmatch(claims["j"])
            or not _positive_int(claims.get("i")) or not _positive_int(claims.get("e"))):
        raise TicketFormatError("The ticket's contents are not in the expected format.")
    return claims


def connection_ticket(claims: dict) -> ConnectionTicket:
    """A connection ticket's claims (from decode_claims) as a value; TicketFormatError when one is wrong."""
    user_id, username, group_id = claims.get("u"), claims.get("n"), claims.get("g")
    resource, pool_id, pool_name = claims.get("r"), claims.get("h"), claims.get("p")
    once = claims.get("o", 0)
    if not (_positive_int(user_id) and isinstance(username, str) and _positive_int(group_id)
            and isinstance(resource, str) and _positive_int(pool_id) and isinstance(pool_name, str)
            and once in (0, 1) and not isinstance(once, bool)):
        raise TicketFormatError("The ticket's contents are not in the expected format.")
    return ConnectionTicket(
        jti=claims["j"], user_id=user_id, username=username, application_group_id=group_id, resource=resource,
        host_pool_id=pool_id, host_pool_name=pool_name, issued_at=_at(claims["i"]), expires_at=_at(claims["e"]),
        single_use=once == 1,
    )


def host_ticket(claims: dict) -> HostTicket:
    """A host ticket's claims (from decode_claims) as a value; TicketFormatError when one is wrong."""
    activity, host_id = claims.get("a"), claims.get("s")
    if not (isinstance(activity, str) and activity and _positive_int(host_id)):
        raise TicketFormatError("The ticket's contents are not in the expected format.")
    return HostTicket(jti=claims["j"], connection_activity_id=activity, session_host_id=host_id,
                      issued_at=_at(claims["i"]), expires_at=_at(claims["e"]))


def read_connection_ticket(ticket: str) -> ConnectionTicket | None:
    """What a connection ticket says, without checking its signature or expiry (only the gateway can
    trust it); None when it is not a readable connection ticket. For showing, never for deciding."""
    try:
        envelope = parse_envelope(ticket)
        if envelope.kind != CONNECTION_KIND:
            return None
        return connection_ticket(decode_claims(envelope))
    except TicketFormatError:
        return None


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _at(epoch: int) -> datetime:
    try:
        return datetime.fromtimestamp(epoch, UTC)
    except (OverflowError, OSError, ValueError):
        raise TicketFormatError("The ticket's contents are not in the expected format.") from None
