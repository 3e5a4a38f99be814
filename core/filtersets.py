"""Filters for the certificate, API-token, role-assignment and audit-event lists (``?field=value``)."""
from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from django.utils import timezone

from core.api.filters import DateTimeFromToRangeFilter
from core.choices import AuditAction, AuditSurface, CertificatePurpose
from core.models import ApiToken, AuditEvent, Certificate, RoleAssignment
from core.roles import ROLE_CHOICES, ScopeType


class RowIdFilter(django_filters.NumberFilter):
    """A row's id: a whole number a database can hold; anything else is a 400, never a 500."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, min_value=1, max_value=2**63 - 1, **kwargs)


class CertificateFilterSet(django_filters.FilterSet):
    purpose = django_filters.MultipleChoiceFilter(choices=CertificatePurpose.choices)
    serial_number = django_filters.CharFilter(lookup_expr="iexact")
    fingerprint_sha256 = django_filters.CharFilter(lookup_expr="iexact")
    revoked = django_filters.BooleanFilter(field_name="revoked_at", lookup_expr="isnull", exclude=True)
    not_after = DateTimeFromToRangeFilter(label="Expires between (not_after_after, not_after_before)")

    class Meta:
        model = Certificate
        fields = ["purpose", "common_name", "serial_number", "fingerprint_sha256", "revoked", "not_after"]


class ApiTokenFilterSet(django_filters.FilterSet):
    revoked = django_filters.BooleanFilter(field_name="revoked_at", lookup_expr="isnull", exclude=True)
    usable = django_filters.BooleanFilter(method="filter_usable", label="Neither revoked nor expired")
    # A plain number, not a choice of users: a plain user must not learn which user ids exist.
    user = RowIdFilter(field_name="user_id", label="User id (superusers see every user's tokens)")

    class Meta:
        model = ApiToken
        fields = ["user", "revoked", "usable"]

    def filter_usable(self, queryset: QuerySet, name: str, value: bool) -> QuerySet:
        usable = Q(revoked_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        return queryset.filter(usable) if value else queryset.exclude(usable)


class RoleAssignmentFilterSet(django_filters.FilterSet):
    role = django_filters.ChoiceFilter(choices=ROLE_CHOICES)
    scope_type = django_filters.ChoiceFilter(choices=ScopeType.choices)
    scope_id = RowIdFilter(field_name="scope_id")
    user = RowIdFilter(field_name="user_id", label="User id")
    group = RowIdFilter(field_name="group_id", label="Group id")

    class Meta:
        model = RoleAssignment
        fields = ["role", "scope_type", "scope_id", "user", "group"]


class AuditEventFilterSet(django_filters.FilterSet):
    """The audit log by who, what, which object and when (``at_after`` / ``at_before``, ISO 8601)."""

    actor = django_filters.CharFilter(field_name="actor_name", lookup_expr="iexact", label="User name (exact)")
    actor_id = RowIdFilter(field_name="actor_id", label="User id")
    action = django_filters.MultipleChoiceFilter(choices=AuditAction.choices)
    surface = django_filters.MultipleChoiceFilter(choices=AuditSurface.choices)
    object_type = django_filters.CharFilter(lookup_expr="iexact", label="app_label.model, e.g. broker.sessionhost")
    object_id = django_filters.CharFilter(max_length=64)
    result = django_filters.CharFilter(max_length=20)
    request_id = django_filters.CharFilter(max_length=64)
    at = DateTimeFromToRangeFilter(label="Recorded between (at_after, at_before)")

    class Meta:
        model = AuditEvent
        fields = ["actor", "actor_id", "action", "surface", "object_type", "object_id", "result", "request_id", "at"]
