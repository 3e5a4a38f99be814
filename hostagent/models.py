"""Which consumer holds each session host's channel right now."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


def missed_heartbeat_threshold() -> timedelta:
    """How long without a heartbeat before a host counts as gone."""
    return timedelta(seconds=settings.HEARTBEAT_INTERVAL * settings.MISSED_HEARTBEATS)


class HostChannelQuerySet(models.QuerySet):
    def connected(self) -> HostChannelQuerySet:
        """Channels a consumer holds whose agent has been heard from lately (it connected, or sent a
        heartbeat, within the missed-heartbeat threshold)."""
        since = timezone.now() - missed_heartbeat_threshold()
        return self.filter(Q(connected_at__gte=since) | Q(session_host__last_heartbeat_at__gte=since))

    def is_connected(self, host_id: int) -> bool:
        """True when the host's agent can be reached over its channel right now."""
        return self.connected().filter(session_host_id=host_id).exists()

    def holder(self, host_id: int) -> str | None:
        """The channel-layer name of the consumer holding the host's channel, if any."""
        return self.filter(session_host_id=host_id).values_list("channel_name", flat=True).first()


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

    objects = HostChannelQuerySet.as_manager()

    class Meta:
        ordering = ["-connected_at"]

    def __str__(self) -> str:
        return f"channel of host {self.session_host_id} since {self.connected_at:%Y-%m-%d %H:%M:%S}"
