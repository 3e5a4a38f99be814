"""Session-host health as the host channel sees it: heartbeats, channel up and down, missed heartbeats.

Status rules (every transition goes through SessionHost.set_status, which records why):
- a heartbeat whose fatal checks pass makes the host Available, or Needs assistance when a
  non-fatal check fails; a failed fatal check makes it Unavailable;
- the host's channel closing, or N missed heartbeats, make an Available / Needs-assistance host
  Unavailable;
- the agent saying it shuts down makes it Shutdown;
- Upgrading belongs to whoever runs the upgrade: heartbeats leave it alone.
These are plain synchronous functions over the database; the consumer calls them through
database_sync_to_async, the Celery beat task directly.
"""
from __future__ import annotations

import logging
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from broker.choices import SessionHostStatus
from broker.models import SessionHost, UserSession
from hostagent.models import HostChannel, missed_heartbeat_threshold
from wire.hostchannel import HealthCheck, Heartbeat, SessionReport

log = logging.getLogger(__name__)

# Statuses the channel manages; Upgrading is set and cleared by the upgrade flow.
ONLINE_STATUSES = (SessionHostStatus.AVAILABLE, SessionHostStatus.NEEDS_ASSISTANCE)


def heartbeat_interval() -> int:
    return settings.HEARTBEAT_INTERVAL


def evaluate_checks(checks: list[HealthCheck]) -> tuple[str, str]:
    """The status a set of health checks calls for, and the reason to record."""
    fatal = [check for check in checks if not check["ok"] and check["fatal"]]
    warnings = [check for check in checks if not check["ok"] and not check["fatal"]]
    if fatal:
        return SessionHostStatus.UNAVAILABLE, _describe(fatal)
    if warnings:
        return SessionHostStatus.NEEDS_ASSISTANCE, _describe(warnings)
    return SessionHostStatus.AVAILABLE, "The agent reports every health check passing."


def _describe(failed: list[HealthCheck]) -> str:
    return "; ".join(f"{check['name']}: {check['detail'] or 'failed'}" for check in failed)[:300]


def _failing(checks: list[dict[str, Any]]) -> set[str]:
    return {check.get("name", "") for check in checks if not check.get("ok", True)}


def record_heartbeat(host_id: int, heartbeat: Heartbeat, *, sync_sessions: bool = True,
                     previous_checks: list[HealthCheck] | None = None) -> str | None:
    """Store a heartbeat: time, agent version, checks, the status they call for and (when
    ``sync_sessions``) the reported user sessions. Returns the host's status, or None when the host
    no longer exists (deleted while its agent was connected).

    ``previous_checks``: the checks of the host's last stored heartbeat, when the caller knows them (the
    channel that stored it does); they are read from the host otherwise. With them, a heartbeat that
    changes no status and no session is one UPDATE … RETURNING."""
    now = timezone.now()
    if previous_checks is None:
        stored = SessionHost.objects.filter(pk=host_id).values_list("health_checks", flat=True).first()
        previous_checks = (stored.get("checks") or []) if isinstance(stored, dict) else []
    health = {
        "checked_at": now.isoformat(),
        "checks": heartbeat["checks"],
        "sessions": "unsupported" if heartbeat["sessions"] == "unsupported" else "reported",
    }
    status = SessionHost.objects.store_heartbeat(
        host_id, at=now, agent_version=heartbeat["agent_version"], health_checks=health
    )
    if status is None:
        return None
    if status != SessionHostStatus.UPGRADING:
        wanted, reason = evaluate_checks(heartbeat["checks"])
        # A new record only when the status changes or other checks fail: details such as the
        # free disk space change on every heartbeat and would flood the history.
        if wanted != status or _failing(previous_checks) != _failing(heartbeat["checks"]):
            host = SessionHost(pk=host_id)
            if host.set_status(wanted, reason):
                log.info("host %s is now %s: %s", host_id, wanted, reason)
            status = wanted
    if sync_sessions and heartbeat["sessions"] != "unsupported":
        sync_user_sessions(host_id, heartbeat["sessions"])
    return status


def sync_user_sessions(host_id: int, reports: list[SessionReport]) -> None:
    """Make the host's UserSession rows match the agent's report: create, update, delete, for this
    host only."""
    reported = {report["session_id"]: report for report in reports}
    usernames = {report["username"].lower() for report in reports}
    user_ids = dict(
        get_user_model().objects.annotate(name_lower=Lower("username"))
        .filter(name_lower__in=usernames).values_list("name_lower", "id")
    ) if usernames else {}
    with transaction.atomic():
        existing = {row.session_id: row for row in UserSession.objects.filter(session_host_id=host_id)}
        gone = [session_id for session_id in existing if session_id not in reported]
        if gone:
            UserSession.objects.filter(session_host_id=host_id, session_id__in=gone).delete()
        new_rows = []
        for session_id, report in reported.items():
            user_id = user_ids.get(report["username"].lower())
            row = existing.get(session_id)
            if row is None:
                started = report.get("started_at")
                new_rows.append(UserSession(
                    session_host_id=host_id, session_id=session_id, username=report["username"], user_id=user_id,
                    state=report["state"],
                    started_at=datetime.fromtimestamp(started, dt_timezone.utc) if started else timezone.now(),
                ))
            elif (row.username, row.state, row.user_id) != (report["username"], report["state"], user_id):
                row.username, row.state, row.user_id = report["username"], report["state"], user_id
                row.save(update_fields=["username", "state", "user", "updated_at"])
        if new_rows:
            # A replaced channel may still be finishing its last report: never fail on a duplicate.
            UserSession.objects.bulk_create(new_rows, ignore_conflicts=True)


def channel_opened(host_id: int, channel_name: str, *, certificate_id: int | None, remote_address: str | None,
                   agent_version: str) -> None:
    """Record that ``channel_name`` now holds the host's channel (replacing any older holder)."""
    with transaction.atomic():
        # Serialise with channel_closed() of an older channel of the same host.
        SessionHost.objects.select_for_update().filter(pk=host_id).values_list("pk").first()
        HostChannel.objects.update_or_create(
            session_host_id=host_id,
            defaults={"channel_name": channel_name, "certificate_id": certificate_id,
                      "remote_address": remote_address, "agent_version": agent_version,
                      "connected_at": timezone.now()},
        )


def channel_closed(host_id: int, channel_name: str, reason: str) -> bool:
    """Forget the channel if ``channel_name`` still holds it and mark an online host Unavailable.
    Returns False when a newer channel had replaced it (that one owns the status now)."""
    with transaction.atomic():
        host = SessionHost.objects.select_for_update().filter(pk=host_id).first()
        deleted, _ = HostChannel.objects.filter(session_host_id=host_id, channel_name=channel_name).delete()
        if not deleted or host is None:
            return False
        if host.status in ONLINE_STATUSES:
            host.set_status(SessionHostStatus.UNAVAILABLE, reason)
            log.info("host %s is now unavailable: %s", host_id, reason)
    return True


def record_shutdown(host_id: int, reason: str) -> None:
    """The agent said it is stopping on purpose."""
    host = SessionHost.objects.filter(pk=host_id).first()
    if host is not None and host.set_status(SessionHostStatus.SHUTDOWN, f"The agent shut down: {reason}"[:300]):
        log.info("host %s is now shut down: %s", host_id, reason)


def mark_missed_heartbeats(now: datetime | None = None) -> int:
    """Mark Unavailable every online host whose last heartbeat is older than the threshold; returns
    how many were marked."""
    now = now or timezone.now()
    threshold = now - missed_heartbeat_threshold()
    stale = Q(last_heartbeat_at__lt=threshold) | Q(last_heartbeat_at__isnull=True, status_changed_at__lt=threshold)
    reason = (f"No heartbeat for {settings.MISSED_HEARTBEATS} intervals of "
              f"{settings.HEARTBEAT_INTERVAL} s.")
    marked = 0
    for host_id in SessionHost.objects.filter(stale, status__in=ONLINE_STATUSES).values_list("pk", flat=True):
        with transaction.atomic():
            # Re-check under the row lock: a heartbeat may have arrived since the query.
            host = SessionHost.objects.select_for_update().filter(stale, pk=host_id, status__in=ONLINE_STATUSES).first()
            if host is not None and host.set_status(SessionHostStatus.UNAVAILABLE, reason):
                marked += 1
                log.info("host %s is now unavailable: %s", host_id, reason)
    return marked
