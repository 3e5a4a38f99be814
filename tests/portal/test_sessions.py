"""User sessions: search by user or host; log off, disconnect and message through the host's agent, with
the agent's answer shown to the admin."""
from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.urls import reverse
from lxml import html

from broker.models import UserSession
from core.models import AuditEvent
from tests.hostagent.conftest import AgentPeer
from tests.portal.conftest import browser, posting_in_a_thread
from wire import hostchannel


def rows(response) -> list[str]:
    return [r.text_content() for r in html.fromstring(response.content).xpath("//tr[@data-session-id]")]


def shown_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_sessions_are_listed_and_searched_by_user_or_host(staff, estate):
    every = rows(staff.get(reverse("portal:sessions")))
    by_user = rows(staff.get(reverse("portal:sessions"), {"q": "GUEST"}))
    by_host = rows(staff.get(reverse("portal:sessions"), {"q": "host-1"}))
    nothing = staff.get(reverse("portal:sessions"), {"q": "nobody"})

    assert len(every) == 2 and len(by_host) == 2
    assert len(by_user) == 1 and "guest" in by_user[0] and "Disconnected" in by_user[0]
    assert "No sessions match “nobody”." in nothing.content.decode()


def test_a_disconnected_session_offers_no_disconnect(staff, estate):
    guest = html.fromstring(staff.get(reverse("portal:sessions"), {"q": "guest"}).content)

    assert [b.text for b in guest.xpath("//tr[@data-session-id]//button")] == ["Log off"]


def test_an_action_on_a_host_whose_agent_is_offline_says_so_and_changes_nothing(staff, estate):
    session = UserSession.objects.get(username="member")

    response = staff.post(reverse("portal:session-logoff", args=[session.pk]), follow=True)

    assert "the host's agent is not connected, so nothing was sent" in " ".join(shown_messages(response))
    assert UserSession.objects.filter(pk=session.pk).exists()


def test_a_session_that_ended_meanwhile_is_reported_not_an_error(staff, estate):
    session = UserSession.objects.get(username="member")
    pk = session.pk
    session.delete()

    for name in ("session-logoff", "session-disconnect", "session-message"):
        response = staff.post(reverse(f"portal:{name}", args=[pk]), follow=True)
        assert response.status_code == 200, name
        assert "That session has already ended" in " ".join(shown_messages(response)), name


def test_a_message_that_is_too_long_is_refused_and_kept(staff, estate):
    session = UserSession.objects.get(username="member")

    response = staff.post(reverse("portal:session-message", args=[session.pk]),
                          {"title": "T" * 101, "text": "Please save your work."})

    assert response.status_code == 400
    assert "at most 100 characters" in response.content.decode()
    kept = html.fromstring(response.content).get_element_by_id("id_text").text_content().strip()
    assert kept == "Please save your work."


def test_the_sessions_table_comes_as_a_json_fragment_with_the_search_applied(staff, estate):
    fragments = staff.get(reverse("portal:sessions"), {"q": "guest", "fragments": "1"}).json()["fragments"]

    assert "guest" in fragments["sessions"] and ">member<" not in fragments["sessions"]


@pytest.mark.django_db(transaction=True)
async def test_log_off_reaches_the_agent_and_the_admin_sees_its_answer(admin_user, host_a):
    session = await database_sync_to_async(UserSession.objects.create)(
        session_host=host_a.host, session_id=7, username="member")
    staff = await database_sync_to_async(browser)(admin_user)
    agent = AgentPeer(host_a)
    await agent.connect()

    post = posting_in_a_thread(staff)
    answer = asyncio.ensure_future(post(reverse("portal:session-logoff", args=[session.pk]), follow=True))
    command = await agent.receive()
    assert (command["command"], command["args"]) == ("logoff", {"session_id": 7})
    await agent.send(hostchannel.result(command["id"], "ok", "Logged off member (session 7)."))
    response = await answer

    assert "Log off: done for member's session 7 on host-a. Logged off member (session 7)." in \
        shown_messages(response)
    assert not await database_sync_to_async(UserSession.objects.filter(pk=session.pk).exists)()
    # The audit log has it, with the agent's answer and who asked (core/audit.py: the request in context).
    recorded = await database_sync_to_async(lambda: list(
        AuditEvent.objects.filter(action="logoff").values_list("result", "actor_name", "surface", "object_id")))()
    assert recorded == [("ok", "admin", "portal", str(session.pk))]
    await agent.close()


@pytest.mark.django_db(transaction=True)
async def test_a_message_reaches_the_session_and_a_refusal_is_reported(admin_user, host_a):
    session = await database_sync_to_async(UserSession.objects.create)(
        session_host=host_a.host, session_id=7, username="member")
    staff = await database_sync_to_async(browser)(admin_user)
    agent = AgentPeer(host_a)
    await agent.connect()
    post = posting_in_a_thread(staff)

    answer = asyncio.ensure_future(post(reverse("portal:session-message", args=[session.pk]),
                                        {"title": "Maintenance", "text": "Restart at 18:00."}, follow=True))
    command = await agent.receive()
    assert command["args"] == {"session_id": 7, "title": "Maintenance", "text": "Restart at 18:00."}
    await agent.send(hostchannel.result(command["id"], "ok", ""))
    assert "Message: done for member's session 7 on host-a." in shown_messages(await answer)

    answer = asyncio.ensure_future(post(reverse("portal:session-disconnect", args=[session.pk]), follow=True))
    command = await agent.receive()
    await agent.send(hostchannel.result(command["id"], "unsupported", "xrdp cannot disconnect sessions"))
    assert ("Disconnect for member's session 7 on host-a failed: the host's agent does not support this "
            "(xrdp cannot disconnect sessions).") in shown_messages(await answer)
    assert (await database_sync_to_async(UserSession.objects.get)(pk=session.pk)).state == "active"
    recorded = await database_sync_to_async(lambda: list(
        AuditEvent.objects.filter(action__in=["message", "disconnect"]).order_by("id").values_list("action", "result")))()
    assert recorded == [("message", "ok"), ("disconnect", "unsupported")]
    await agent.close()
