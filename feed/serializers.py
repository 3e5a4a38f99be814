"""The JSON feed's answer: one entry per desktop or RemoteApp the caller may use."""
from __future__ import annotations

from rest_framework import serializers

from feed.resources import FEED_TYPES


class FeedWorkspaceSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField(help_text="The workspace's friendly name (its name when it has none).")
    description = serializers.CharField(allow_blank=True)


class FeedResourceSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="`<application group>/<alias>`: stable, unique among all resources.")
    type = serializers.ChoiceField(choices=sorted(FEED_TYPES.values()))
    title = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    workspace = FeedWorkspaceSerializer()
    application_group = serializers.CharField()
    file_extensions = serializers.ListField(child=serializers.CharField(),
                                            help_text="RemoteApps: the file types it opens, e.g. `.txt`.")
    icon_url = serializers.URLField(help_text="The icon as .ico (several sizes).")
    icon_png32_url = serializers.URLField(help_text="The icon as a 32x32 PNG.")
    rdp_url = serializers.URLField(help_text="A signed .rdp file with a fresh connection ticket, per download.")
