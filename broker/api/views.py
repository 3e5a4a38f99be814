"""API endpoints for host pools, session hosts, user sessions, connections and gateway instances."""
from __future__ import annotations

import logging
from datetime import timedelta

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.response import Response

from broker.api.serializers import (
    ConnectionSerializer,
    DrainSerializer,
    GatewayInstanceSerializer,
    HostPoolSerializer,
    RegistrationTokenLifetimeSerializer,
    RegistrationTokenSerializer,
    ReplacementSerializer,
    SessionHostSerializer,
    UserSessionSerializer,
)
from broker.filtersets import (
    ConnectionFilterSet,
    GatewayInstanceFilterSet,
    HostPoolFilterSet,
    SessionHostFilterSet,
    UserSessionFilterSet,
)
from broker.models import Connection, GatewayInstance, HostPool, SessionHost, UserSession
from core.api.parsers import JSONParser
from core.api.viewsets import ManagementViewSet, ReadOnlyViewSet

log = logging.getLogger(__name__)


class HostPoolViewSet(ManagementViewSet):
    """Host pools: sets of identical session hosts. A pool still used by hosts or application groups
    cannot be deleted (409). New hosts join with the pool's registration token (registration-token/)."""

    queryset = HostPool.objects.all()
    serializer_class = HostPoolSerializer
    filterset_class = HostPoolFilterSet
    search_fields = ["name", "friendly_name", "description"]
    ordering_fields = ["name", "friendly_name", "pool_type", "max_session_limit", "created_at", "updated_at"]
    role_verbs = {"registration_token": "token", "revoke_registration_token": "token"}

    @extend_schema(
        summary="Issue a registration token",
        description="Makes a new registration token for hosts joining this pool, replacing any previous one. "
        "The token is returned in this answer only: the server keeps its hash.",
        request=RegistrationTokenLifetimeSerializer,
        responses={201: RegistrationTokenSerializer},
    )
    @action(detail=True, methods=["post"], url_path="registration-token", parser_classes=[JSONParser])
    def registration_token(self, request, pk=None) -> Response:
        pool = self.get_object()
        params = RegistrationTokenLifetimeSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        hours = params.validated_data.get("lifetime_hours")
        token, expires_at = pool.issue_registration_token(timedelta(hours=hours) if hours else None)
        log.info("registration token issued for host pool %s by %s, expires %s", pool.name, request.user, expires_at)
        answer = RegistrationTokenSerializer({"token": token, "expires_at": expires_at})
        return Response(answer.data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Revoke the registration token",
        description="Hosts can no longer join with the pool's token. Hosts that already joined are unaffected.",
        request=None,
        responses={204: OpenApiResponse(description="Revoked (or there was none).")},
    )
    @registration_token.mapping.delete
    def revoke_registration_token(self, request, pk=None) -> Response:
        pool = self.get_object()
        pool.revoke_registration_token()
        log.info("registration token of host pool %s revoked by %s", pool.name, request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionHostViewSet(ManagementViewSet):
    """Session hosts. Status, heartbeat, agent version and health checks are reported by the host's agent;
    drain mode is switched with drain/, and replacement/ lets a new registration take the host's name."""

    queryset = SessionHost.objects.select_related("host_pool", "assigned_user", "marked_for_replacement_by")
    serializer_class = SessionHostSerializer
    filterset_class = SessionHostFilterSet
    search_fields = ["name", "host_pool__name", "assigned_user__username", "agent_version", "status_reason"]
    ordering_fields = ["name", "host_pool__name", "status", "status_changed_at", "last_heartbeat_at", "created_at"]
    role_verbs = {"drain": "drain", "replacement": "replace"}

    @extend_schema(
        summary="Drain mode on or off",
        description="allow_new_sessions=false puts the host in drain mode: it takes no new sessions and keeps "
        "the ones it has. allow_new_sessions=true ends drain mode. Answers with the host.",
        request=DrainSerializer,
        responses={200: SessionHostSerializer},
    )
    @action(detail=True, methods=["post"], parser_classes=[JSONParser])
    def drain(self, request, pk=None) -> Response:
        host = self.get_object()
        params = DrainSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        allow = params.validated_data["allow_new_sessions"]
        host.set_allow_new_sessions(allow)
        log.info("session host %s: allow_new_sessions=%s by %s", host.name, allow, request.user)
        host.refresh_from_db()
        return Response(self.get_serializer(host).data)

    @extend_schema(
        summary="Mark for replacement, or cancel it",
        description="A registration of a host name the pool already has (POST /api/v1/hostagent/register/) is "
        "refused with 409 host_in_use while the host's agent holds a valid certificate: a registration token does "
        "not prove to be that machine. marked_for_replacement=true lets the next registration of the name take "
        "the host over: the host is bound to the new agent's certificate, the old one is revoked and the mark is "
        "cleared. Until then the current agent keeps working; marking a marked host keeps the first mark's who "
        "and when. marked_for_replacement=false cancels the mark. Answers with the host.",
        request=ReplacementSerializer,
        responses={200: SessionHostSerializer},
    )
    @action(detail=True, methods=["post"], parser_classes=[JSONParser])
    def replacement(self, request, pk=None) -> Response:
        host = self.get_object()
        params = ReplacementSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        if params.validated_data["marked_for_replacement"]:
            if host.mark_for_replacement(by=request.user):
                log.info("session host %s marked for replacement by %s", host.name, request.user)
        elif host.cancel_replacement():
            log.info("session host %s: replacement cancelled by %s", host.name, request.user)
        host = self.get_queryset().get(pk=host.pk)
        return Response(self.get_serializer(host).data)


class UserSessionViewSet(ReadOnlyViewSet):
    """Users' sessions on session hosts, as the hosts' agents report them (read-only)."""

    queryset = UserSession.objects.select_related("session_host")
    serializer_class = UserSessionSerializer
    filterset_class = UserSessionFilterSet
    search_fields = ["username", "session_host__name"]
    ordering_fields = ["started_at", "updated_at", "username", "session_host__name", "state"]


class ConnectionViewSet(ReadOnlyViewSet):
    """Connection attempts (activities), with a timestamp per checkpoint, bytes each way, the end reason and
    a stable error code (read-only)."""

    queryset = Connection.objects.all()
    serializer_class = ConnectionSerializer
    filterset_class = ConnectionFilterSet
    search_fields = ["username", "resource_name", "error_code", "client_name"]
    ordering_fields = ["created_at", "ended_at", "username", "state", "error_code"]


class GatewayInstanceViewSet(ReadOnlyViewSet):
    """Gateway instances: one per `serve` process, registered by the process itself (read-only)."""

    queryset = GatewayInstance.objects.all()
    serializer_class = GatewayInstanceSerializer
    filterset_class = GatewayInstanceFilterSet
    search_fields = ["name", "public_host", "region"]
    ordering_fields = ["name", "region", "started_at", "last_seen_at"]
