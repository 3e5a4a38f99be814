"""The API actions that reach a host: log off, disconnect, message a user session; renew a certificate."""
from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.contrib.auth.models import Permission

from broker.models import SessionHost, UserSession
from tests.hostagent.conftest import AgentPeer
from wire import hostchannel


@pytest.fixture
def user_session(pooled_pool) -> UserSession:
    host = SessionHost.objects.create(host_pool=pooled_pool, name="host-a")
    return UserSession.objects.create(session_host=host, session_id=4242, username="member")


def url(user_session: UserSession, action: str) -> str:
    return f"/api/v1/hostagent/user-sessions/{user_session.pk}/{action}/"


@pytest.mark.django_db
def test_anonymous_callers_are_refused(anonymous_api, user_session):
    assert anonymous_api.post(url(user_session, "logoff")).status_code == 401


@pytest.mark.django_db
def test_users_without_a_role_are_refused_whatever_model_permissions_they_hold(member, member_api, user_session):
    member.user_permissions.add(Permission.objects.get(codename="change_usersession"))
    assert member_api.post(url(user_session, "logoff")).status_code == 403


@pytest.mark.django_db
def test_a_user_session_operator_of_the_pool_is_enough(member, member_api, user_session, give_role):
    give_role(member, "User Session Operator", user_session.session_host.host_pool)
    response = member_api.post(url(user_session, "logoff"))
    assert response.status_code == 503 and response.json()["status"] == "offline"


@pytest.mark.django_db
def test_an_action_on_a_host_without_a_channel_answers_503(admin_api, user_session):
    response = admin_api.post(url(user_session, "disconnect"))
    assert response.status_code == 503
    assert response.json() == {"status": "offline", "message": "The host's agent is not connected.", "data": {}}
    assert UserSession.objects.get(pk=user_session.pk).state == "active"


@pytest.mark.django_db
def test_a_message_needs_its_text(admin_api, user_session):
    response = admin_api.post(url(user_session, "message"), {"title": "Hi"}, format="json")
    assert response.status_code == 400 and "text" in response.json()


@pytest.mark.django_db
def test_an_unknown_session_is_404(admin_api, db):
    assert admin_api.post("/api/v1/hostagent/user-sessions/999/logoff/").status_code == 404


@pytest.mark.django_db(transaction=True)
async def test_log_off_reaches_the_agent_and_removes_the_session(admin_api, host_a):
    session = await database_sync_to_async(UserSession.objects.create)(
        session_host=host_a.host, session_id=4242, username="member")
    agent = AgentPeer(host_a)
    await agent.connect()
    response = asyncio.ensure_future(sync_to_async(admin_api.post, thread_sensitive=False)(url(session, "logoff")))
    command = await agent.receive()
    assert (command["command"], command["args"]) == ("logoff", {"session_id": 4242})
    await agent.send(hostchannel.result(command["id"], "ok", "Logged off member (session 4242)."))
    answer = await response
    assert answer.status_code == 200 and answer.json()["message"] == "Logged off member (session 4242)."
    assert not await database_sync_to_async(UserSession.objects.filter(pk=session.pk).exists)()
    await agent.close()


@pytest.mark.django_db(transaction=True)
async def test_an_unsupported_disconnect_answers_409_and_changes_nothing(admin_api, host_a):
    session = await database_sync_to_async(UserSession.objects.create)(
        session_host=host_a.host, session_id=4242, username="member")
    agent = AgentPeer(host_a)
    await agent.connect()
    response = asyncio.ensure_future(
        sync_to_async(admin_api.post, thread_sensitive=False)(url(session, "disconnect")))
    command = await agent.receive()
    await agent.send(hostchannel.result(command["id"], "unsupported", "Not on Linux."))
    answer = await response
    assert answer.status_code == 409 and answer.json()["status"] == "unsupported"
    assert (await database_sync_to_async(UserSession.objects.get)(pk=session.pk)).state == "active"
    await agent.close()
