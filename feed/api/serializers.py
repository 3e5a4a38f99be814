"""Serializers for workspaces, application groups, assignments, desktops and RemoteApps."""
from __future__ import annotations

from rest_framework import serializers

from core.api.serializers import ModelCleanSerializer
from feed.models import ApplicationGroup, Assignment, Desktop, RemoteApp, Workspace


class WorkspaceSerializer(ModelCleanSerializer):
    class Meta:
        model = Workspace
        fields = ["id", "name", "friendly_name", "description", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]


class ApplicationGroupSerializer(ModelCleanSerializer):
    host_pool_name = serializers.CharField(source="host_pool.name", read_only=True)

    class Meta:
        model = ApplicationGroup
        fields = [
            "id", "name", "friendly_name", "description", "group_type", "host_pool", "host_pool_name", "workspace",
            "created_at", "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
        extra_kwargs = {
            "group_type": {
                "help_text": "desktop (comes with exactly one Desktop) or remoteapp (pooled host pools only). "
                "Set on creation; changing it later is refused (400).",
            },
        }


class AssignmentSerializer(ModelCleanSerializer):
    application_group_name = serializers.CharField(source="application_group.name", read_only=True)
    username = serializers.CharField(source="user.username", read_only=True, allow_null=True)
    group_name = serializers.CharField(source="group.name", read_only=True, allow_null=True)

    class Meta:
        model = Assignment
        fields = [
            "id", "application_group", "application_group_name", "user", "username", "group", "group_name",
            "created_at",
        ]
        read_only_fields = ["created_at"]
        extra_kwargs = {
            "user": {"help_text": "The user assigned (give a user or a group, not both)."},
            "group": {"help_text": "The group assigned: every member gets the application group."},
        }


class DesktopSerializer(ModelCleanSerializer):
    application_group_name = serializers.CharField(source="application_group.name", read_only=True)

    class Meta:
        model = Desktop
        fields = ["id", "application_group", "application_group_name", "friendly_name", "description", "updated_at"]
        # A Desktop is born with its application group and stays in it.
        read_only_fields = ["application_group", "updated_at"]


class RemoteAppSerializer(ModelCleanSerializer):
    application_group_name = serializers.CharField(source="application_group.name", read_only=True)
    # "Arguments required but none given" is about the arguments, not the whole object.
    constraint_error_fields = {"remoteapp_required_arguments_given": "command_line_arguments"}

    class Meta:
        model = RemoteApp
        fields = [
            "id", "application_group", "application_group_name", "name", "friendly_name", "description",
            "file_path", "command_line_setting", "command_line_arguments", "file_extensions", "show_in_feed",
            "created_at", "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
