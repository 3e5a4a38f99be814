"""What an administrator does in the Django admin lands in the audit log: adds, changes and deletes of any
model (through the audited admin site), and every admin action, with who, when and from where."""
from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.urls import reverse

from broker.models import SessionHost, UserSession
from core.audit import MASK
from core.models import ApiToken
from feed.models import Workspace
from tests.audit.conftest import ADDRESS, USER_AGENT, events, only_event
from tests.admin.forms import add_inline_rows, form_data
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def run_action(browser, model: str, action: str, objects, **extra):
    return browser.post(reverse(f"admin:{model}_changelist"),
                        {"action": action, "_selected_action": [obj.pk for obj in objects], **extra})


def test_an_add_records_who_what_when_and_from_where(admin_browser, admin_user):
    response = admin_browser.post(reverse("admin:feed_workspace_add"), {"name": "fabrikam", "friendly_name": "Fab"})

    assert response.status_code == 302
    event = only_event(action="create", object_type="feed.workspace")
    assert (event.actor_id, event.actor_name, event.credential) == (admin_user.pk, "admin", "session")
    assert (event.surface, event.client_address, event.user_agent) == ("admin", ADDRESS, USER_AGENT)
    assert event.object_id == str(Workspace.objects.get(name="fabrikam").pk)
    assert event.changes["friendly_name"] == [None, "Fab"]


def test_a_change_records_before_and_after(admin_browser, workspace):
    admin_browser.post(reverse("admin:feed_workspace_change", args=[workspace.pk]),
                       {"name": "contoso", "friendly_name": "Contoso Renamed", "description": ""})

    event = only_event(action="change", object_type="feed.workspace")
    assert event.changes["friendly_name"] == ["Contoso Workspace", "Contoso Renamed"]
    assert "name" not in event.changes


def test_a_delete_and_a_bulk_delete_are_recorded_per_object(admin_browser, workspace):
    other = Workspace.objects.create(name="other", friendly_name="Other")
    admin_browser.post(reverse("admin:feed_workspace_delete", args=[workspace.pk]), {"post": "yes"})
    run_action(admin_browser, "feed_workspace", "delete_selected", [other], post="yes")

    assert {e.object_id for e in events(action="delete")} == {str(workspace.pk), str(other.pk)}
    assert not Workspace.objects.exists()


def test_assignments_made_and_removed_on_a_groups_page_are_assign_and_unassign(admin_browser, remoteapp_group,
                                                                              member):
    url = reverse("admin:feed_applicationgroup_change", args=[remoteapp_group.pk])
    data = form_data(admin_browser.get(url))
    add_inline_rows(data, "assignments", [{"user": member.pk}])
    assert admin_browser.post(url, data).status_code == 302
    assignment = remoteapp_group.assignments.get()

    data = form_data(admin_browser.get(url))
    data["assignments-0-DELETE"] = "on"
    assert admin_browser.post(url, data).status_code == 302

    assert [(e.action, e.object_id) for e in events()] == [("assign", str(assignment.pk)),
                                                           ("unassign", str(assignment.pk))]
    assert events()[0].changes["user"] == [None, member.pk]


def test_a_users_groups_are_recorded_and_the_password_never(admin_browser, member):
    finance = Group.objects.create(name="Finance")
    url = reverse("admin:auth_user_change", args=[member.pk])
    form = admin_browser.get(url).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name != "password"}
    data.update(groups=[finance.pk], date_joined_0="2026-01-01", date_joined_1="00:00:00", last_login_0="",
                last_login_1="", user_permissions=[])
    data = {key: value for key, value in data.items() if key not in ("date_joined",)}

    assert admin_browser.post(url, data).status_code == 302
    assert only_event(action="change", object_type="auth.user").changes["groups"] == [[], ["Finance"]]

    admin_browser.post(reverse("admin:auth_user_password_change", args=[member.pk]),
                       {"password1": "A-new-passw0rd!", "password2": "A-new-passw0rd!", "usable_password": "true"})
    changed = events(action="change", object_type="auth.user")[-1]
    assert "password" in changed.detail.lower()
    member.refresh_from_db()
    assert member.password not in str(changed.changes) and PASSWORD not in str(changed.changes)


def test_an_api_token_added_in_the_admin_is_a_token_issue_without_its_text(admin_browser, member):
    response = admin_browser.post(reverse("admin:wvdportal_apitoken_add"),
                                  {"user": member.pk, "description": "kiosk", "lifetime_hours": "2"})

    assert response.status_code == 200
    token = ApiToken.objects.get(description="kiosk")
    event = only_event(action="token_issue")
    assert event.object_id == str(token.pk) and event.changes["key_hash"] == [None, MASK]
    assert token.prefix in event.object_repr


def test_revoking_tokens_is_one_token_revoke_each(admin_browser, member):
    token, _ = ApiToken.issue(member, description="laptop")

    run_action(admin_browser, "wvdportal_apitoken", "revoke_tokens", [token])

    assert [(e.action, e.object_id) for e in events()] == [("token_revoke", str(token.pk))]


def test_drain_actions_are_recorded(admin_browser, pooled_pool):
    host = SessionHost.objects.create(host_pool=pooled_pool, name="sh-a")

    run_action(admin_browser, "broker_sessionhost", "drain_on", [host])
    run_action(admin_browser, "broker_sessionhost", "drain_off", [host])

    assert [e.action for e in events()] == ["drain", "undrain"]
    assert events()[0].surface == "admin" and events()[0].actor_name == "admin"


def test_replacement_actions_are_recorded(admin_browser, pooled_pool):
    host = SessionHost.objects.create(host_pool=pooled_pool, name="sh-r")

    run_action(admin_browser, "broker_sessionhost", "mark_for_replacement", [host])
    run_action(admin_browser, "broker_sessionhost", "cancel_replacement", [host])

    assert [e.action for e in events()] == ["replacement_mark", "replacement_cancel"]


def test_registration_token_actions_are_recorded(admin_browser, pooled_pool):
    run_action(admin_browser, "broker_hostpool", "issue_registration_token", [pooled_pool])
    run_action(admin_browser, "broker_hostpool", "revoke_registration_token", [pooled_pool])

    assert [e.action for e in events()] == ["registration_token_issue", "registration_token_revoke"]


@pytest.fixture
def session(pooled_pool, member):
    host = SessionHost.objects.create(host_pool=pooled_pool, name="sh-actions")
    return UserSession.objects.create(session_host=host, session_id=3, user=member, username="member")


def test_session_actions_are_recorded_with_what_the_host_answered(admin_browser, session):
    run_action(admin_browser, "broker_usersession", "log_off", [session])
    run_action(admin_browser, "broker_usersession", "disconnect", [session])
    run_action(admin_browser, "broker_usersession", "send_message", [session], title="Hello", text="Going down")

    assert [(e.action, e.result, e.object_id) for e in events()] == [
        ("logoff", "offline", str(session.pk)), ("disconnect", "offline", str(session.pk)),
        ("message", "offline", str(session.pk))]
    assert all(e.actor_name == "admin" and e.surface == "admin" for e in events())


def test_sign_out_everywhere_is_recorded_once_with_what_it_did(admin_browser, session, member):
    run_action(admin_browser, "auth_user", "sign_out_everywhere", [member])

    event = only_event(action="sign_out_everywhere")
    assert event.object_id == str(member.pk) and "host session(s)" in event.detail
    assert only_event(action="logoff").result == "offline"
    assert events(action="change") == []  # the admin's history line is not recorded a second time


def test_a_staff_sign_in_is_recorded(client, admin_user):
    response = client.post("/admin/login/", {"username": "admin", "password": PASSWORD},
                           REMOTE_ADDR=ADDRESS, HTTP_USER_AGENT=USER_AGENT)

    assert response.status_code == 302
    event = only_event(action="sign_in")
    assert (event.actor_name, event.client_address, event.surface) == ("admin", ADDRESS, "admin")


def test_every_admin_action_is_audited_here():
    """A new admin action must be recorded and tested: this list is the reminder."""
    audited = {"delete_selected", "revoke_tokens", "issue_registration_token", "revoke_registration_token",
               "drain_on", "drain_off", "mark_for_replacement", "cancel_replacement", "log_off", "disconnect",
               "send_message", "sign_out_everywhere"}
    found = set()
    for model_admin in admin.site._registry.values():
        found |= {name for name in (model_admin.actions or [])} | {"delete_selected"}
    assert {name if isinstance(name, str) else name.__name__ for name in found} == audited, \
        "record the new action in the audit log (core/audit.py) and test it here"
