"""What the gateway writes and reads in the database, at setup and at the end of a connection.

Blocking functions, called from the gateway's event loop through a worker thread; none of them runs
per frame. Every refusal is answered with its documented error code's MS-TSGU status (wire/errors.py),
so the client shows a meaningful error, and recorded as a failed Connection that support finds by its
activity id — except a ticket that is not ours at all (malformed, forged), which is counted and logged
instead: unauthenticated load writes nothing (gateway/preauth.py).
"""
from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from broker.admission import Denial, entitlement_denial
from broker.choices import ConnectionState, ConnectionTransport, EndReason
from broker.models import Connection, GatewayInstance, HostPool
from broker.placement import release_reservation
from broker.tasks import orchestrate_connection
from core.access import ticket_predates_access_change
from core.tickets import ConnectionTicket, TicketRefused, consume_single_use, verify_connection_ticket
from gateway.preauth import garbage_tickets
from gateway.relay import RelayResult, Side
from wire.errors import TICKET_REFUSAL_CODES, ErrorCode, describe
from wire.tickets import read_connection_ticket

log = logging.getLogger(__name__)


def as_hresult(status: int) -> int:
    """The failure form of a status for HANDSHAKE/TUNNEL/CHANNEL responses (HRESULT_FROM_WIN32):
    clients only treat codes with bit 31 set as refusals there."""
    return status if status & 0x80000000 else 0x80070000 | (status & 0xFFFF)


@dataclass(frozen=True)
class Admission:
    connection_pk: int
    activity_id: str
    ticket: ConnectionTicket


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str
    activity_id: str

    @property
    def hresult(self) -> int:
        return as_hresult(int(describe(self.code).gateway_status))


def refusal_for(code: str, message: str, activity_id: str) -> Refusal:
    return Refusal(code=code, message=message or describe(code).message, activity_id=activity_id)


def _client_ip(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def _instance(name: str) -> GatewayInstance | None:
    return GatewayInstance.objects.filter(name=name).first()


# Ticket refusals that prove nothing about who sent it: not shaped like a ticket, not signed by us, not a
# connection ticket. An expired or revoked ticket was ours and names a user: that refusal is recorded.
NOT_OURS = frozenset({"malformed", "bad_signature", "wrong_kind"})


def admit(paa_token: str, client_address: str, instance_name: str, *, transport: str = "",
          refuse_with: Denial | None = None) -> Admission | Refusal:
    """Step 6: check the client's ticket, and that its user may still use what it names: the account active,
    no access change since the ticket was issued (core/access.py), the resource there and still theirs
    (broker/admission.py). Then open its Connection record; a refusal is recorded too.

    ``transport`` (a ConnectionTransport) is recorded and decides which tickets it takes: a single-use web
    ticket only on RDCleanPath, an ordinary one everywhere else. A web ticket is consumed here, in the
    transaction that opens the record. ``refuse_with`` is a refusal the transport has already decided (a
    foreign Origin): recorded with the ticket's user and resource once the ticket proves who it is, and
    the ticket is not consumed."""
    where = dict(client_address=_client_ip(client_address), gateway_instance=_instance(instance_name),
                 transport=transport)
    try:
        ticket = verify_connection_ticket(paa_token)
    except TicketRefused as refused:
        code = TICKET_REFUSAL_CODES.get(refused.reason_code, ErrorCode.ConnectionFailedTicketInvalid)
        if refused.reason_code in NOT_OURS:
            # Nothing proves a user or resource: no record per request (unauthenticated load must not
            # write), a count and a rate-limited log line instead (gateway/preauth.py).
            garbage_tickets.note(f"from {client_address or '?'} ({refused.reason_code})")
            return refusal_for(code, refused.message, "")
        # Expired, revoked or used: our signature holds, so who and what the ticket names is ours to
        # record; support, and the user's own page, find the refusal under that user and resource.
        named = read_connection_ticket(paa_token)
        if named is not None:
            where.update(user=get_user_model().objects.filter(pk=named.user_id).first(), username=named.username,
                         application_group_id=named.application_group_id, resource_name=named.resource,
                         host_pool_id=named.host_pool_id)
        connection = Connection.objects.refuse(code, refused.message, **where)
        return refusal_for(code, refused.message, str(connection.activity_id))
    user = get_user_model().objects.filter(pk=ticket.user_id, is_active=True).first()
    fields = dict(where, username=ticket.username, application_group_id=ticket.application_group_id,
                  resource_name=ticket.resource, host_pool_id=ticket.host_pool_id)
    # The most telling reason first: the transport's own, the ticket's kind, the account, the resource,
    # the assignment, then any other change.
    browser = transport == ConnectionTransport.RDCLEANPATH
    if refuse_with is not None:
        denial = refuse_with
    elif ticket.single_use != browser:
        denial = Denial(ErrorCode.ConnectionFailedTicketWrongClient, (
            "A .rdp file's ticket was presented by a browser client." if browser else
            "A browser client's single-use ticket was presented by another kind of client."))
    elif user is None:
        denial = Denial(ErrorCode.ConnectionFailedUserNotAuthorized, "This account no longer exists or is disabled.")
    elif not HostPool.objects.filter(pk=ticket.host_pool_id).exists():
        denial = Denial(ErrorCode.ConnectionFailedResourceNotFound, "The host pool of this resource no longer exists.")
    else:
        denial = entitlement_denial(user, ticket)
    if denial is None and ticket_predates_access_change(user.pk, ticket.issued_at):
        denial = Denial(ErrorCode.ConnectionFailedTicketRevoked, "Your access changed after this connection file was "
                        "issued (you signed out, or your password or assignments changed); download it again.")
    if denial is None:
        try:
            with transaction.atomic():
                # Consumed with the record it opens: a second use (even a concurrent one) finds the row.
                if ticket.single_use and not consume_single_use(ticket):
                    raise _AlreadyUsed
                connection = Connection.objects.admit(**fields, user=user)
        except _AlreadyUsed:
            denial = Denial(ErrorCode.ConnectionFailedTicketAlreadyUsed, "This single-use ticket has been used already.")
        except IntegrityError:  # the group or pool was deleted a moment ago
            denial = Denial(ErrorCode.ConnectionFailedResourceNotFound, "The resource was deleted just now.")
        else:
            return Admission(connection_pk=connection.pk, activity_id=str(connection.activity_id), ticket=ticket)
    connection = Connection.objects.refuse(denial.code, denial.message, **fields, user=user)
    log.info("refused %s's ticket for %s: %s (%s)", ticket.username, ticket.resource, denial.code, denial.message)
    return refusal_for(denial.code, denial.message, str(connection.activity_id))


class _AlreadyUsed(Exception):
    """A single-use ticket lost the race for its one admission (rolls the admission back)."""


def _requested_name(resource: str) -> str:
    """mstsc may send ``host:port``; FreeRDP sends the bare name."""
    name = resource.strip()
    if name.startswith("[") and "]" in name:
        return name[1:name.index("]")].lower()
    if name.count(":") == 1:
        name = name.split(":", 1)[0]
    return name.lower()


def request_channel(connection_pk: int, resources: tuple[str, ...], port: int, client_name: str,
                    instance_name: str) -> Refusal | None:
    """Step 6-7: the channel must name the ticket's pool; then hand orchestration to the broker."""
    connection = Connection.objects.select_related("host_pool").get(pk=connection_pk)
    Connection.objects.filter(pk=connection_pk).record_client_name(client_name)
    pool_name = connection.host_pool.name.lower() if connection.host_pool else ""
    if not resources or _requested_name(resources[0]) != pool_name:
        code = ErrorCode.ConnectionFailedResourceMismatch
        message = f"This connection file is for {connection.host_pool}, not for {resources[0] if resources else '?'}."
        fail(connection_pk, code, message)
        return refusal_for(code, message, str(connection.activity_id))
    transaction.on_commit(lambda: orchestrate_connection.delay(connection_pk, instance_name))
    return None


def setup_outcome(connection_pk: int) -> Refusal | None:
    """The broker's verdict while the client waits: a Refusal once the connection has failed."""
    row = Connection.objects.filter(pk=connection_pk).values("state", "error_code", "error_message",
                                                              "activity_id").first()
    if row is None:
        return refusal_for(ErrorCode.InternalError, "The connection record vanished.", "")
    if row["state"] == ConnectionState.FAILED:
        return refusal_for(row["error_code"], row["error_message"], str(row["activity_id"]))
    return None


def host_did_not_arrive(connection_pk: int) -> Refusal:
    """The client's wait for its host ran out. With no host chosen by then the broker never placed it (its
    workers are stopped, late, or cut off from Redis or the database): ConnectionFailedOrchestrationTimeout.
    A host chosen that did not dial back: ConnectionFailedReverseConnectTimeout, its slot freed."""
    code = ErrorCode.ConnectionFailedOrchestrationTimeout
    if not Connection.objects.filter(pk=connection_pk, state=ConnectionState.STARTED).fail(
            code, "No session host was chosen while the client waited."):
        code = ErrorCode.ConnectionFailedReverseConnectTimeout
        if not release_reservation(connection_pk, code, "The session host did not connect back in time."):
            outcome = setup_outcome(connection_pk)
            if outcome is not None:
                return outcome
    activity = Connection.objects.filter(pk=connection_pk).values_list("activity_id", flat=True).first()
    return refusal_for(code, describe(code).message, str(activity or ""))


def client_left(connection_pk: int) -> Refusal:
    """The client went away before the host arrived: free the host slot (a no-op once decided)."""
    release_reservation(connection_pk, ErrorCode.ConnectionFailedClientDisconnect,
                        "The client closed the connection before the session host arrived.")
    return setup_outcome(connection_pk) or refusal_for(ErrorCode.ConnectionFailedClientDisconnect, "", "")


def fail(connection_pk: int, code: str, message: str) -> None:
    """Fail a connection during setup (nothing happens to one that already ended)."""
    Connection.objects.filter(pk=connection_pk).fail(code, message)


def fail_activity(activity_id: str, code: str, message: str) -> None:
    Connection.objects.filter(activity_id=activity_id).fail(code, message)


def mark_host_connected(activity_id: str) -> int | None:
    """The agent's reverse connection arrived; returns the connection's pk."""
    Connection.objects.filter(activity_id=activity_id).host_connected()
    return Connection.objects.filter(activity_id=activity_id).values_list("pk", flat=True).first()


def mark_relay_started(connection_pk: int, at: datetime | None = None) -> None:
    Connection.objects.filter(pk=connection_pk).relay_started(at)


END_REASONS = {Side.CLIENT: EndReason.CLIENT_CLOSED, Side.HOST: EndReason.HOST_CLOSED, None: EndReason.GATEWAY_SHUTDOWN}


def finish(result: RelayResult, at: datetime | None = None) -> None:
    """Step 12: the end reason, bytes each way and the end time (``at``, when it is recorded later than it
    happened), once per connection."""
    Connection.objects.filter(activity_id=result.connection_id).finish(
        END_REASONS[result.ended_by], result.bytes_client_to_host, result.bytes_host_to_client, at
    )
    log.info("connection %s ended by %s: %s (%d bytes up, %d down)", result.connection_id,
             result.ended_by.value if result.ended_by else "gateway", result.reason,
             result.bytes_client_to_host, result.bytes_host_to_client)


def host_rdp_fingerprint(connection_pk: int) -> str:
    """The SHA-256 fingerprint (lower-case hex) of the RDP certificate the connection's session host
    presents, as its agent last reported it (SessionHost.rdp_certificate_sha256): what the browser
    transport pins. "" when the agent never reported one."""
    value = Connection.objects.filter(pk=connection_pk).values_list(
        "session_host__rdp_certificate_sha256", flat=True).first()
    return (value or "").lower()
