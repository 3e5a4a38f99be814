"""Which consumer holds each session host's channel right now."""
from __future__ import annotations

from django.db import models
from django.utils import timezone


class HostChannel(models.Model):
    """The live host channel of a session host: at most one per host, so a newer channel replaces
    an older one and only the holder of the row may mark the host Unavailable when it closes."""

    session_host = models.OneToOneField(
        "broker.SessionHost", on_delete=models.CASCADE, primary_key=True, related_name="host_channel"
    )
    channel_name = models.CharField(max_length=200, help_text="The consumer's channel-layer name.")
    certificate = models.ForeignKey(
        "wvdportal.Certificate", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="The certificate the agent proved possession of.",
    )
    remote_address = models.GenericIPAddressField(null=True, blank=True)
    agent_version = models.CharField(max_length=50, blank=True)
    connected_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-connected_at"]

    def __str__(self) -> str:
        return f"channel of host {self.session_host_id} since {self.connected_at:%Y-%m-%d %H:%M:%S}"
