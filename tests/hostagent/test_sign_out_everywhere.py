"""Sign out everywhere: the administrator's action for an account that must stop now. The connection files
and API tokens the user holds stop working, their browser sign-ins end, and their sessions on session hosts
are logged off through the host channel (so a relay already running ends with its session).

A session already relaying when its user is merely deactivated goes on, as in Azure Virtual Desktop: new
connections are refused (tests/gateway/test_admission.py); this action is how an administrator ends it.
"""
from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.test import Client
from django.urls import reverse

from broker.models import GatewayInstance, SessionHost, UserSession
from core.models import ApiToken
from core.tickets import issue_connection_ticket
from gateway import records
from hostagent.commands import sign_out_everywhere
from tests.conftest import PASSWORD
from tests.hostagent.conftest import AgentPeer
from wire import hostchannel
from wire.errors import ErrorCode


def desktop_ticket(user, group) -> str:
    return issue_connection_ticket(user=user, application_group_id=group.pk, resource=f"{group.name}/desktop",
                                   host_pool_id=group.host_pool_id, host_pool_name=group.host_pool.name)


@pytest.mark.django_db
def test_the_admin_action_revokes_files_tokens_and_browser_sign_ins(admin_user, member, desktop_group):
    GatewayInstance.objects.create(name="gw-test", public_host="127.0.0.1", public_port=8443)
    ticket = desktop_ticket(member, desktop_group)
    token, key = ApiToken.issue(member, description="laptop")
    members_browser = Client()
    assert members_browser.login(username="member", password=PASSWORD)
    admin_browser = Client()
    admin_browser.force_login(admin_user)

    response = admin_browser.post(reverse("admin:auth_user_changelist"),
                                  {"action": "sign_out_everywhere", "_selected_action": [member.pk]}, follow=True)

    assert response.status_code == 200
    shown = [str(message) for message in response.context["messages"]]
    assert shown == ["member: connection files and 1 API token(s) revoked, 1 browser sign-in(s) ended, 0 host "
                     "session(s) logged off."], shown
    assert records.admit(ticket, "192.0.2.1", "gw-test").code == ErrorCode.ConnectionFailedTicketRevoked
    assert ApiToken.authenticate(key) is None
    assert members_browser.get("/").status_code == 302  # back to the sign-in page
    assert admin_browser.get(reverse("admin:index")).status_code == 200  # only the member's sign-ins ended


@pytest.mark.django_db
def test_a_user_without_the_change_permission_cannot_use_it(member, outsider):
    outsider.is_staff = True
    outsider.save()
    browser = Client()
    browser.force_login(outsider)
    response = browser.post(reverse("admin:auth_user_changelist"),
                            {"action": "sign_out_everywhere", "_selected_action": [member.pk]})
    assert response.status_code == 403


@pytest.mark.django_db(transaction=True)
async def test_the_users_host_sessions_are_logged_off_through_the_host_channel(member, host_a):
    session = await database_sync_to_async(UserSession.objects.create)(
        session_host=host_a.host, session_id=77, user=member, username="member")
    agent = AgentPeer(host_a)
    await agent.connect()
    report = asyncio.ensure_future(sync_to_async(sign_out_everywhere, thread_sensitive=False)(member, timeout=10))
    command = await agent.receive()
    assert (command["command"], command["args"]) == ("logoff", {"session_id": 77})
    await agent.send(hostchannel.result(command["id"], "ok", "Logged off member (session 77)."))

    done = await report

    assert done.sessions_logged_off == 1
    assert not await database_sync_to_async(UserSession.objects.filter(pk=session.pk).exists)()
    await agent.close()


@pytest.mark.django_db
def test_a_host_that_is_offline_is_reported_not_hidden(member, pooled_pool):

    host = SessionHost.objects.create(host_pool=pooled_pool, name="host-off")
    UserSession.objects.create(session_host=host, session_id=5, user=member, username="member")

    report = sign_out_everywhere(member, timeout=1)

    assert report.sessions_logged_off == 0
    assert [result.status for _, result in report.user_sessions] == ["offline"]
