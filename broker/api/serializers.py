"""Serializers for host pools, session hosts, user sessions, connections and gateway instances."""
from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from broker.models import Connection, GatewayInstance, HostPool, SessionHost, UserSession
from core.api.serializers import ModelCleanSerializer, StrictBooleanField

REGISTRATION_TOKEN_MAX_HOURS = 24 * 30


class HostPoolSerializer(ModelCleanSerializer):
    # The registration token itself is shown once by its own endpoint; its hash is never shown.
    has_valid_registration_token = serializers.BooleanField(
        source="registration_token_valid", read_only=True, help_text="A registration token exists and has not expired."
    )

    class Meta:
        model = HostPool
        fields = [
            "id", "name", "friendly_name", "description", "pool_type", "load_balancer", "personal_assignment",
            "max_session_limit", "custom_rdp_properties", "start_vm_on_connect",
            "registration_token_expires_at", "has_valid_registration_token", "created_at", "updated_at",
        ]
        read_only_fields = ["registration_token_expires_at", "created_at", "updated_at"]
        extra_kwargs = {
            "pool_type": {"help_text": "Pooled or personal. Set on creation; changing it later is refused (400)."},
        }


class RegistrationTokenLifetimeSerializer(serializers.Serializer):
    lifetime_hours = serializers.IntegerField(
        min_value=1,
        max_value=REGISTRATION_TOKEN_MAX_HOURS,
        required=False,
        help_text=f"Hours the token stays valid, 1 to {REGISTRATION_TOKEN_MAX_HOURS} "
        f"(default {settings.REGISTRATION_TOKEN_DEFAULT_HOURS}).",
    )


class RegistrationTokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Shown once: only its hash is stored. It replaces any previous token.")
    expires_at = serializers.DateTimeField()


class SessionHostSerializer(ModelCleanSerializer):
    host_pool_name = serializers.CharField(source="host_pool.name", read_only=True)
    assigned_username = serializers.CharField(source="assigned_user.username", read_only=True, allow_null=True)
    marked_for_replacement_by_username = serializers.CharField(
        source="marked_for_replacement_by.username", read_only=True, allow_null=True
    )
    rdp_certificate_not_after = serializers.DateTimeField(
        source="rdp_certificate.not_after", read_only=True, allow_null=True,
        help_text="Expiry of the verified RDP certificate; null when the host presents none from our CA.",
    )

    class Meta:
        model = SessionHost
        fields = [
            "id", "name", "host_pool", "host_pool_name", "status", "status_reason", "status_changed_at",
            "allow_new_sessions", "last_heartbeat_at", "agent_version", "health_checks",
            "assigned_user", "assigned_username", "certificate",
            "rdp_certificate", "rdp_certificate_sha256", "rdp_certificate_not_after", "rdp_certificate_detail",
            "rdp_certificate_checked_at", "marked_for_replacement_at", "marked_for_replacement_by", "marked_for_replacement_by_username",
            "created_at", "updated_at",
        ]
        # Reported by the host's agent, or changed through their own operations (drain, replacement),
        # never set here.
        read_only_fields = [
            "status", "status_reason", "status_changed_at", "allow_new_sessions", "last_heartbeat_at",
            "agent_version", "health_checks", "certificate", "rdp_certificate", "rdp_certificate_sha256",
            "rdp_certificate_detail", "rdp_certificate_checked_at", "marked_for_replacement_at",
            "marked_for_replacement_by", "created_at", "updated_at",
        ]
        extra_kwargs = {
            "assigned_user": {"help_text": "Personal pools only: the user this host belongs to."},
            "allow_new_sessions": {"help_text": "False puts the host in drain mode; change it with drain/."},
            "marked_for_replacement_at": {
                "help_text": "Set: the next registration of this name takes the host over (replacement/); "
                             "null: registrations are refused while the agent's certificate is valid."},
        }


class DrainSerializer(serializers.Serializer):
    allow_new_sessions = StrictBooleanField(
        help_text="false drains the host (no new sessions; existing ones stay), true takes it out of drain mode."
    )


class ReplacementSerializer(serializers.Serializer):
    marked_for_replacement = StrictBooleanField(
        help_text="true: the next registration of the host's name takes it over (a replaced machine); false: "
        "registrations are refused again while the agent's certificate is valid."
    )


class UserSessionSerializer(serializers.ModelSerializer):
    session_host_name = serializers.CharField(source="session_host.name", read_only=True)
    host_pool = serializers.IntegerField(source="session_host.host_pool_id", read_only=True)

    class Meta:
        model = UserSession
        fields = [
            "id", "session_host", "session_host_name", "host_pool", "session_id", "user", "username", "state",
            "started_at", "updated_at",
        ]
        read_only_fields = fields


class ConnectionSerializer(serializers.ModelSerializer):
    duration_seconds = serializers.SerializerMethodField(help_text="From relay start to end; null until both exist.")

    class Meta:
        model = Connection
        fields = [
            "id", "activity_id", "user", "username", "application_group", "resource_name", "host_pool",
            "session_host", "gateway_instance", "client_address", "client_name", "transport", "state", "created_at",
            "ticket_accepted_at", "host_selected_at", "host_notified_at", "host_connected_at",
            "relay_started_at", "ended_at", "duration_seconds", "bytes_client_to_host", "bytes_host_to_client",
            "end_reason", "error_code", "error_message", "host_rdp_certificate_sha256",
        ]
        read_only_fields = fields

    def get_duration_seconds(self, connection: Connection) -> float | None:
        duration = connection.duration
        return duration.total_seconds() if duration is not None else None


class GatewayInstanceSerializer(serializers.ModelSerializer):
    class Meta:
        model = GatewayInstance
        fields = ["id", "name", "public_host", "public_port", "relay_url", "region", "version", "started_at", "last_seen_at"]
        read_only_fields = fields
