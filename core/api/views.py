"""API endpoints of the core app: issued certificates (read-only) and the caller's own API tokens."""
from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from core import audit
from core.api.serializers import (
    ApiTokenCreatedSerializer,
    ApiTokenCreateSerializer,
    ApiTokenSerializer,
    CertificateSerializer,
    RoleAssignmentSerializer,
    RoleSerializer,
)
from core.api.viewsets import ApiViewSetMixin, ManagementViewSet, ReadOnlyViewSet
from core.choices import AuditAction
from core.filtersets import ApiTokenFilterSet, CertificateFilterSet, RoleAssignmentFilterSet
from core.models import ApiToken, Certificate, RoleAssignment
from core.roles import ROLES

log = logging.getLogger(__name__)


class CertificateViewSet(ReadOnlyViewSet):
    """Every certificate our CA issued, and the CA's own (read-only; no private keys here)."""

    queryset = Certificate.objects.all()
    serializer_class = CertificateSerializer
    filterset_class = CertificateFilterSet
    search_fields = ["common_name", "subject", "serial_number", "fingerprint_sha256"]
    ordering_fields = ["issued_at", "not_before", "not_after", "common_name", "purpose", "revoked_at"]


class ApiTokenViewSet(
    ApiViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """API tokens. Every signed-in user manages their own (superusers see and revoke everyone's). The token
    text is returned once, when it is created; DELETE revokes a token, which stays listed."""

    # Tokens are personal: any signed-in user may manage their own, no model permission needed.
    permission_classes = [IsAuthenticated]
    serializer_class = ApiTokenSerializer
    filterset_class = ApiTokenFilterSet
    search_fields = ["description", "prefix", "user__username"]
    ordering_fields = ["created_at", "expires_at", "last_used_at", "revoked_at"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ApiToken.objects.none()  # Schema generation: no user.
        tokens = ApiToken.objects.select_related("user")
        # Another user's token is a 404, not a 403: its existence is not the caller's business.
        return tokens if self.request.user.is_superuser else tokens.filter(user=self.request.user)

    @extend_schema(
        summary="Create a token for yourself",
        description="The answer carries the token text, once: only its hash is stored. A request made with "
        "an expiring token can only create tokens that expire no later than it does.",
        request=ApiTokenCreateSerializer,
        responses={201: ApiTokenCreatedSerializer},
    )
    def create(self, request, *args, **kwargs) -> Response:
        params = ApiTokenCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        hours = params.validated_data["lifetime_hours"]
        lifetime = timedelta(hours=hours) if hours else None
        self._refuse_outliving_the_caller(request, lifetime)
        with transaction.atomic():
            token, key = ApiToken.issue(request.user, description=params.validated_data["description"],
                                        lifetime=lifetime)
            audit.record(AuditAction.TOKEN_ISSUE, token, request=request,
                         detail=f"expires {token.expires_at.isoformat() if token.expires_at else 'never'}")
        log.info("API token %s… issued to %s, expires %s", token.prefix, request.user, token.expires_at or "never")
        token.token = key  # Read by ApiTokenCreatedSerializer; never stored.
        return Response(ApiTokenCreatedSerializer(token).data, status=status.HTTP_201_CREATED)

    @staticmethod
    def _refuse_outliving_the_caller(request, lifetime: timedelta | None) -> None:
        # Otherwise a short-lived token could mint a permanent one, and its expiry would mean nothing.
        caller = request.auth if isinstance(request.auth, ApiToken) else None
        if caller is None or caller.expires_at is None:
            return
        if lifetime is None or timezone.now() + lifetime > caller.expires_at:
            raise exceptions.ValidationError({
                "lifetime_hours": f"The token this request is made with expires at {caller.expires_at.isoformat()}; "
                "a token it creates must expire no later."
            })

    @extend_schema(
        summary="Revoke a token",
        description="Sets revoked_at: the token is refused from now on and stays listed. Revoking a revoked "
        "token changes nothing.",
        responses={204: OpenApiResponse(description="Revoked.")},
    )
    def destroy(self, request, *args, **kwargs) -> Response:
        token = self.get_object()
        with transaction.atomic():
            if token.revoke():
                audit.record(AuditAction.TOKEN_REVOKE, token, request=request)
        log.info("API token %s… of %s revoked by %s", token.prefix, token.user, request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RoleAssignmentViewSet(ManagementViewSet):
    """Role assignments: a built-in role (roles/) given to a user or a group at a scope: everything
    (scope_type all), or one workspace, host pool or application group (scope_id). Only superusers manage
    them, as only AVD's Owner and User Access Administrator assign roles (docs/roles.md)."""

    queryset = RoleAssignment.objects.select_related("user", "group")
    serializer_class = RoleAssignmentSerializer
    filterset_class = RoleAssignmentFilterSet
    search_fields = ["role", "user__username", "group__name"]
    ordering_fields = ["role", "scope_type", "scope_id", "created_at"]


class RoleViewSet(ApiViewSetMixin, viewsets.ViewSet):
    """The built-in roles, their actions (<kind>.<verb>) and the scopes each may be given at (read-only)."""

    permission_classes = [IsAuthenticated]  # The table is documentation: any signed-in user may read it.
    serializer_class = RoleSerializer
    lookup_value_regex = "[^/]+"

    @staticmethod
    def _row(role) -> dict:
        return {"name": role.name, "description": role.description, "scopes": list(role.scopes),
                "actions": sorted(role.actions)}

    @extend_schema(summary="The built-in roles", responses={200: RoleSerializer(many=True)})
    def list(self, request) -> Response:
        return Response(RoleSerializer([self._row(role) for role in ROLES.values()], many=True).data)

    @extend_schema(summary="One built-in role, by name", responses={200: RoleSerializer})
    def retrieve(self, request, pk=None) -> Response:
        role = ROLES.get(pk)
        if role is None:
            raise exceptions.NotFound(f"There is no role {pk!r}.")
        return Response(RoleSerializer(self._row(role)).data)
