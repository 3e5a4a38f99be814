"""Django admin for host pools, session hosts and the records the broker writes."""
from __future__ import annotations

import json
import logging
from datetime import UTC, timedelta

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from broker.models import (
    Connection,
    GatewayInstance,
    HostPool,
    SessionHost,
    SessionHostStatusChange,
    UserSession,
)
from core.admin import (
    ReadOnlyAdminMixin,
    RoleAdminMixin,
    RoleInlineMixin,
    SuperuserOnlyAdminMixin,
    show_secrets_once,
)

logger = logging.getLogger(__name__)

RECENT_STATUS_CHANGES = 20


def _when(value) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if value else "-"


def _seconds(delta: timedelta | None) -> str:
    return "-" if delta is None else f"{delta.total_seconds():.3f} s"


class SessionHostInline(RoleInlineMixin, admin.TabularInline):
    """The pool's hosts at a glance; hosts join by registering, and are changed on their own page."""

    role_parent_field = "host_pool"

    model = SessionHost
    fields = ["name", "status", "allow_new_sessions", "last_heartbeat_at", "agent_version", "assigned_user"]
    readonly_fields = fields
    show_change_link = True
    extra = 0

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[SessionHost]:
        return super().get_queryset(request).select_related("assigned_user")


@admin.register(HostPool)
class HostPoolAdmin(RoleAdminMixin, admin.ModelAdmin):
    role_verbs = ("token",)
    list_display = [
        "name", "friendly_name", "pool_type", "load_balancer", "max_session_limit", "host_count",
        "start_vm_on_connect", "registration_token_state",
    ]
    list_filter = ["pool_type", "load_balancer", "start_vm_on_connect"]
    search_fields = ["name", "friendly_name", "description"]
    ordering = ["name"]
    inlines = [SessionHostInline]
    actions = ["issue_registration_token", "revoke_registration_token"]
    fieldsets = [
        (None, {"fields": ["name", "friendly_name", "description", "pool_type"]}),
        ("Load balancing", {"fields": ["load_balancer", "max_session_limit", "personal_assignment",
                                       "start_vm_on_connect"]}),
        ("Connections", {"fields": ["custom_rdp_properties"]}),
        ("Registration", {"fields": ["registration_token_state", "hosts_link"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]
    readonly_fields = ["registration_token_state", "hosts_link", "created_at", "updated_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[HostPool]:
        return super().get_queryset(request).annotate(host_count=Count("session_hosts"))

    def get_readonly_fields(self, request, obj=None):
        # The type decides what the pool's groups and hosts may be; it is fixed at creation.
        return [*self.readonly_fields, "pool_type"] if obj is not None else self.readonly_fields

    @admin.display(description="Hosts", ordering="host_count")
    def host_count(self, pool: HostPool) -> int:
        return pool.host_count

    @admin.display(description="Session hosts")
    def hosts_link(self, pool: HostPool) -> str:
        if pool.pk is None:
            return "-"
        url = reverse("admin:broker_sessionhost_changelist") + f"?host_pool__id__exact={pool.pk}"
        return format_html('<a href="{}">{} session host(s)</a>', url, pool.session_hosts.count())

    @admin.display(description="Registration token")
    def registration_token_state(self, pool: HostPool) -> str:
        if not pool.registration_token_hash:
            return "None"
        if pool.registration_token_valid:
            return f"Valid until {_when(pool.registration_token_expires_at)}"
        return f"Expired {_when(pool.registration_token_expires_at)}"

    @admin.action(description="Generate a registration token (replaces the current one)", permissions=["token"])
    def issue_registration_token(self, request: HttpRequest, queryset: QuerySet[HostPool]):
        for pool in queryset:
            token, expires_at = pool.issue_registration_token()
            self.log_change(request, pool, "Generated a registration token")
            logger.info("Registration token generated for host pool %s by %s", pool.name, request.user)
            messages.warning(
                request,
                format_html(
                    "Registration token for host pool {}, valid until {}: <code>{}</code> "
                    "Copy it now: it is not shown again.",
                    pool.name, _when(expires_at), token,
                ),
            )
        return show_secrets_once(
            self, request, title="Registration tokens generated",
            back_url=reverse("admin:broker_hostpool_changelist"), back_label="Back to host pools",
        )

    @admin.action(description="Revoke the registration token", permissions=["token"])
    def revoke_registration_token(self, request: HttpRequest, queryset: QuerySet[HostPool]) -> None:
        revoked = 0
        for pool in queryset.exclude(registration_token_hash=""):
            pool.revoke_registration_token()
            self.log_change(request, pool, "Revoked the registration token")
            revoked += 1
        self.message_user(request, f"Revoked the registration token of {revoked} host pool(s).", messages.SUCCESS)


@admin.register(SessionHost)
class SessionHostAdmin(RoleAdminMixin, admin.ModelAdmin):
    role_verbs = ("drain", "replace")
    list_display = [
        "name", "host_pool", "status", "allow_new_sessions", "session_count", "last_heartbeat_at",
        "agent_version", "assigned_user",
    ]
    list_filter = ["status", "allow_new_sessions", "host_pool", "agent_version"]
    search_fields = ["name", "status_reason", "agent_version", "assigned_user__username"]
    ordering = ["host_pool__name", "name"]
    list_select_related = ["host_pool", "assigned_user"]
    autocomplete_fields = ["assigned_user"]
    actions = ["drain_on", "drain_off", "mark_for_replacement", "cancel_replacement"]
    fieldsets = [
        (None, {"fields": ["name", "host_pool", "allow_new_sessions", "assigned_user"]}),
        ("Status", {"fields": ["status", "status_reason", "status_changed_at", "last_heartbeat_at",
                               "agent_version", "health_checks_display", "certificate"]}),
        ("Registration", {"fields": ["registration_state"]}),
        ("Status changes", {"fields": ["recent_status_changes"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]
    # The agent reports status, heartbeats and health; the admin decides drain mode and assignment, and
    # marks the host for replacement with an action.
    readonly_fields = [
        "name", "host_pool", "status", "status_reason", "status_changed_at", "last_heartbeat_at",
        "agent_version", "health_checks_display", "certificate", "registration_state", "recent_status_changes",
        "created_at", "updated_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # Hosts join a pool with its registration token.

    def get_queryset(self, request: HttpRequest) -> QuerySet[SessionHost]:
        return super().get_queryset(request).annotate(session_count=Count("user_sessions"))

    def get_deleted_objects(self, objs, request: HttpRequest):
        # A host's status history and sessions go with it. They are read-only on their own pages, which
        # would otherwise make the admin refuse to delete the host for want of permission on them.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        perms_needed -= {SessionHostStatusChange._meta.verbose_name, UserSession._meta.verbose_name}
        return deleted, counts, perms_needed, protected

    def save_model(self, request, obj, form, change) -> None:
        # Write only what the admin changed: the agent updates status and heartbeat on this row
        # all the time, and a full save would put back the values read when the form was posted.
        if change:
            obj.save(update_fields=[*form.changed_data, "updated_at"])
        else:
            super().save_model(request, obj, form, change)

    @admin.display(description="Sessions", ordering="session_count")
    def session_count(self, host: SessionHost) -> int:
        return host.session_count

    @admin.display(description="Health checks")
    def health_checks_display(self, host: SessionHost) -> str:
        if not host.health_checks:
            return "-"
        return format_html("<pre>{}</pre>", json.dumps(host.health_checks, indent=2, sort_keys=True))

    @admin.display(description="A new registration of this name")
    def registration_state(self, host: SessionHost) -> str:
        if host.is_marked_for_replacement:
            who = host.marked_for_replacement_by.get_username() if host.marked_for_replacement_by else "a deleted user"
            return (f"Replaces this host: marked for replacement by {who} at "
                    f"{_when(host.marked_for_replacement_at)}.")
        if host.holds_valid_certificate():
            return "Is refused while the agent's certificate is valid (action: Mark for replacement)."
        return "Re-binds this host: the agent's certificate has expired or been revoked, or there is none."

    @admin.display(description=f"Latest {RECENT_STATUS_CHANGES}")
    def recent_status_changes(self, host: SessionHost) -> str:
        changes = list(host.status_changes.all()[:RECENT_STATUS_CHANGES])
        if not changes:
            return "No status changes recorded."
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((_when(c.at), c.get_old_status_display(), c.get_new_status_display(), c.reason or "-")
             for c in changes),
        )
        url = reverse("admin:broker_sessionhoststatuschange_changelist") + f"?session_host__id__exact={host.pk}"
        return format_html(
            "<table><thead><tr><th>When</th><th>From</th><th>To</th><th>Reason</th></tr></thead>"
            '<tbody>{}</tbody></table><p><a href="{}">All status changes of this host</a></p>',
            rows, url,
        )

    @admin.action(description="Drain on: allow no new sessions", permissions=["drain"])
    def drain_on(self, request: HttpRequest, queryset: QuerySet[SessionHost]) -> None:
        self._set_allow_new_sessions(request, queryset, False)

    @admin.action(description="Drain off: allow new sessions", permissions=["drain"])
    def drain_off(self, request: HttpRequest, queryset: QuerySet[SessionHost]) -> None:
        self._set_allow_new_sessions(request, queryset, True)

    def _set_allow_new_sessions(self, request: HttpRequest, queryset: QuerySet[SessionHost], allow: bool) -> None:
        hosts = list(queryset)
        for host in hosts:
            host.set_allow_new_sessions(allow)
            self.log_change(request, host, "Drain mode off" if allow else "Drain mode on")
        state = "out of drain mode: they accept new sessions" if allow else "in drain mode: no new sessions"
        self.message_user(request, f"{len(hosts)} session host(s) {state}.", messages.SUCCESS)


    @admin.action(description="Mark for replacement: the next registration of the name takes the host over",
                  permissions=["replace"])
    def mark_for_replacement(self, request: HttpRequest, queryset: QuerySet[SessionHost]) -> None:
        marked = 0
        for host in queryset:
            if host.mark_for_replacement(by=request.user):
                self.log_change(request, host, "Marked for replacement")
                logger.info("session host %s marked for replacement by %s", host.name, request.user)
                marked += 1
        self.message_user(request, f"{marked} session host(s) marked for replacement: the next registration of "
                                   "each name replaces its agent and revokes its certificate.", messages.SUCCESS)

    @admin.action(description="Cancel replacement: refuse registrations of the name again", permissions=["replace"])
    def cancel_replacement(self, request: HttpRequest, queryset: QuerySet[SessionHost]) -> None:
        cancelled = 0
        for host in queryset:
            if host.cancel_replacement():
                self.log_change(request, host, "Replacement cancelled")
                logger.info("session host %s: replacement cancelled by %s", host.name, request.user)
                cancelled += 1
        self.message_user(request, f"Replacement cancelled for {cancelled} session host(s).", messages.SUCCESS)


@admin.register(SessionHostStatusChange)
class SessionHostStatusChangeAdmin(ReadOnlyAdminMixin, SuperuserOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["at", "session_host", "old_status", "new_status", "reason"]
    list_filter = ["new_status", "old_status", "session_host__host_pool", "at"]
    search_fields = ["session_host__name", "reason"]
    ordering = ["-at", "-id"]
    date_hierarchy = "at"
    list_select_related = ["session_host"]


@admin.register(GatewayInstance)
class GatewayInstanceAdmin(ReadOnlyAdminMixin, RoleAdminMixin, admin.ModelAdmin):
    list_display = ["name", "public_address", "relay_url", "region", "version", "started_at", "last_seen_at"]
    list_filter = ["region", "version", "last_seen_at"]
    search_fields = ["name", "public_host", "relay_url", "region"]
    ordering = ["name"]

    @admin.display(description="Public address", ordering="public_host")
    def public_address(self, instance: GatewayInstance) -> str:
        return f"{instance.public_host}:{instance.public_port}"


# Each step of the connection sequence that writes a checkpoint, in order.
CHECKPOINTS = [
    ("created_at", "Request received"),
    ("ticket_accepted_at", "Ticket accepted"),
    ("host_selected_at", "Host selected"),
    ("host_notified_at", "Host notified"),
    ("host_connected_at", "Host connected"),
    ("relay_started_at", "Relay started"),
    ("ended_at", "Ended"),
]


@admin.register(Connection)
class ConnectionAdmin(ReadOnlyAdminMixin, RoleAdminMixin, admin.ModelAdmin):
    list_display = [
        "created_at", "activity_id", "username", "resource_name", "session_host", "gateway_instance", "state",
        "error_code", "duration_display", "bytes_total",
    ]
    list_filter = ["state", "transport", "end_reason", "error_code", "host_pool", "gateway_instance", "created_at"]
    search_fields = [
        "activity_id", "username", "resource_name", "client_name", "client_address", "error_code",
        "session_host__name",
    ]
    ordering = ["-created_at", "-id"]
    date_hierarchy = "created_at"
    list_select_related = ["session_host", "gateway_instance"]
    fieldsets = [
        (None, {"fields": ["activity_id", "state", "user", "username", "client_address", "client_name",
                           "transport"]}),
        ("Resource", {"fields": ["application_group", "resource_name", "host_pool", "session_host",
                                 "gateway_instance"]}),
        ("Checkpoints", {"fields": ["checkpoint_timeline", "setup_time_display", "duration_display"]}),
        ("Outcome", {"fields": ["bytes_client_to_host", "bytes_host_to_client", "end_reason", "error_code",
                                "error_message"]}),
    ]
    readonly_fields = ["checkpoint_timeline", "setup_time_display", "duration_display"]

    @admin.display(description="Duration")
    def duration_display(self, connection: Connection) -> str:
        return _seconds(connection.duration)

    @admin.display(description="Setup time (request to relay)")
    def setup_time_display(self, connection: Connection) -> str:
        if connection.relay_started_at is None:
            return "-"
        return _seconds(connection.relay_started_at - connection.created_at)

    @admin.display(description="Bytes (both ways)")
    def bytes_total(self, connection: Connection) -> int:
        return connection.bytes_client_to_host + connection.bytes_host_to_client

    @admin.display(description="Timeline")
    def checkpoint_timeline(self, connection: Connection) -> str:
        rows = []
        for field, label in CHECKPOINTS:
            at = getattr(connection, field)
            since = _seconds(at - connection.created_at) if at else "-"
            rows.append((label, _when(at), since))
        return format_html(
            "<table><thead><tr><th>Checkpoint</th><th>At</th><th>Since request</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )
