"""What an administrator does in the portal lands in the audit log, and the portal shows the log."""
from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from lxml import html

from broker.models import HostPool, SessionHost, UserSession
from core import audit
from core.choices import AuditAction
from feed.models import Assignment
from tests.audit.conftest import ADDRESS, USER_AGENT, events, only_event

pytestmark = pytest.mark.django_db

POOL = {"name": "pool-b", "friendly_name": "Pool B", "description": "", "pool_type": "pooled",
        "load_balancer": "breadth_first", "personal_assignment": "automatic", "max_session_limit": "5",
        "custom_rdp_properties": ""}


def test_creating_and_editing_a_pool_are_recorded_with_the_changes(admin_browser, admin_user):
    admin_browser.post(reverse("portal:pool-create"), POOL)
    pool = HostPool.objects.get(name="pool-b")
    admin_browser.post(reverse("portal:pool-edit", args=[pool.pk]), {**POOL, "max_session_limit": "7"})

    create, change = only_event(action="create"), only_event(action="change")
    assert (create.actor_name, create.surface, create.credential) == ("admin", "portal", "session")
    assert (create.client_address, create.user_agent) == (ADDRESS, USER_AGENT)
    assert create.object_id == change.object_id == str(pool.pk)
    assert change.changes["max_session_limit"] == [5, 7]


def test_a_refused_edit_is_not_recorded(admin_browser, pooled_pool):
    response = admin_browser.post(reverse("portal:pool-edit", args=[pooled_pool.pk]),
                                  {**POOL, "max_session_limit": "0"})

    assert response.status_code == 400
    assert events() == []


def test_assigning_and_removing_are_recorded(admin_browser, remoteapp_group, member):
    admin_browser.post(reverse("portal:assignment-create", args=[remoteapp_group.pk]),
                       {"kind": "user", "principal": "member"})
    assignment = Assignment.objects.get(application_group=remoteapp_group)
    admin_browser.post(reverse("portal:assignment-delete", args=[assignment.pk]))

    assert [e.action for e in events()] == ["assign", "unassign"]
    assert {e.object_id for e in events()} == {str(assignment.pk)}


def test_drain_token_and_session_commands_are_recorded(admin_browser, pooled_pool, member):
    host = SessionHost.objects.create(host_pool=pooled_pool, name="sh-p")
    session = UserSession.objects.create(session_host=host, session_id=5, user=member, username="member")

    admin_browser.post(reverse("portal:host-drain", args=[host.pk]), {"allow": "0"})
    admin_browser.post(reverse("portal:pool-token", args=[pooled_pool.pk]))
    admin_browser.post(reverse("portal:session-logoff", args=[session.pk]))
    admin_browser.post(reverse("portal:session-message", args=[session.pk]), {"title": "Hi", "text": "Bye"})

    assert [(e.action, e.result) for e in events()] == [
        ("drain", "ok"), ("registration_token_issue", "ok"), ("logoff", "offline"), ("message", "offline")]
    assert all(e.surface == "portal" and e.actor_name == "admin" for e in events())


def test_the_portal_lists_filters_and_links_the_export(admin_browser, pooled_pool):
    audit.record(AuditAction.DRAIN, pooled_pool, detail="first")
    audit.record(AuditAction.UNDRAIN, pooled_pool, detail="second")

    every = admin_browser.get(reverse("portal:audit"), {"object_type": "broker.hostpool"})
    drains = admin_browser.get(reverse("portal:audit"), {"action": "drain"})
    bad = admin_browser.get(reverse("portal:audit"), {"at_after": "not a time"})

    assert every.status_code == 200 and len(_rows(every)) == 2
    assert len(_rows(drains)) == 1 and "first" in _rows(drains)[0]
    export = html.fromstring(drains.content).xpath("//a[text()='Export CSV']/@href")[0]
    assert export == "/api/v1/audit/?format=csv&action=drain"
    assert bad.status_code == 400 and _rows(bad) == []


def test_the_portal_page_is_staff_only(member):
    plain = Client()
    plain.force_login(member)
    assert plain.get(reverse("portal:audit")).status_code == 403
    assert Client().get(reverse("portal:audit")).status_code == 302


def _rows(response) -> list[str]:
    return [row.text_content() for row in html.fromstring(response.content).xpath("//section//tbody/tr")]


@pytest.mark.django_db(transaction=True)
async def test_under_asgi_a_host_command_knows_who_asked(admin_user, pooled_pool, member):
    """Daphne runs the middleware chain asynchronously and the view in a worker thread: the request the
    middleware put in context is still the one the command records."""
    from channels.db import database_sync_to_async
    from django.test import AsyncClient

    host = await database_sync_to_async(SessionHost.objects.create)(host_pool=pooled_pool, name="sh-asgi")
    session = await database_sync_to_async(UserSession.objects.create)(
        session_host=host, session_id=6, user=member, username="member")
    client = AsyncClient()
    await client.aforce_login(admin_user)

    response = await client.post(reverse("portal:session-logoff", args=[session.pk]),
                                 headers={"User-Agent": USER_AGENT})

    event = await database_sync_to_async(only_event)(action="logoff")
    assert (event.actor_name, event.surface, event.result, event.user_agent) == ("admin", "portal", "offline",
                                                                                 USER_AGENT)
    assert event.request_id == response["X-Request-ID"]
