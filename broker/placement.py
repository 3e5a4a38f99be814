"""Choosing the session host for a connection (step 7 of the connection sequence in DESIGN.md).

The rule, in order:

1. Reconnect first: the user's existing session in the pool (active or disconnected), even on a
   drained host, as long as the host is not Unavailable or Shut down. Failing that, a connection of
   the same user in the pool that is still being set up (or has just connected), so a double-click
   lands on one host.
2. Personal pools: the user's assigned host; without one, automatic assignment claims a free host
   and direct assignment fails.
3. Pooled pools: breadth-first (fewest sessions first) or depth-first (most sessions below the limit
   first) over the hosts that are Available, allow new sessions and are below the max session limit.
   Ties go to the host name, then the id, so the choice is deterministic.

A host's load is its reported UserSessions plus the live connections to it whose user has no reported
session there yet: reservations (CONNECTING, within the reservation timeout) and connections whose
session report has not arrived. The choice is reserved (the Connection becomes CONNECTING with
``session_host`` and ``host_selected_at``) in the same transaction that holds row locks on all of the
pool's hosts, so concurrent placements into one pool take turns and can never overfill a host.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from broker.choices import (
    ConnectionState,
    LoadBalancer,
    PersonalAssignment,
    SessionHostStatus,
    UserSessionState,
)
from broker.models import Connection, HostPool, SessionHost, UserSession, failure_message
from wire.errors import ErrorCode

logger = logging.getLogger(__name__)

# How long a chosen host has to reach the gateway before its reserved slot is given back. FreeRDP
# waits at least 20 s for CHANNEL_RESPONSE (PROTOCOLS.md §5); a reverse connection takes seconds.
DEFAULT_RESERVATION_TIMEOUT = timedelta(seconds=30)

# Drain mode only stops new sessions; a user's existing session is reachable on any host whose agent
# may still be there.
RECONNECTABLE_STATUSES = frozenset(SessionHostStatus.values) - {
    SessionHostStatus.UNAVAILABLE,
    SessionHostStatus.SHUTDOWN,
}


class Route(StrEnum):
    """Why a host was chosen (for logs and the connection's diagnostics)."""

    EXISTING_SESSION = "existing_session"
    EXISTING_CONNECTION = "existing_connection"
    PERSONAL_HOST = "personal_host"
    PERSONAL_ASSIGNMENT = "personal_assignment"
    LOAD_BALANCED = "load_balanced"
    ALREADY_PLACED = "already_placed"


@dataclass(frozen=True)
class PlacementResult:
    """The outcome of ``place_connection``: a reserved host, or the error the connection failed with."""

    connection_id: int
    session_host_id: int | None = None
    route: str = ""
    error_code: str = ""
    error_message: str = ""

    @property
    def ok(self) -> bool:
        return self.session_host_id is not None and not self.error_code


class _Refused(Exception):
    """Placement found no host; carries the error code and a sentence for the admin."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(code, detail)
        self.code, self.detail = code, detail


def reservation_timeout() -> timedelta:
    """``settings.CONNECTION_RESERVATION_TIMEOUT`` when set (a positive timedelta), else the default."""
    value = getattr(settings, "CONNECTION_RESERVATION_TIMEOUT", DEFAULT_RESERVATION_TIMEOUT)
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise ImproperlyConfigured("CONNECTION_RESERVATION_TIMEOUT must be a positive timedelta")
    return value


def place_connection(connection: Connection | int) -> PlacementResult:
    """Pick and reserve a session host for a STARTED connection, or fail it with a documented code.

    Takes a Connection or its id. Idempotent: a connection that is already placed gets its host back,
    one that has ended or failed gets its recorded outcome; neither is changed. The caller sends the
    host its connect order once this has committed.
    """
    pk = connection.pk if isinstance(connection, Connection) else int(connection)
    with transaction.atomic():
        result = _place(pk)
    if result.ok:
        logger.info("connection %s placed on host %s (%s)", pk, result.session_host_id, result.route)
    else:
        logger.warning("connection %s not placed: %s %s", pk, result.error_code, result.error_message)
    return result


def release_reservation(
    connection: Connection | int, reason: str = ErrorCode.ConnectionFailedClientDisconnect, detail: str = ""
) -> bool:
    """Fail a connection that is still being set up (the client left before the host arrived, or the
    connect order could not be delivered) and free its host slot. ``reason`` is an error code from
    wire/errors.py. Returns False when the connection was no longer being set up.
    """
    code = ErrorCode(reason)  # An unknown code is a programming error: ValueError.
    pk = connection.pk if isinstance(connection, Connection) else int(connection)
    released = Connection.objects.filter(pk=pk).being_set_up().fail(code, detail)
    if released:
        logger.info("connection %s released: %s", pk, code)
    return released == 1


def expire_stale_reservations() -> list[int]:
    """Fail connections whose chosen host did not arrive within the reservation timeout; returns their
    ids (so the caller can tell the gateways holding those clients). Run periodically."""
    cutoff = timezone.now() - reservation_timeout()
    with transaction.atomic():
        # Lock the stale rows, skipping any a gateway is updating right now (that host just arrived).
        stale = list(
            Connection.objects.select_for_update(skip_locked=True)
            .filter(
                state=ConnectionState.CONNECTING,
                ended_at__isnull=True,
                host_connected_at__isnull=True,
                host_selected_at__lt=cutoff,
            )
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if stale:
            Connection.objects.filter(pk__in=stale).fail(
                ErrorCode.ConnectionFailedReverseConnectTimeout,
                f"No reverse connection within {_seconds(reservation_timeout())}.",
            )
    if stale:
        logger.warning("expired %d stale reservation(s): connections %s", len(stale), stale[:20])
    return stale


# --- the rule -------------------------------------------------------------------------------------

def _place(pk: int) -> PlacementResult:
    # Write first: this locks the connection's row, so one connection is placed once at a time, and on
    # SQLite it takes the database write lock before any read, so concurrent placements queue on the
    # busy timeout (a transaction that read first could only fail with "database is locked").
    if not Connection.objects.filter(pk=pk).lock():
        return PlacementResult(pk, error_code=ErrorCode.InternalError,
                               error_message="The connection record no longer exists.")
    conn = Connection.objects.select_related("host_pool", "user").get(pk=pk)
    if conn.state != ConnectionState.STARTED:
        return _recorded_outcome(conn)
    pool = conn.host_pool
    if pool is None:
        return _fail(conn, ErrorCode.ConnectionFailedResourceNotFound, "Its host pool was deleted.")
    if conn.user is None or not conn.user.is_active:
        return _fail(conn, ErrorCode.ConnectionFailedUserNotAuthorized, "The user account was deleted or disabled.")

    # Lock every host of the pool, always in primary-key order so two placements cannot deadlock:
    # whoever holds the locks sees every reservation committed before it, and no one can add one
    # until it commits. (SQLite ignores FOR UPDATE; its database write lock, taken above, serialises.)
    hosts = list(SessionHost.objects.select_for_update().filter(host_pool=pool).order_by("pk"))
    now = timezone.now()
    try:
        host, route = _existing(conn, pool, hosts, now) or (
            _personal(conn, pool, hosts, now) if pool.is_personal else _pooled(pool, hosts, now)
        )
    except _Refused as refusal:
        return _fail(conn, refusal.code, refusal.detail)

    # The reservation. The row is still STARTED: this transaction has held it since its first write.
    if not Connection.objects.filter(pk=pk).reserve(host):
        return _recorded_outcome(Connection.objects.get(pk=pk))  # cannot happen under the lock; never lie
    return PlacementResult(pk, session_host_id=host.pk, route=route)


def _existing(
    conn: Connection, pool: HostPool, hosts: list[SessionHost], now: datetime
) -> tuple[SessionHost, Route] | None:
    """Step 1: the host of the user's existing session, or of their connection still being set up."""
    reachable = {
        h.pk: h for h in hosts
        if h.status in RECONNECTABLE_STATUSES
        # In a personal pool, never follow a session onto a host now assigned to someone else.
        and not (pool.is_personal and h.assigned_user_id not in (None, conn.user_id))
    }
    # A session report that could not be matched to an account still names the user.
    mine = Q(user=conn.user) | Q(user__isnull=True, username__iexact=conn.user.get_username())
    sessions = [s for s in UserSession.objects.filter(mine, session_host__host_pool=pool)
                if s.session_host_id in reachable]
    if sessions:
        # The active session first (the user is moving devices), then the newest, then by host name.
        best = min(sessions, key=lambda s: (s.state != UserSessionState.ACTIVE, -s.started_at.timestamp(),
                                            _name_key(reachable[s.session_host_id]), s.pk))
        return reachable[best.session_host_id], Route.EXISTING_SESSION
    pending = (
        _live_connections(now)
        .filter(session_host__host_pool=pool, user=conn.user, session_host_id__in=list(reachable))
        .exclude(pk=conn.pk)
        .order_by("-host_selected_at", "-pk")
        .values_list("session_host_id", flat=True)
        .first()
    )
    if pending is not None:
        return reachable[pending], Route.EXISTING_CONNECTION
    return None


def _personal(
    conn: Connection, pool: HostPool, hosts: list[SessionHost], now: datetime
) -> tuple[SessionHost, Route]:
    """Step 2: the user's assigned host; or claim a free one under automatic assignment."""
    assigned = next((h for h in hosts if h.assigned_user_id == conn.user_id), None)
    if assigned is not None:
        if not _accepts_new_sessions(assigned):
            raise _Refused(ErrorCode.ConnectionFailedPersonalDesktopFailed,
                           f"Assigned host {assigned.name} is {_host_condition(assigned)}.")
        return assigned, Route.PERSONAL_HOST
    if pool.personal_assignment == PersonalAssignment.DIRECT:
        raise _Refused(ErrorCode.ConnectionFailedNoPersonalDesktopAssigned,
                       f"Host pool {pool.name} uses direct assignment and no host is assigned to "
                       f"{conn.user.get_username()}.")
    free = sorted((h for h in hosts if h.assigned_user_id is None and _accepts_new_sessions(h)), key=_name_key)
    for host in free:
        # Claim with a conditional update and check the count. The rows are locked, so this cannot
        # lose; the check keeps the claim safe even for a writer that skipped the lock. A host
        # inserted concurrently for this user would trip the one-host-per-user constraint instead.
        if SessionHost.objects.filter(pk=host.pk, assigned_user__isnull=True).update(
            assigned_user=conn.user, updated_at=now
        ) == 1:
            host.assigned_user = conn.user
            return host, Route.PERSONAL_ASSIGNMENT
    unassigned = sum(1 for h in hosts if h.assigned_user_id is None)
    raise _Refused(ErrorCode.ConnectionFailedNoPersonalDesktopFree,
                   f"Host pool {pool.name} has {_count(len(hosts), 'host')}, "
                   f"{unassigned} unassigned, none of them Available with new sessions allowed.")


def _pooled(pool: HostPool, hosts: list[SessionHost], now: datetime) -> tuple[SessionHost, Route]:
    """Step 3: breadth-first or depth-first over the hosts that can take a new session."""
    loads = _loads(pool, now)
    accepting = [h for h in hosts if _accepts_new_sessions(h)]
    below_limit = [h for h in accepting if loads[h.pk] < pool.max_session_limit]
    if not below_limit:
        code = (ErrorCode.ConnectionFailedMaxSessionsReached if accepting
                else ErrorCode.ConnectionFailedNoHealthyRdshAvailable)
        raise _Refused(code, _pool_summary(pool, hosts, loads))
    if pool.load_balancer == LoadBalancer.DEPTH_FIRST:
        host = min(below_limit, key=lambda h: (-loads[h.pk], *_name_key(h)))
    else:
        host = min(below_limit, key=lambda h: (loads[h.pk], *_name_key(h)))
    return host, Route.LOAD_BALANCED


# --- helpers --------------------------------------------------------------------------------------

def _live_connections(now: datetime) -> QuerySet[Connection]:
    """Connections holding a host slot: fresh reservations, and connected ones (their session report
    may not have arrived yet). A stale reservation stops counting even before it is expired."""
    cutoff = now - reservation_timeout()
    return Connection.objects.filter(ended_at__isnull=True, session_host__isnull=False).filter(
        Q(state=ConnectionState.CONNECTED)
        | Q(state=ConnectionState.CONNECTING, host_selected_at__gte=cutoff)
        | Q(state=ConnectionState.CONNECTING, host_connected_at__isnull=False)
    )


def _loads(pool: HostPool, now: datetime) -> dict[int, int]:
    """Sessions per host of the pool: reported sessions plus live connections of users not yet
    reported there (a user with both is counted once)."""
    loads: dict[int, int] = defaultdict(int)
    session_users: dict[int, set[int]] = defaultdict(set)
    for host_id, user_id in UserSession.objects.filter(session_host__host_pool=pool).values_list(
        "session_host_id", "user_id"
    ):
        loads[host_id] += 1
        if user_id is not None:
            session_users[host_id].add(user_id)
    pending: dict[int, set[tuple[str, int]]] = defaultdict(set)
    for pk, host_id, user_id in _live_connections(now).filter(session_host__host_pool=pool).values_list(
        "pk", "session_host_id", "user_id"
    ):
        if user_id is None:
            pending[host_id].add(("connection", pk))
        elif user_id not in session_users[host_id]:
            pending[host_id].add(("user", user_id))
    for host_id, occupants in pending.items():
        loads[host_id] += len(occupants)
    return loads


def _accepts_new_sessions(host: SessionHost) -> bool:
    return host.status == SessionHostStatus.AVAILABLE and host.allow_new_sessions


def _name_key(host: SessionHost) -> tuple[str, int]:
    return host.name.casefold(), host.pk


def _host_condition(host: SessionHost) -> str:
    parts = []
    if host.status != SessionHostStatus.AVAILABLE:
        parts.append(SessionHostStatus(host.status).label)
    if not host.allow_new_sessions:
        parts.append("in drain mode")
    return " and ".join(parts)


def _pool_summary(pool: HostPool, hosts: list[SessionHost], loads: dict[int, int]) -> str:
    """One sentence for the admin: what the pool's hosts look like right now."""
    if not hosts:
        return f"Host pool {pool.name} has no session hosts."
    by_status: dict[str, int] = defaultdict(int)
    for host in hosts:
        by_status[SessionHostStatus(host.status).label] += 1
    parts = [", ".join(f"{n} {label}" for label, n in sorted(by_status.items()))]
    drained = sum(1 for h in hosts if not h.allow_new_sessions)
    if drained:
        parts.append(f"{drained} in drain mode")
    full = sum(1 for h in hosts if _accepts_new_sessions(h) and loads[h.pk] >= pool.max_session_limit)
    if full:
        parts.append(f"{full} at the limit of {_count(pool.max_session_limit, 'session')}")
    return f"Host pool {pool.name} has {_count(len(hosts), 'host')}: " + "; ".join(parts) + "."


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _seconds(delta: timedelta) -> str:
    return _count(int(delta.total_seconds()), "second")


def _fail(conn: Connection, code: ErrorCode, detail: str) -> PlacementResult:
    Connection.objects.filter(pk=conn.pk).fail(code, detail)  # Still STARTED: _place holds the row.
    return PlacementResult(conn.pk, error_code=code, error_message=failure_message(code, detail))


def _recorded_outcome(conn: Connection) -> PlacementResult:
    """What placement reports for a connection that is past the STARTED state."""
    if conn.state in (ConnectionState.CONNECTING, ConnectionState.CONNECTED) and conn.session_host_id:
        return PlacementResult(conn.pk, session_host_id=conn.session_host_id, route=Route.ALREADY_PLACED)
    return PlacementResult(conn.pk, error_code=conn.error_code or ErrorCode.ConnectionFailedClientDisconnect,
                           error_message=conn.error_message)
