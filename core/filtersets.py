"""Filters for the certificate and API-token lists (``?field=value``)."""
from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet
from django.utils import timezone

from core.api.filters import DateTimeFromToRangeFilter
from core.choices import CertificatePurpose
from core.models import ApiToken, Certificate


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
    user = django_filters.NumberFilter(field_name="user_id", label="User id (staff see every user's tokens)")

    class Meta:
        model = ApiToken
        fields = ["user", "revoked", "usable"]

    def filter_usable(self, queryset: QuerySet, name: str, value: bool) -> QuerySet:
        usable = Q(revoked_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        return queryset.filter(usable) if value else queryset.exclude(usable)
