"""API endpoints for workspaces, application groups, assignments, desktops and RemoteApps."""
from __future__ import annotations

from core.api.viewsets import ListRetrieveUpdateViewSet, ManagementViewSet
from feed.api.serializers import (
    ApplicationGroupSerializer,
    AssignmentSerializer,
    DesktopSerializer,
    RemoteAppSerializer,
    WorkspaceSerializer,
)
from feed.filtersets import (
    ApplicationGroupFilterSet,
    AssignmentFilterSet,
    DesktopFilterSet,
    RemoteAppFilterSet,
    WorkspaceFilterSet,
)
from feed.models import ApplicationGroup, Assignment, Desktop, RemoteApp, Workspace


class WorkspaceViewSet(ManagementViewSet):
    """Workspaces: what users subscribe to. Deleting one leaves its application groups without a workspace."""

    queryset = Workspace.objects.all()
    serializer_class = WorkspaceSerializer
    filterset_class = WorkspaceFilterSet
    search_fields = ["name", "friendly_name", "description"]
    ordering_fields = ["name", "friendly_name", "created_at", "updated_at"]


class ApplicationGroupViewSet(ManagementViewSet):
    """Application groups. Creating a desktop group creates its one Desktop; deleting a group deletes its
    Desktop or RemoteApps and its assignments. RemoteApp groups need a pooled host pool."""

    queryset = ApplicationGroup.objects.select_related("host_pool")
    serializer_class = ApplicationGroupSerializer
    filterset_class = ApplicationGroupFilterSet
    search_fields = ["name", "friendly_name", "description", "host_pool__name", "workspace__name"]
    ordering_fields = ["name", "friendly_name", "group_type", "host_pool__name", "created_at", "updated_at"]


class AssignmentViewSet(ManagementViewSet):
    """Assignments: a user or a group given an application group."""

    queryset = Assignment.objects.select_related("application_group", "user", "group")
    serializer_class = AssignmentSerializer
    filterset_class = AssignmentFilterSet
    search_fields = ["user__username", "group__name", "application_group__name"]
    ordering_fields = ["application_group__name", "user__username", "group__name", "created_at"]


class DesktopViewSet(ListRetrieveUpdateViewSet):
    """Desktops. A Desktop is created with its desktop application group and deleted with it, so this
    endpoint only lists, shows and updates them: POST and DELETE answer 405. Create or delete the
    application group instead."""

    # The icon is binary and not part of this API: do not load it for every row.
    queryset = Desktop.objects.select_related("application_group").defer("icon")
    serializer_class = DesktopSerializer
    filterset_class = DesktopFilterSet
    search_fields = ["friendly_name", "description", "application_group__name"]
    ordering_fields = ["friendly_name", "application_group__name", "updated_at"]


class RemoteAppViewSet(ManagementViewSet):
    """RemoteApps: programs published from a RemoteApp application group."""

    queryset = RemoteApp.objects.select_related("application_group").defer("icon")
    serializer_class = RemoteAppSerializer
    filterset_class = RemoteAppFilterSet
    search_fields = ["name", "friendly_name", "description", "file_path", "application_group__name"]
    ordering_fields = ["name", "friendly_name", "application_group__name", "created_at", "updated_at"]
