"""Filters for the broker's API lists (``?field=value``); a bad value answers 400 naming the filter."""
from __future__ import annotations

import django_filters
from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.utils import timezone

from broker.choices import (
    ConnectionState,
    ConnectionTransport,
    HostPoolType,
    LoadBalancer,
    SessionHostStatus,
    UserSessionState,
)
from broker.models import Connection, GatewayInstance, HostPool, SessionHost, UserSession
from core.api.filters import DateTimeFromToRangeFilter


class HostPoolFilterSet(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="iexact")
    pool_type = django_filters.ChoiceFilter(choices=HostPoolType.choices)
    load_balancer = django_filters.ChoiceFilter(choices=LoadBalancer.choices)
    has_valid_registration_token = django_filters.BooleanFilter(
        method="filter_has_valid_registration_token", label="Has an unexpired registration token"
    )

    class Meta:
        model = HostPool
        fields = ["name", "pool_type", "load_balancer", "personal_assignment", "start_vm_on_connect"]

    def filter_has_valid_registration_token(self, queryset: QuerySet, name: str, value: bool) -> QuerySet:
        valid = Q(registration_token_expires_at__gt=timezone.now()) & ~Q(registration_token_hash="")
        return queryset.filter(valid) if value else queryset.exclude(valid)


class SessionHostFilterSet(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="iexact")
    status = django_filters.MultipleChoiceFilter(choices=SessionHostStatus.choices)
    last_heartbeat_at = DateTimeFromToRangeFilter()

    class Meta:
        model = SessionHost
        fields = ["host_pool", "name", "status", "allow_new_sessions", "assigned_user", "agent_version"]


class UserSessionFilterSet(django_filters.FilterSet):
    host_pool = django_filters.ModelChoiceFilter(
        field_name="session_host__host_pool", queryset=HostPool.objects.all(), label="Host pool"
    )
    username = django_filters.CharFilter(lookup_expr="iexact")
    state = django_filters.ChoiceFilter(choices=UserSessionState.choices)

    class Meta:
        model = UserSession
        fields = ["session_host", "host_pool", "user", "username", "state"]


class ConnectionFilterSet(django_filters.FilterSet):
    user = django_filters.ModelChoiceFilter(queryset=get_user_model().objects.all())
    username = django_filters.CharFilter(lookup_expr="iexact")
    activity_id = django_filters.UUIDFilter()
    error_code = django_filters.CharFilter()
    state = django_filters.MultipleChoiceFilter(choices=ConnectionState.choices)
    transport = django_filters.MultipleChoiceFilter(choices=ConnectionTransport.choices)
    created_at = DateTimeFromToRangeFilter(
        label="Created between (created_at_after, created_at_before; ISO 8601)"
    )

    class Meta:
        model = Connection
        fields = [
            "user", "username", "activity_id", "error_code", "state", "host_pool", "session_host",
            "gateway_instance", "application_group", "end_reason", "transport", "created_at",
        ]


class GatewayInstanceFilterSet(django_filters.FilterSet):
    last_seen_at = DateTimeFromToRangeFilter()

    class Meta:
        model = GatewayInstance
        fields = ["name", "region", "public_host", "last_seen_at"]
