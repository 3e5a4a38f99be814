"""The portal's fixtures: signed-in browsers for the fixed cast, and an estate with hosts in every state,
sessions and connections (recent ones, failed ones)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.apps import apps
from django.contrib.auth.models import Group
from django.db import connections
from django.test import Client
from django.utils import timezone

from broker.models import Connection, HostPool, SessionHost, UserSession
from feed.models import ApplicationGroup, Assignment, RemoteApp
from tests.hostagent.conftest import host_a, our_ca, root_files  # noqa: F401  (a real agent for the commands)


@pytest.fixture(autouse=True, scope="session")
def portal_is_installed() -> None:
    if not apps.is_installed("portal"):
        pytest.fail('The portal app is not installed: add "portal" to INSTALLED_APPS in '
                    "wvdportal/settings.py (its ready() connects the live-update signals; its static files are "
                    "found through it).", pytrace=False)


def posting_in_a_thread(client: Client):
    """``client.post`` for async tests: it runs in a worker thread (the view waits for the agent while the
    test's loop plays the agent), and that thread's database connection is closed afterwards so no test
    database is left in use."""

    def post(*args, **kwargs):
        try:
            return client.post(*args, **kwargs)
        finally:
            connections.close_all()

    return sync_to_async(post, thread_sensitive=False)


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def staff(admin_user) -> Client:
    return browser(admin_user)


@pytest.fixture
def plain(member) -> Client:
    return browser(member)


def fresh_checks(*, rdp: bool = True, disk: bool = True) -> dict:
    return {"checked_at": timezone.now().isoformat(), "sessions": "reported", "checks": [
        {"name": "rdp_listener", "ok": rdp, "fatal": True, "detail": "" if rdp else "127.0.0.1:3389 refused"},
        {"name": "disk_space", "ok": disk, "fatal": False, "detail": "41% free" if disk else "4% free"},
    ]}


@pytest.fixture
def estate(pooled_pool, personal_pool, desktop_group, remoteapp_group, member, outsider):
    """pool-a: two Available hosts (one drained), one Unavailable, one Needs assistance; sessions on the
    first; connections in the last day, some failed; a RemoteApp and a group assignment."""
    now = timezone.now()
    hosts = {
        "host-1": SessionHost.objects.create(host_pool=pooled_pool, name="host-1", status="available",
                                             last_heartbeat_at=now, agent_version="1.0", health_checks=fresh_checks()),
        "host-2": SessionHost.objects.create(host_pool=pooled_pool, name="host-2", status="available",
                                             allow_new_sessions=False, last_heartbeat_at=now,
                                             health_checks=fresh_checks()),
        "host-3": SessionHost.objects.create(host_pool=pooled_pool, name="host-3", status="unavailable",
                                             status_reason="rdp_listener: 127.0.0.1:3389 refused",
                                             last_heartbeat_at=now - timedelta(minutes=10),
                                             health_checks=fresh_checks(rdp=False)),
        "host-4": SessionHost.objects.create(host_pool=pooled_pool, name="host-4", status="needs_assistance",
                                             status_reason="disk_space: 4% free", last_heartbeat_at=now,
                                             health_checks=fresh_checks(disk=False)),
    }
    UserSession.objects.create(session_host=hosts["host-1"], session_id=2, user=member, username="member")
    UserSession.objects.create(session_host=hosts["host-1"], session_id=3, username="guest", state="disconnected")
    RemoteApp.objects.create(application_group=remoteapp_group, name="notepad", friendly_name="Notepad",
                             file_path=r"C:\Windows\notepad.exe")
    Assignment.objects.create(application_group=remoteapp_group, group=Group.objects.create(name="Finance"))
    ok = Connection.objects.create(user=member, username="member", application_group=desktop_group,
                                   resource_name="dag-a/desktop", host_pool=pooled_pool, session_host=hosts["host-1"],
                                   state="ended", end_reason="client_closed", created_at=now - timedelta(hours=2),
                                   ticket_accepted_at=now - timedelta(hours=2) + timedelta(milliseconds=40),
                                   host_selected_at=now - timedelta(hours=2) + timedelta(milliseconds=90),
                                   relay_started_at=now - timedelta(hours=2) + timedelta(seconds=2),
                                   ended_at=now - timedelta(hours=1), bytes_client_to_host=123_456,
                                   bytes_host_to_client=9_876_543)
    failed = [
        Connection.objects.create(user=member, username="member", resource_name="dag-a/desktop",
                                  host_pool=pooled_pool, state="failed", end_reason="error",
                                  error_code="ConnectionFailedNoHealthyRdshAvailable",
                                  error_message="No session host is available.", created_at=now - timedelta(hours=h),
                                  ended_at=now - timedelta(hours=h))
        for h in (1, 3)
    ] + [
        Connection.objects.create(user=outsider, username="outsider", state="failed", end_reason="error",
                                  error_code="ConnectionFailedUserNotAuthorized", created_at=now - timedelta(hours=5)),
    ]
    old = Connection.objects.create(username="member", state="failed", error_code="InternalError",
                                    created_at=now - timedelta(days=3))
    return {"pool": pooled_pool, "hosts": hosts, "ok": ok, "failed": failed, "old": old,
            "personal": personal_pool, "desktop_group": desktop_group, "remoteapp_group": remoteapp_group}


def more_pools(count: int, tag: str = "extra") -> list[tuple[SessionHost, ApplicationGroup]]:
    """Pools with a host, a session and a desktop group each, to show a list's query count does not grow
    with its rows."""
    made = []
    for i in range(count):
        pool = HostPool.objects.create(name=f"{tag}-{i}")
        host = SessionHost.objects.create(host_pool=pool, name=f"{tag}-host-{i}", status="available")
        UserSession.objects.create(session_host=host, session_id=1, username=f"{tag}-user{i}")
        made.append((host, ApplicationGroup.objects.create(name=f"{tag}-dag-{i}", group_type="desktop",
                                                           host_pool=pool)))
    return made
