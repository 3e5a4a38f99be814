"""Host pools, session hosts, user sessions, connections and the registry of gateway instances."""
from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import connections, models, transaction
from django.db.models import F, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce, Lower
from django.utils import timezone

from broker import verdicts
from broker.choices import (
    ConnectionState,
    ConnectionTransport,
    EndReason,
    HostPoolType,
    LoadBalancer,
    PersonalAssignment,
    SessionHostStatus,
    UserSessionState,
)
from broker.rdpproperties import RdpPropertiesError, parse_rdp_properties
from core import audit, metrics
from core.choices import AuditAction
from core.hashing import hash_secret
from core.models import Certificate
from core.validators import one_line, plain_text
from wire.errors import ErrorCode, describe

# Names that end up in .rdp files and URLs: letters, digits, dot, dash, underscore.
name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
    "Use 1-63 letters, digits, '.', '-' or '_', starting with a letter or digit.",
)
REGISTRATION_TOKEN_PREFIX = "wvdreg_"


class HostPool(models.Model):
    name = models.CharField(
        max_length=63,
        validators=[name_validator],
        help_text="Routing name; it is the 'full address' in every .rdp file of the pool.",
    )
    friendly_name = models.CharField(max_length=200, blank=True, validators=[one_line])
    description = models.TextField(blank=True, validators=[plain_text])
    pool_type = models.CharField(max_length=16, choices=HostPoolType.choices, default=HostPoolType.POOLED)
    load_balancer = models.CharField(
        max_length=16, choices=LoadBalancer.choices, default=LoadBalancer.BREADTH_FIRST
    )
    personal_assignment = models.CharField(
        max_length=16,
        choices=PersonalAssignment.choices,
        default=PersonalAssignment.AUTOMATIC,
        help_text="Personal pools only: how users get their host.",
    )
    max_session_limit = models.PositiveIntegerField(default=10, validators=[MinValueValidator(1)])
    custom_rdp_properties = models.TextField(
        blank=True, help_text="Extra .rdp settings, one 'name:type:value' per line, merged into every file."
    )
    start_vm_on_connect = models.BooleanField(default=False)
    registration_token_hash = models.CharField(max_length=64, blank=True, editable=False)
    registration_token_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(Lower("name"), name="hostpool_name_unique_ci",
                                    violation_error_message="A host pool with this name already exists."),
            models.CheckConstraint(condition=models.Q(max_session_limit__gte=1),
                                   name="hostpool_max_session_limit_positive"),
            models.UniqueConstraint(fields=["registration_token_hash"],
                                    condition=~models.Q(registration_token_hash=""),
                                    name="hostpool_registration_token_unique"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = {}
        if self.pk is not None:
            stored = HostPool.objects.filter(pk=self.pk).values_list("pool_type", flat=True).first()
            if stored is not None and stored != self.pool_type:
                errors["pool_type"] = "A host pool's type cannot change after it is created."
        try:
            parse_rdp_properties(self.custom_rdp_properties)
        except RdpPropertiesError as exc:
            errors["custom_rdp_properties"] = exc.problems
        if errors:
            raise ValidationError(errors)

    @property
    def is_personal(self) -> bool:
        return self.pool_type == HostPoolType.PERSONAL

    @property
    def registration_token_valid(self) -> bool:
        return bool(
            self.registration_token_hash
            and self.registration_token_expires_at
            and self.registration_token_expires_at > timezone.now()
        )

    def issue_registration_token(self, lifetime: timedelta | None = None) -> tuple[str, datetime]:
        """Make a new registration token, replacing any previous one; only its hash is stored."""
        if lifetime is None:
            lifetime = timedelta(hours=settings.REGISTRATION_TOKEN_DEFAULT_HOURS)
        if lifetime <= timedelta(0):
            raise ValidationError("A registration token must live for a positive time.")
        token = REGISTRATION_TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires_at = timezone.now() + lifetime
        with transaction.atomic():  # the token and its audit event (who issued it; never the token) together
            HostPool.objects.filter(pk=self.pk).update(
                registration_token_hash=hash_secret(token), registration_token_expires_at=expires_at
            )
            audit.record(AuditAction.REGISTRATION_TOKEN_ISSUE, self, detail=f"expires {expires_at.isoformat()}")
        self.registration_token_hash = hash_secret(token)
        self.registration_token_expires_at = expires_at
        return token, expires_at

    def revoke_registration_token(self) -> None:
        with transaction.atomic():
            HostPool.objects.filter(pk=self.pk).update(registration_token_hash="", registration_token_expires_at=None)
            audit.record(AuditAction.REGISTRATION_TOKEN_REVOKE, self)
        self.registration_token_hash = ""
        self.registration_token_expires_at = None

    @classmethod
    def for_registration_token(cls, token: str) -> HostPool | None:
        """The pool whose unexpired registration token this is, or None."""
        if not token or not token.startswith(REGISTRATION_TOKEN_PREFIX) or len(token) > 200:
            return None
        return cls.objects.filter(
            registration_token_hash=hash_secret(token), registration_token_expires_at__gt=timezone.now()
        ).first()


class SessionHostQuerySet(models.QuerySet):
    def store_heartbeat(self, pk: int, *, at: datetime, agent_version: str, health_checks: dict) -> str | None:
        """Store a heartbeat's time, agent version and checks on host ``pk``; returns the host's status, or
        None when there is no such host. One statement (UPDATE … RETURNING, which PostgreSQL and SQLite
        both speak): every connected host sends one per interval, and they queue for their instance's one
        database thread, so each costs one round trip rather than a read and a write."""
        connection = connections[self.db]
        meta, quote = self.model._meta, connection.ops.quote_name
        values = {"last_heartbeat_at": at, "agent_version": agent_version, "health_checks": health_checks,
                  "updated_at": at}
        fields = [meta.get_field(name) for name in values]
        assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
        params = [field.get_db_prep_save(values[field.name], connection) for field in fields]
        sql = (f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s "
               f"RETURNING {quote(meta.get_field('status').column)}")
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, pk])
            row = cursor.fetchone()
        return row[0] if row else None


class SessionHost(models.Model):
    host_pool = models.ForeignKey(HostPool, on_delete=models.PROTECT, related_name="session_hosts")
    name = models.CharField(
        max_length=253,
        validators=[RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$",
                                   "Use a host name: letters, digits, '.' and '-'.")],
    )
    status = models.CharField(
        max_length=20, choices=SessionHostStatus.choices, default=SessionHostStatus.UNAVAILABLE
    )
    status_reason = models.CharField(max_length=300, blank=True)
    status_changed_at = models.DateTimeField(default=timezone.now)
    allow_new_sessions = models.BooleanField(default=True, help_text="False puts the host in drain mode.")
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    agent_version = models.CharField(max_length=50, blank=True)
    health_checks = models.JSONField(default=dict, blank=True)
    assigned_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="personal_session_hosts",
    )
    certificate = models.ForeignKey(
        "wvdportal.Certificate",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The agent's current host-agent certificate.",
    )
    # What the host's RDP listener presents to clients (the nested TLS of step 11), as its agent last
    # reported it: broker/hostcertificates.py record_rdp_certificate is the one writer.
    rdp_certificate = models.ForeignKey(
        "wvdportal.Certificate",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
        help_text="The host-rdp certificate from our CA that the host's RDP listener presents (verified).",
    )
    rdp_certificate_sha256 = models.CharField(
        max_length=64, blank=True, editable=False,
        help_text="SHA-256 fingerprint of the certificate the RDP listener presents, as the agent last saw it.",
    )
    rdp_certificate_detail = models.CharField(max_length=300, blank=True, editable=False)
    rdp_certificate_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    # An admin's decision that the next registration of this name may take the host over from the agent
    # that holds it (a replaced machine); who and when, until that registration clears it.
    marked_for_replacement_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="Set: the next registration of this name replaces the agent and revokes its certificate.",
    )
    marked_for_replacement_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, editable=False,
        related_name="+", help_text="The admin who marked the host for replacement.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SessionHostQuerySet.as_manager()

    class Meta:
        ordering = ["host_pool__name", "name"]
        constraints = [
            models.UniqueConstraint(Lower("name"), name="sessionhost_name_unique_ci",
                                    violation_error_message="A session host with this name already exists."),
            models.UniqueConstraint(
                fields=["host_pool", "assigned_user"],
                condition=models.Q(assigned_user__isnull=False),
                name="sessionhost_one_personal_host_per_user_per_pool",
                violation_error_message="This user already has a personal host in this pool.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.assigned_user_id and self.host_pool_id and not self.host_pool.is_personal:
            raise ValidationError({"assigned_user": "Only hosts in a personal host pool have an assigned user."})

    def set_allow_new_sessions(self, allow: bool) -> None:
        """Drain mode on (False) or off (True). A save of just these columns, so listeners (the portal's
        live view) hear of it and nothing the agent updates meanwhile is overwritten. Recorded in the audit
        log with who asked (core/audit.py)."""
        before = self.allow_new_sessions
        self.allow_new_sessions = allow
        with transaction.atomic():
            self.save(update_fields=["allow_new_sessions", "updated_at"])
            audit.record(AuditAction.UNDRAIN if allow else AuditAction.DRAIN, self,
                         changes={"allow_new_sessions": [before, allow]})

    # --- registration: who may take the host's name --------------------------------------------------
    #
    #   live ──mark_for_replacement──> marked ──accept_registration──> live (the new agent's certificate)
    #   live <──cancel_replacement──── marked
    #   not live (its certificate expired, revoked or none) ──accept_registration──> live
    #
    # A registration is refused (HostInUse) while the host is live and not marked: a registration token
    # chooses a pool, it does not prove to be the machine that holds the name.

    @property
    def is_marked_for_replacement(self) -> bool:
        return self.marked_for_replacement_at is not None

    def holds_valid_certificate(self) -> bool:
        """Whether an agent can still prove to be this host: the certificate bound to it, or the one a
        renewal in progress replaces (broker.hostcertificates accepts both), is unrevoked and in its
        validity period."""
        if self.certificate_id is None:
            return False
        if self.certificate is not None and self.certificate.is_valid_now:
            return True
        now = timezone.now()
        return Certificate.objects.filter(
            renewed_by_id=self.certificate_id, revoked_at__isnull=True, not_before__lte=now, not_after__gt=now
        ).exists()

    def accepts_registration(self) -> bool:
        """Whether a new registration of this name may re-bind the host now."""
        return self.is_marked_for_replacement or not self.holds_valid_certificate()

    def mark_for_replacement(self, by: AbstractBaseUser | None) -> bool:
        """Let the next registration of this name take the host over. Returns False (and keeps the first
        mark's who and when) when it was already marked. The agent keeps working until then."""
        with transaction.atomic():
            # Lock the row: two admins marking at once record one decision, the first.
            current = SessionHost.objects.select_for_update(of=("self",)).get(pk=self.pk)
            if current.is_marked_for_replacement:
                self.marked_for_replacement_at = current.marked_for_replacement_at
                self.marked_for_replacement_by_id = current.marked_for_replacement_by_id
                return False
            self.marked_for_replacement_at, self.marked_for_replacement_by = timezone.now(), by
            # A save of just these columns: listeners (the portal's live view) hear of it.
            self.save(update_fields=["marked_for_replacement_at", "marked_for_replacement_by", "updated_at"])
            audit.record(AuditAction.REPLACEMENT_MARK, self)
        return True

    def cancel_replacement(self) -> bool:
        """Take the mark back: registrations are refused again while the host is live. Returns False
        when it was not marked."""
        with transaction.atomic():
            current = SessionHost.objects.select_for_update(of=("self",)).get(pk=self.pk)
            self.marked_for_replacement_at, self.marked_for_replacement_by = None, None
            if not current.is_marked_for_replacement:
                return False
            self.save(update_fields=["marked_for_replacement_at", "marked_for_replacement_by", "updated_at"])
            audit.record(AuditAction.REPLACEMENT_CANCEL, self)
        return True

    def accept_registration(self, certificate: Certificate) -> Certificate | None:
        """Re-bind the host to a new registration's certificate and clear the replacement mark; returns
        the certificate it replaces (for the caller to revoke). Raises HostInUse when the host is live
        and not marked for replacement.

        The mark is used up by the first registration that takes it: of two racing, the second waits
        for the row lock, then finds the first one's valid certificate and no mark."""
        with transaction.atomic():
            current = (SessionHost.objects.select_for_update(of=("self",)).select_related("certificate")
                       .get(pk=self.pk))
            if not current.accepts_registration():
                raise HostInUse(current.name)
            # Conditional on the row as read, so a writer that skipped the lock cannot make two winners.
            won = SessionHost.objects.filter(
                pk=self.pk, certificate_id=current.certificate_id,
                marked_for_replacement_at=current.marked_for_replacement_at,
            ).update(certificate=certificate, marked_for_replacement_at=None, marked_for_replacement_by=None,
                     updated_at=timezone.now())
            if won != 1:
                raise HostInUse(current.name)
        self.certificate = certificate
        self.marked_for_replacement_at = self.marked_for_replacement_by = None
        return current.certificate

    def set_status(self, status: str, reason: str = "") -> bool:
        """Record a status transition; returns False when the host was already in that status."""
        with transaction.atomic():
            # Lock the row so two processes cannot interleave transitions and lose a reason.
            current = SessionHost.objects.select_for_update().get(pk=self.pk)
            if current.status == status and current.status_reason == reason:
                return False
            now = timezone.now()
            SessionHost.objects.filter(pk=self.pk).update(
                status=status, status_reason=reason[:300], status_changed_at=now
            )
            SessionHostStatusChange.objects.create(
                session_host=self, old_status=current.status, new_status=status, reason=reason[:300], at=now
            )
        self.status, self.status_reason, self.status_changed_at = status, reason[:300], now
        return True


class HostInUse(Exception):
    """A registration may not take over a live session host: its agent holds a valid certificate and no
    admin marked it for replacement."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"Session host {name!r} is already registered and its agent's certificate is still valid. To "
            "replace the machine, an administrator first marks the host for replacement (or removes it)."
        )


class SessionHostStatusChange(models.Model):
    """Every status transition of a host, with when and why."""

    session_host = models.ForeignKey(SessionHost, on_delete=models.CASCADE, related_name="status_changes")
    old_status = models.CharField(max_length=20, choices=SessionHostStatus.choices)
    new_status = models.CharField(max_length=20, choices=SessionHostStatus.choices)
    reason = models.CharField(max_length=300, blank=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]


class UserSession(models.Model):
    """A user's session on a host, as the host's agent reports it."""

    session_host = models.ForeignKey(SessionHost, on_delete=models.CASCADE, related_name="user_sessions")
    session_id = models.PositiveIntegerField(help_text="The session's id on the host.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="user_sessions"
    )
    username = models.CharField(max_length=150)
    state = models.CharField(max_length=16, choices=UserSessionState.choices, default=UserSessionState.ACTIVE)
    started_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["session_host__name", "session_id"]
        constraints = [
            models.UniqueConstraint(fields=["session_host", "session_id"], name="usersession_unique_per_host"),
        ]

    def __str__(self) -> str:
        return f"{self.username}@{self.session_host_id}#{self.session_id}"


class GatewayInstance(models.Model):
    """One gateway process; the broker sends hosts to the instance that holds the client."""

    name = models.CharField(max_length=100, unique=True)
    public_host = models.CharField(max_length=253)
    public_port = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    relay_url = models.CharField(
        max_length=300, blank=True, help_text="Where session hosts dial this instance: its RD Gateway listener (https://host:port)."
    )
    region = models.CharField(max_length=64, blank=True)
    version = models.CharField(max_length=50, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Since when the row has been refreshed without a gap as long as GATEWAY_INSTANCE_LOST_AFTER: proof that
    # the database took this instance's writes all that time (broker.gateways.sweep_lost_instances).
    seen_since = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(public_port__gte=1) & models.Q(public_port__lte=65535),
                                   name="gatewayinstance_port_range"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_host}:{self.public_port})"


# States in which a connection is still being set up: its client waits for a host.
SETTING_UP = (ConnectionState.STARTED, ConnectionState.CONNECTING)


class ConnectionQuerySet(models.QuerySet):
    """The lifecycle of a Connection, the only way its rows are written (DESIGN.md, "Layers").

    Each transition is one conditional UPDATE over the rows of this queryset that may still take it, and
    returns how many did, so two writers racing for one row cannot both win (the loser sees 0). An end is
    one such UPDATE per transport among those rows (nearly always one row), whose counts are the metrics'
    (``_end``, core/metrics.py). The one
    rule for "still open" is ``ended_at IS NULL``: every end (ENDED or FAILED) sets it, nothing clears it,
    and no transition moves a row that has it to another state (checkpoints and byte counts are still
    recorded: they are facts about what happened).

        (created) ──admit──> STARTED ──reserve──> CONNECTING ──relay_started──> CONNECTED ──finish──> ENDED
              │                 │                      │ host_notified, host_connected  │
              └─refuse─> FAILED <───────fail───────────┴───────────────────────────────┘
                                    (ended_with_instance: any open one but a failure -> ENDED)
    """

    # --- what may still change -----------------------------------------------------------------

    def still_open(self) -> ConnectionQuerySet:
        return self.filter(ended_at__isnull=True)

    def being_set_up(self) -> ConnectionQuerySet:
        """Open, and its client still waits for a host (the relay has not started)."""
        return self.still_open().filter(state__in=SETTING_UP)

    # --- step 6: the gateway checked the client's ticket ----------------------------------------

    def admit(self, **fields) -> Connection:
        """A new connection whose ticket was accepted (STARTED; created_at = ticket_accepted_at)."""
        now = timezone.now()
        return self.create(**fields, state=ConnectionState.STARTED, created_at=now, ticket_accepted_at=now)

    def refuse(self, code: str, message: str, **fields) -> Connection:
        """A connection refused at the door (a bad ticket, a user or resource gone): recorded as failed, so
        support can find it by its activity id. It never points at an application group or host pool that
        no longer exists (the ticket may name one deleted since)."""
        now = timezone.now()
        for name in ("application_group_id", "host_pool_id"):
            related = self.model._meta.get_field(name.removesuffix("_id")).related_model
            if fields.get(name) is not None and not related._default_manager.filter(pk=fields[name]).exists():
                fields[name] = None
        refused = self.create(**fields, created_at=now, **_failure(ErrorCode(code), message, now, detailed=False))
        transaction.on_commit(partial(metrics.connections_ended, metrics.REFUSED, refused.error_code,
                                      refused.transport, 1))
        return refused

    # --- steps 6-10 -----------------------------------------------------------------------------

    def lock(self) -> int:
        """Take the write lock of these rows for the rest of the transaction, before reading them (a
        write that changes nothing: on SQLite it takes the database's write lock before any read, so
        concurrent placements queue on the busy timeout instead of failing "database is locked")."""
        return self.update(state=F("state"))

    def record_client_name(self, client_name: str) -> int:
        return self.update(client_name=client_name[:255])

    def reserve(self, session_host: SessionHost) -> int:
        """Step 7: placement chose ``session_host`` (STARTED -> CONNECTING). Placement holds the row."""
        return self.still_open().filter(state=ConnectionState.STARTED).update(
            state=ConnectionState.CONNECTING, session_host=session_host, host_selected_at=timezone.now()
        )

    def host_notified(self) -> int:
        """The connect order went out (once)."""
        return self.filter(host_notified_at__isnull=True).update(host_notified_at=timezone.now())

    def host_connected(self) -> int:
        """The host's agent dialled in (once); the connection keeps the fingerprint of the RDP certificate
        its host presents at that moment (what the client's nested TLS will check)."""
        presented = SessionHost.objects.filter(pk=OuterRef("session_host_id")).values("rdp_certificate_sha256")[:1]
        return self.filter(host_connected_at__isnull=True).update(
            host_connected_at=timezone.now(), host_rdp_certificate_sha256=Coalesce(Subquery(presented), Value("")),
        )

    def relay_started(self, at: datetime | None = None) -> int:
        """The client was told its channel is open (-> CONNECTED), at ``at`` when that is recorded later.
        Not for a connection that has ended (a quick host may end it first). The process that records it
        observes the connection's setup checkpoints (core/metrics.py), once."""
        started = self.still_open().filter(relay_started_at__isnull=True).update(
            state=ConnectionState.CONNECTED, relay_started_at=at or timezone.now())
        if started:
            for row in self.values("ticket_accepted_at", *(f"{name}_at" for name in metrics.CHECKPOINTS)):
                accepted = row["ticket_accepted_at"]
                if accepted is not None:
                    transaction.on_commit(partial(metrics.setup_checkpoints, {
                        name: (row[f"{name}_at"] - accepted).total_seconds() if row[f"{name}_at"] else None
                        for name in metrics.CHECKPOINTS}))
        return started

    # --- the ends -------------------------------------------------------------------------------

    def fail(self, code: str, detail: str = "") -> int:
        """Fail the open ones with a documented error code (wire/errors.py; any other is a programming
        error: ValueError) and a detail for the admin. A client still waiting for its host hears of it at
        once (broker/verdicts.py), after the commit."""
        code = ErrorCode(code)
        # Who may be waiting: clients whose setup is under way, unless the failure is that they left.
        waiting = [] if code == ErrorCode.ConnectionFailedClientDisconnect else list(
            self.being_set_up().values_list("activity_id", "gateway_instance_id"))
        failed = self.still_open()._end(metrics.FAILED, code, **_failure(code, detail, timezone.now()))
        if failed and waiting:
            transaction.on_commit(lambda: [verdicts.announce(str(activity), instance)
                                           for activity, instance in waiting])
        return failed

    def finish(self, ended_by: str, bytes_client_to_host: int, bytes_host_to_client: int,
               at: datetime | None = None) -> int:
        """Step 12: the relay ended (``ended_by`` is an EndReason) ``at`` (now by default; earlier when the end
        is recorded late, after a database outage): ENDED with the bytes each way. A connection that had
        already failed keeps its error and gets the bytes seen. Returns how many ended here."""
        counts = {"bytes_client_to_host": bytes_client_to_host, "bytes_host_to_client": bytes_host_to_client}
        # CONNECTING too: the relay can end before its start is recorded.
        ended = self.still_open().filter(state__in=(ConnectionState.CONNECTING, ConnectionState.CONNECTED))._end(
            metrics.SUCCESS, "", state=ConnectionState.ENDED, ended_at=at or timezone.now(), end_reason=EndReason(ended_by),
            **counts
        )
        if not ended:
            self.update(**counts)  # ended before its relay started (a failed setup): keep its error
        return ended

    def purge_ended_before(self, cutoff: datetime, batch: int = 5000) -> int:
        """Delete the records that ended before ``cutoff`` (retention), a batch per statement so no
        transaction grows with the table; open connections are never deleted. Returns how many."""
        deleted = 0
        while True:
            ids = list(self.filter(ended_at__lt=cutoff).order_by("pk").values_list("pk", flat=True)[:batch])
            if not ids:
                return deleted
            deleted += self.model.objects.filter(pk__in=ids).delete()[0]

    def ended_with_instance(self) -> int:
        """The gateway instance that held them went away (it restarted: ``register_instance``): their
        relays died with it."""
        return self.still_open().exclude(state=ConnectionState.FAILED)._end(
            metrics.LOST, "", state=ConnectionState.ENDED, end_reason=EndReason.GATEWAY_SHUTDOWN,
            ended_at=timezone.now()
        )

    def _end(self, outcome: str, code: str, **fields) -> int:
        """The conditional UPDATE of an end, counted (core/metrics.py) by the rows it changed: one UPDATE
        per transport among the rows that may take it (nearly always one row, so one transport), so each
        count carries its transport exactly, whichever process wins."""
        ended = 0
        for transport in set(self.order_by().values_list("transport", flat=True)):
            count = self.filter(transport=transport).update(**fields)
            # Counted when the change is committed: a rolled-back end did not happen.
            transaction.on_commit(partial(metrics.connections_ended, outcome, code, transport, count))
            ended += count
        return ended


def failure_message(code: str, detail: str = "") -> str:
    """What a connection failed with ``code`` says: the code's documented message, the detail after it."""
    return (describe(code).message + (f" ({detail})" if detail else ""))[:2000]


def _failure(code: ErrorCode, detail: str, now: datetime, *, detailed: bool = True) -> dict:
    """The fields of a failure; the message is ``failure_message``, or (not ``detailed``) the detail
    alone: a refusal's own sentence."""
    return {
        "state": ConnectionState.FAILED,
        "error_code": code,
        "error_message": failure_message(code, detail) if detailed else (detail or describe(code).message)[:2000],
        "ended_at": now,
        "end_reason": EndReason.CLIENT_CLOSED if code == ErrorCode.ConnectionFailedClientDisconnect else EndReason.ERROR,
    }


class Connection(models.Model):
    """One attempt to connect (an 'activity'), with a checkpoint per step of the sequence."""

    activity_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="connections"
    )
    username = models.CharField(max_length=150, blank=True, help_text="Kept when the user is deleted.")
    # A string reference: the broker never imports feed.
    application_group = models.ForeignKey(
        "feed.ApplicationGroup", on_delete=models.SET_NULL, null=True, blank=True, related_name="connections"
    )
    resource_name = models.CharField(max_length=200, blank=True, help_text="Desktop or RemoteApp, as requested.")
    host_pool = models.ForeignKey(
        HostPool, on_delete=models.SET_NULL, null=True, blank=True, related_name="connections"
    )
    session_host = models.ForeignKey(
        SessionHost, on_delete=models.SET_NULL, null=True, blank=True, related_name="connections"
    )
    gateway_instance = models.ForeignKey(
        GatewayInstance, on_delete=models.SET_NULL, null=True, blank=True, related_name="connections"
    )
    client_address = models.GenericIPAddressField(null=True, blank=True)
    client_name = models.CharField(max_length=255, blank=True)
    transport = models.CharField(max_length=20, choices=ConnectionTransport.choices, blank=True,
                                 help_text="How the client reached the gateway (blank on records made before).")
    state = models.CharField(max_length=16, choices=ConnectionState.choices, default=ConnectionState.STARTED)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    ticket_accepted_at = models.DateTimeField(null=True, blank=True)
    host_selected_at = models.DateTimeField(null=True, blank=True)
    host_notified_at = models.DateTimeField(null=True, blank=True)
    host_connected_at = models.DateTimeField(null=True, blank=True)
    relay_started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    host_rdp_certificate_sha256 = models.CharField(
        max_length=64, blank=True,
        help_text="SHA-256 fingerprint of the RDP certificate the session host presented when it connected.",
    )
    bytes_client_to_host = models.BigIntegerField(default=0)
    bytes_host_to_client = models.BigIntegerField(default=0)
    end_reason = models.CharField(max_length=20, choices=EndReason.choices, blank=True)
    error_code = models.CharField(max_length=80, blank=True, db_index=True)
    error_message = models.TextField(blank=True)

    objects = ConnectionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(bytes_client_to_host__gte=0) & models.Q(bytes_host_to_client__gte=0),
                name="connection_bytes_not_negative",
            ),
            models.CheckConstraint(
                condition=~models.Q(state=ConnectionState.FAILED) | ~models.Q(error_code=""),
                name="connection_failed_has_error_code",
            ),
        ]

    def __str__(self) -> str:
        return str(self.activity_id)

    @property
    def duration(self) -> timedelta | None:
        if self.relay_started_at and self.ended_at:
            return self.ended_at - self.relay_started_at
        return None
