"""What the portal's pages summarise: pools with their hosts and load, recent connections, hosts that need
an admin. Each function costs a fixed number of queries, whatever the size of the estate."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncHour
from django.utils import timezone

from broker.choices import SessionHostStatus
from broker.models import Connection, HostPool, SessionHost, UserSession
from wire.errors import describe

AVAILABLE = SessionHostStatus.AVAILABLE
ATTENTION_STATUSES = (SessionHostStatus.UNAVAILABLE, SessionHostStatus.NEEDS_ASSISTANCE)
FAILED = ~Q(error_code="")  # failed to connect, or broken once connected: both carry an error code


def heartbeat_threshold() -> timedelta:
    """How old a heartbeat may be before the host counts as gone (hostagent's missed-heartbeat rule)."""
    return timedelta(seconds=settings.HEARTBEAT_INTERVAL * settings.MISSED_HEARTBEATS)


# --- host pools -------------------------------------------------------------------------------------

@dataclass
class PoolRow:
    pool: HostPool
    hosts: int
    available: int  # Available and taking new sessions
    draining: int  # Available, in drain mode
    unavailable: int  # any other status
    sessions: int

    @property
    def capacity(self) -> int:
        """Sessions the hosts that are up can hold (drained hosts keep theirs)."""
        return (self.available + self.draining) * self.pool.max_session_limit

    @property
    def load_percent(self) -> int:
        if not self.capacity:
            return 100 if self.sessions else 0
        return min(100, round(100 * self.sessions / self.capacity))


def pools_with_counts(pools: QuerySet[HostPool] | None = None) -> list[PoolRow]:
    """Every pool with its hosts by state and its session count: two queries."""
    pools = (pools if pools is not None else HostPool.objects.all()).annotate(
        n_hosts=Count("session_hosts"),
        n_available=Count("session_hosts", filter=Q(session_hosts__status=AVAILABLE,
                                                    session_hosts__allow_new_sessions=True)),
        n_draining=Count("session_hosts", filter=Q(session_hosts__status=AVAILABLE,
                                                   session_hosts__allow_new_sessions=False)),
    ).order_by("name")
    sessions = dict(
        UserSession.objects.values_list("session_host__host_pool_id").annotate(n=Count("id")).order_by()
    )
    return [
        PoolRow(pool=pool, hosts=pool.n_hosts, available=pool.n_available, draining=pool.n_draining,
                unavailable=pool.n_hosts - pool.n_available - pool.n_draining, sessions=sessions.get(pool.pk, 0))
        for pool in pools
    ]


def estate_totals(rows: list[PoolRow], attention: int) -> dict[str, int]:
    """The dashboard's headline numbers, summed from the pool rows (no query)."""
    return {
        "pools": len(rows),
        "hosts": sum(r.hosts for r in rows),
        "available": sum(r.available for r in rows),
        "draining": sum(r.draining for r in rows),
        "unavailable": sum(r.unavailable for r in rows),
        "sessions": sum(r.sessions for r in rows),
        "capacity": sum(r.capacity for r in rows),
        "attention": attention,
    }


# --- session hosts ----------------------------------------------------------------------------------

@dataclass
class HealthSummary:
    checked_at: str
    total: int
    failing: list[dict] = field(default_factory=list)

    @property
    def passing(self) -> int:
        return self.total - len(self.failing)


def health_summary(host: SessionHost) -> HealthSummary | None:
    """The last heartbeat's health checks, read defensively: the JSON comes from the agent."""
    data = host.health_checks if isinstance(host.health_checks, dict) else {}
    checks = [c for c in data.get("checks") or [] if isinstance(c, dict)]
    if not checks:
        return None
    failing = [c for c in checks if not c.get("ok", False)]
    return HealthSummary(checked_at=str(data.get("checked_at", "")), total=len(checks), failing=failing)


def health_checks(host: SessionHost) -> list[dict]:
    data = host.health_checks if isinstance(host.health_checks, dict) else {}
    return [
        {"name": str(c.get("name", "?")), "ok": bool(c.get("ok")), "fatal": bool(c.get("fatal")),
         "detail": str(c.get("detail", ""))}
        for c in data.get("checks") or [] if isinstance(c, dict)
    ]


def hosts_of(pool: HostPool, hosts: QuerySet[SessionHost] | None = None) -> list[SessionHost]:
    """The pool's hosts (of ``hosts``: those the viewer may read) with their session counts and health: one
    query."""
    hosts = list(
        (hosts if hosts is not None else SessionHost.objects.all()).filter(host_pool=pool).select_related("assigned_user")
        .annotate(session_count=Count("user_sessions")).order_by("name")
    )
    _decorate(hosts)
    return hosts


def _decorate(hosts: list[SessionHost], now: datetime | None = None) -> None:
    now = now or timezone.now()
    stale_after = heartbeat_threshold()
    for host in hosts:
        host.health = health_summary(host)
        host.heartbeat_stale = host.last_heartbeat_at is None or now - host.last_heartbeat_at > stale_after


def hosts_needing_attention(limit: int = 20, hosts: QuerySet[SessionHost] | None = None) -> list[SessionHost]:
    """Hosts that are Unavailable or Need assistance, and Available hosts whose heartbeats stopped (the
    periodic check will mark them soon): the longest-standing first. One query."""
    stale = timezone.now() - heartbeat_threshold()
    condition = Q(status__in=ATTENTION_STATUSES) | Q(status=AVAILABLE, last_heartbeat_at__lt=stale)
    hosts = list((hosts if hosts is not None else SessionHost.objects.all()).filter(condition).select_related("host_pool").order_by("status_changed_at")
                 [:limit])
    _decorate(hosts)
    return hosts


# --- connections ------------------------------------------------------------------------------------

@dataclass
class HourBucket:
    start: datetime
    total: int = 0
    failed: int = 0


@dataclass
class ErrorCount:
    code: str
    count: int

    @property
    def message(self) -> str:
        return describe(self.code).message


@dataclass
class ConnectionStats:
    since: datetime
    hours: list[HourBucket]
    by_error: list[ErrorCount]

    @property
    def total(self) -> int:
        return sum(bucket.total for bucket in self.hours)

    @property
    def failed(self) -> int:
        return sum(bucket.failed for bucket in self.hours)

    @property
    def succeeded(self) -> int:
        return self.total - self.failed

    @property
    def failure_percent(self) -> float:
        return round(100 * self.failed / self.total, 1) if self.total else 0.0


def connection_stats(now: datetime | None = None, hours: int = 24,
                     connections: QuerySet[Connection] | None = None) -> ConnectionStats:
    """Connections (of ``connections``: those the viewer may read) per hour over the last ``hours`` and
    failures by error code: two queries."""
    now = now or timezone.now()
    first_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    since = now - timedelta(hours=hours)
    recent = (connections if connections is not None else Connection.objects.all()).filter(created_at__gt=since)
    buckets = {first_hour + timedelta(hours=i): HourBucket(first_hour + timedelta(hours=i)) for i in range(hours)}
    rows = (recent.annotate(hour=TruncHour("created_at")).values("hour")
            .annotate(total=Count("id"), failed=Count("id", filter=FAILED)).order_by())
    for row in rows:
        bucket = buckets.get(row["hour"])
        if bucket is None:  # the partial hour 24 h ago: count it in the first bucket
            bucket = buckets[first_hour]
        bucket.total += row["total"]
        bucket.failed += row["failed"]
    by_error = [
        ErrorCount(code=row["error_code"], count=row["n"])
        for row in recent.filter(FAILED).values("error_code").annotate(n=Count("id")).order_by("-n", "error_code")
    ]
    return ConnectionStats(since=since, hours=list(buckets.values()), by_error=by_error)


# Each step of the connection sequence that writes a checkpoint, in order (as the Django admin shows them).
CHECKPOINTS = [
    ("created_at", "Request received", "The gateway accepted the client's request."),
    ("ticket_accepted_at", "Ticket accepted", "The connection ticket was valid for this user and resource."),
    ("host_selected_at", "Host selected", "The broker chose a session host."),
    ("host_notified_at", "Host notified", "The host's agent was sent the connect order."),
    ("host_connected_at", "Host connected", "The agent dialled the gateway instance holding the client."),
    ("relay_started_at", "Relay started", "Bytes flow between client and host."),
    ("ended_at", "Ended", "Either side closed, or the connection failed."),
]


@dataclass
class Checkpoint:
    label: str
    help: str
    at: datetime | None
    since_start: timedelta | None
    since_previous: timedelta | None


def timeline(connection: Connection) -> list[Checkpoint]:
    """The connection's checkpoints with the time since the request and since the previous checkpoint
    reached; a step never reached has no time."""
    steps = []
    previous = None
    for name, label, help_text in CHECKPOINTS:
        at = getattr(connection, name)
        steps.append(Checkpoint(
            label=label, help=help_text, at=at,
            since_start=at - connection.created_at if at else None,
            since_previous=at - previous if at and previous else None,
        ))
        if at:
            previous = at
    return steps
