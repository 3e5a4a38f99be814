"""Missed heartbeats, and the service functions that reach a host for the admin."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from broker.models import SessionHost, SessionHostStatusChange
from hostagent import health, tasks
from hostagent.commands import log_off_user_session, send_message_to_user_session
from wire.hostchannel import ProtocolError

pytestmark = pytest.mark.usefixtures("eager_tasks")


def host_with_heartbeat(pool, name: str, status: str, seconds_ago: float | None) -> SessionHost:
    now = timezone.now()
    return SessionHost.objects.create(
        host_pool=pool, name=name, status=status, status_changed_at=now - timedelta(hours=1),
        last_heartbeat_at=None if seconds_ago is None else now - timedelta(seconds=seconds_ago),
    )


def test_hosts_that_missed_their_heartbeats_become_unavailable(pooled_pool, settings):
    settings.HEARTBEAT_INTERVAL, settings.MISSED_HEARTBEATS = 10, 3
    silent = host_with_heartbeat(pooled_pool, "silent", "available", 31)
    struggling = host_with_heartbeat(pooled_pool, "struggling", "needs_assistance", 120)
    never = host_with_heartbeat(pooled_pool, "never-heard", "available", None)
    fresh = host_with_heartbeat(pooled_pool, "fresh", "available", 29)
    shut_down = host_with_heartbeat(pooled_pool, "shut-down", "shutdown", 3600)
    upgrading = host_with_heartbeat(pooled_pool, "upgrading", "upgrading", 3600)

    assert tasks.mark_missed_heartbeats.delay().get() == 3

    statuses = dict(SessionHost.objects.values_list("name", "status"))
    assert statuses == {"silent": "unavailable", "struggling": "unavailable", "never-heard": "unavailable",
                        "fresh": "available", "shut-down": "shutdown", "upgrading": "upgrading"}
    change = SessionHostStatusChange.objects.get(session_host=silent)
    assert (change.old_status, change.new_status) == ("available", "unavailable")
    assert change.reason == "No heartbeat for 3 intervals of 10 s."
    assert SessionHostStatusChange.objects.filter(session_host__in=[fresh, shut_down, upgrading]).count() == 0
    assert SessionHostStatusChange.objects.filter(session_host__in=[struggling, never]).count() == 2


def test_running_the_task_again_records_nothing_new(pooled_pool, settings):
    settings.HEARTBEAT_INTERVAL, settings.MISSED_HEARTBEATS = 10, 3
    host_with_heartbeat(pooled_pool, "silent", "available", 100)
    assert tasks.mark_missed_heartbeats.delay().get() == 1
    assert tasks.mark_missed_heartbeats.delay().get() == 0
    assert SessionHostStatusChange.objects.count() == 1


def test_the_task_is_on_the_beat_schedule_at_the_heartbeat_interval(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["hostagent-mark-missed-heartbeats"]
    assert entry["task"] == "hostagent.tasks.mark_missed_heartbeats"
    assert entry["schedule"] == timedelta(seconds=settings.HEARTBEAT_INTERVAL)
    # Merged with, not instead of, the other apps' entries.
    assert "renew-expiring-certificates" in settings.CELERY_BEAT_SCHEDULE


def test_checks_decide_the_status():
    ok = {"name": "rdp_listener", "ok": True, "fatal": True, "detail": ""}
    low_disk = {"name": "disk_space", "ok": False, "fatal": False, "detail": "2% free"}
    no_rdp = {"name": "rdp_listener", "ok": False, "fatal": True, "detail": "refused"}
    assert health.evaluate_checks([ok])[0] == "available"
    assert health.evaluate_checks([ok, low_disk]) == ("needs_assistance", "disk_space: 2% free")
    assert health.evaluate_checks([no_rdp, low_disk]) == ("unavailable", "rdp_listener: refused")


def heartbeat_with(*checks: dict) -> dict:
    return {"type": "heartbeat", "seq": 1, "agent_version": "2.0.0", "checks": list(checks), "sessions": []}


RDP_OK = {"name": "rdp_listener", "ok": True, "fatal": True, "detail": ""}
DISK_LOW = {"name": "disk_space", "ok": False, "fatal": False, "detail": "2% free"}


def test_a_steady_heartbeat_is_one_statement_when_the_channel_remembers_the_last_checks(
        pooled_pool, django_assert_num_queries):
    host = host_with_heartbeat(pooled_pool, "steady", "available", 30)
    with django_assert_num_queries(1):
        status = health.record_heartbeat(host.pk, heartbeat_with(RDP_OK), sync_sessions=False,
                                         previous_checks=[RDP_OK])
    assert status == "available"
    host.refresh_from_db()
    assert host.agent_version == "2.0.0" and host.health_checks["checks"] == [RDP_OK]
    assert timezone.now() - host.last_heartbeat_at < timedelta(seconds=5)
    assert host.updated_at == host.last_heartbeat_at
    # Without them the last checks are read from the host first: one more query, same outcome.
    with django_assert_num_queries(2):
        assert health.record_heartbeat(host.pk, heartbeat_with(RDP_OK), sync_sessions=False) == "available"
    assert not SessionHostStatusChange.objects.filter(session_host=host).exists()


def test_a_heartbeat_records_a_change_of_failing_checks_whether_or_not_the_caller_knew_the_last_ones(
        pooled_pool):
    host = host_with_heartbeat(pooled_pool, "wobbly", "needs_assistance", 30)
    other_disk = {**DISK_LOW, "name": "scratch_disk"}
    health.record_heartbeat(host.pk, heartbeat_with(RDP_OK, DISK_LOW), sync_sessions=False)  # read from the host
    health.record_heartbeat(host.pk, heartbeat_with(RDP_OK, other_disk), sync_sessions=False,
                            previous_checks=[RDP_OK, DISK_LOW])
    # The same failing check as the stored heartbeat's (read from the host): no new record.
    health.record_heartbeat(host.pk, heartbeat_with(RDP_OK, {**other_disk, "detail": "1% free"}),
                            sync_sessions=False)
    reasons = list(SessionHostStatusChange.objects.filter(session_host=host).order_by("at", "id")
                   .values_list("new_status", "reason"))
    assert reasons == [("needs_assistance", "disk_space: 2% free"), ("needs_assistance", "scratch_disk: 2% free")]


def test_a_heartbeat_leaves_an_upgrading_host_alone_and_tells_of_a_deleted_one(pooled_pool):
    host = host_with_heartbeat(pooled_pool, "upgrading", "upgrading", 30)
    assert health.record_heartbeat(host.pk, heartbeat_with(DISK_LOW), previous_checks=[]) == "upgrading"
    host.refresh_from_db()
    assert host.status == "upgrading" and host.health_checks["checks"] == [DISK_LOW]
    gone = host.pk
    host.delete()
    assert health.record_heartbeat(gone, heartbeat_with(RDP_OK), previous_checks=[RDP_OK]) is None
    assert health.record_heartbeat(gone, heartbeat_with(RDP_OK)) is None


def test_admin_actions_report_an_offline_host(pooled_pool):
    host = SessionHost.objects.create(host_pool=pooled_pool, name="host-a")
    session = host.user_sessions.create(session_id=4, username="member")
    assert log_off_user_session(session, timeout=5).status == "offline"
    assert host.user_sessions.filter(pk=session.pk).exists()  # nothing happened, so nothing is removed


def test_admin_message_text_is_checked_before_sending(pooled_pool):
    host = SessionHost.objects.create(host_pool=pooled_pool, name="host-a")
    session = host.user_sessions.create(session_id=4, username="member")
    with pytest.raises(ProtocolError, match="text must be 1-2000"):
        send_message_to_user_session(session, "Title", "x" * 2001)
