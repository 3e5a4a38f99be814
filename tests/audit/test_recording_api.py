"""What an administrator does through the REST API lands in the audit log: who (user and token), what
(action, object, fields before and after, secrets masked), when and from where, in the change's own
transaction."""
from __future__ import annotations

import json

import pytest
from django.utils import timezone

from broker.models import HostPool, SessionHost, UserSession
from core.audit import MASK
from feed.models import Assignment
from tests.audit.conftest import ADDRESS, USER_AGENT, events, only_event

pytestmark = pytest.mark.django_db

POOL = {"name": "pool-x", "friendly_name": "Pool X", "max_session_limit": 4}


def test_a_create_records_who_with_which_token_what_when_and_from_where(token_api, admin_user):
    client, token = token_api
    before = timezone.now()

    response = client.post("/api/v1/hostpools/", POOL, format="json")

    assert response.status_code == 201
    event = only_event(action="create", object_type="broker.hostpool")
    assert (event.actor_id, event.actor_name) == (admin_user.pk, "admin")
    assert (event.credential, event.token_id) == ("api_token", token.pk)
    assert event.token_name == f"{token.prefix}… deploy script"
    assert (event.surface, event.client_address, event.user_agent) == ("api", ADDRESS, USER_AGENT)
    assert event.request_id == response["X-Request-ID"]
    assert before <= event.at <= timezone.now()
    assert (event.object_id, event.object_repr) == (str(response.data["id"]), str(HostPool.objects.get()))
    assert event.changes["name"] == [None, "pool-x"]
    assert event.changes["max_session_limit"] == [None, 4]


def test_a_change_records_only_the_fields_that_changed_before_and_after(token_api, pooled_pool):
    client, _ = token_api

    assert client.patch(f"/api/v1/hostpools/{pooled_pool.pk}/", {"max_session_limit": 9}, format="json").status_code == 200

    event = only_event(action="change", object_id=str(pooled_pool.pk))
    assert event.changes == {"max_session_limit": [2, 9]}  # not updated_at: the event's time says when


def test_a_change_that_changes_nothing_records_nothing(token_api, pooled_pool):
    client, _ = token_api
    client.patch(f"/api/v1/hostpools/{pooled_pool.pk}/", {"max_session_limit": 2}, format="json")

    assert events(action="change") == []


def test_a_delete_records_what_the_object_was(token_api, workspace):
    client, _ = token_api

    assert client.delete(f"/api/v1/workspaces/{workspace.pk}/").status_code == 204

    event = only_event(action="delete", object_type="feed.workspace")
    assert event.object_repr == str(workspace) and event.object_id == str(workspace.pk)
    assert event.changes["name"] == ["contoso", None]


def test_a_refused_delete_is_not_recorded_as_done(token_api, desktop_group):
    client, _ = token_api

    assert client.delete(f"/api/v1/hostpools/{desktop_group.host_pool_id}/").status_code == 409

    assert events(action="delete") == []


def test_a_refused_create_is_not_recorded(token_api):
    client, _ = token_api
    assert client.post("/api/v1/hostpools/", {**POOL, "name": "bad name!"}, format="json").status_code == 400
    assert events(action="create") == []


def test_assigning_and_unassigning_are_their_own_actions(token_api, remoteapp_group, member):
    client, _ = token_api

    created = client.post("/api/v1/assignments/", {"application_group": remoteapp_group.pk, "user": member.pk},
                          format="json")
    assert created.status_code == 201
    assert client.delete(f"/api/v1/assignments/{created.data['id']}/").status_code == 204

    assign, unassign = only_event(action="assign"), only_event(action="unassign")
    assert assign.object_id == unassign.object_id == str(created.data["id"])
    assert assign.changes["user"] == [None, member.pk]
    assert not Assignment.objects.filter(pk=created.data["id"]).exists()


def test_drain_and_undrain_are_recorded_with_the_switch(token_api, pooled_pool):
    client, _ = token_api
    host = SessionHost.objects.create(host_pool=pooled_pool, name="sh-drain")

    client.post(f"/api/v1/sessionhosts/{host.pk}/drain/", {"allow_new_sessions": False}, format="json")
    client.post(f"/api/v1/sessionhosts/{host.pk}/drain/", {"allow_new_sessions": True}, format="json")

    drain, undrain = only_event(action="drain"), only_event(action="undrain")
    assert drain.changes == {"allow_new_sessions": [True, False]}
    assert undrain.changes == {"allow_new_sessions": [False, True]}
    assert drain.actor_name == "admin" and drain.surface == "api" and drain.object_id == str(host.pk)


def test_marking_a_host_for_replacement_and_cancelling_are_recorded(token_api, pooled_pool):
    client, _ = token_api
    host = SessionHost.objects.create(host_pool=pooled_pool, name="sh-replace")
    url = f"/api/v1/sessionhosts/{host.pk}/replacement/"

    client.post(url, {"marked_for_replacement": True}, format="json")
    client.post(url, {"marked_for_replacement": True}, format="json")  # already marked: nothing new
    client.post(url, {"marked_for_replacement": False}, format="json")

    assert only_event(action="replacement_mark").object_id == str(host.pk)
    assert only_event(action="replacement_cancel").object_id == str(host.pk)


def test_a_registration_token_is_recorded_but_never_its_text(token_api, pooled_pool):
    client, _ = token_api

    issued = client.post(f"/api/v1/hostpools/{pooled_pool.pk}/registration-token/", {}, format="json")
    client.delete(f"/api/v1/hostpools/{pooled_pool.pk}/registration-token/")

    event = only_event(action="registration_token_issue")
    assert event.object_id == str(pooled_pool.pk) and event.actor_name == "admin"
    assert only_event(action="registration_token_revoke").object_id == str(pooled_pool.pk)
    assert issued.data["token"] not in _everything_recorded()


def test_an_api_token_issued_and_revoked_is_recorded_without_its_text(token_api):
    client, _ = token_api

    created = client.post("/api/v1/tokens/", {"description": "ci", "lifetime_hours": 2}, format="json")
    assert created.status_code == 201
    assert client.delete(f"/api/v1/tokens/{created.data['id']}/").status_code == 204
    client.delete(f"/api/v1/tokens/{created.data['id']}/")  # revoking twice changes nothing: one event

    issue = only_event(action="token_issue")
    assert issue.object_id == str(created.data["id"]) and issue.changes.get("key_hash") is None
    assert only_event(action="token_revoke").object_id == str(created.data["id"])
    assert created.data["token"] not in _everything_recorded()


def test_host_commands_are_recorded_with_the_agents_answer(token_api, pooled_pool, member):
    client, _ = token_api
    host = SessionHost.objects.create(host_pool=pooled_pool, name="sh-cmd")
    session = UserSession.objects.create(session_host=host, session_id=4, user=member, username="member")

    assert client.post(f"/api/v1/hostagent/user-sessions/{session.pk}/logoff/").status_code == 503
    client.post(f"/api/v1/hostagent/user-sessions/{session.pk}/message/",
                {"title": "Maintenance", "text": "secret plans at 18:00"}, format="json")

    logoff = only_event(action="logoff")
    assert (logoff.result, logoff.object_type, logoff.object_id) == ("offline", "broker.usersession", str(session.pk))
    assert logoff.actor_name == "admin" and logoff.credential == "api_token" and logoff.client_address == ADDRESS
    message = only_event(action="message")
    assert "Maintenance" in message.detail and "secret plans" not in _everything_recorded()


def test_a_password_is_never_recorded(admin_user):
    from core import audit

    event = audit.record_saved(admin_user, None)

    assert event.changes["password"] == [None, MASK]
    assert admin_user.password not in _everything_recorded()


def _everything_recorded() -> str:
    return json.dumps([{field.name: str(getattr(e, field.name)) for field in e._meta.fields} for e in events()])


def test_every_custom_api_action_is_audited_here():
    """A new @action on any viewset must be recorded and tested: this list is the reminder."""
    from wvdportal.urls import router

    audited = {("HostPoolViewSet", "registration_token"), ("SessionHostViewSet", "drain"),
               ("SessionHostViewSet", "replacement")}
    found = {(viewset.__name__, extra.__name__) for _, viewset, _ in router.registry
             for extra in viewset.get_extra_actions()}
    assert found == audited, "record the new action in the audit log (core/audit.py) and test it here"
