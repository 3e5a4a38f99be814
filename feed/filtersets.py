"""Filters for the feed's API lists (``?field=value``); a bad value answers 400 naming the filter."""
from __future__ import annotations

import django_filters

from broker.models import HostPool
from feed.choices import ApplicationGroupType, CommandLineSetting
from feed.models import ApplicationGroup, Assignment, Desktop, RemoteApp, Workspace


class WorkspaceFilterSet(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="iexact")

    class Meta:
        model = Workspace
        fields = ["name"]


class ApplicationGroupFilterSet(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="iexact")
    group_type = django_filters.ChoiceFilter(choices=ApplicationGroupType.choices)

    class Meta:
        model = ApplicationGroup
        fields = ["name", "group_type", "host_pool", "workspace"]


class AssignmentFilterSet(django_filters.FilterSet):
    class Meta:
        model = Assignment
        fields = ["application_group", "user", "group"]


class DesktopFilterSet(django_filters.FilterSet):
    host_pool = django_filters.ModelChoiceFilter(
        field_name="application_group__host_pool", queryset=HostPool.objects.all(), label="Host pool"
    )
    workspace = django_filters.ModelChoiceFilter(
        field_name="application_group__workspace", queryset=Workspace.objects.all(), label="Workspace"
    )

    class Meta:
        model = Desktop
        fields = ["application_group", "host_pool", "workspace"]


class RemoteAppFilterSet(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="iexact")
    command_line_setting = django_filters.ChoiceFilter(choices=CommandLineSetting.choices)
    host_pool = django_filters.ModelChoiceFilter(
        field_name="application_group__host_pool", queryset=HostPool.objects.all(), label="Host pool"
    )

    class Meta:
        model = RemoteApp
        fields = ["application_group", "host_pool", "name", "show_in_feed", "command_line_setting"]
