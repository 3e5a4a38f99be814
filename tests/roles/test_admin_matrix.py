"""The role matrix over the Django admin: every built-in role at every scope it may be given at, held by a
staff user (staff status opens the admin; the roles say what is in it), against every list, page, deletion
and action on side 1's objects (inside the scope) and side 2's (outside it, unless the scope is 'all')."""
from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from broker.models import Connection, GatewayInstance, HostPool, SessionHost, UserSession
from core.models import Certificate, RoleAssignment
from core.roles import ROLES
from feed.models import ApplicationGroup, Assignment, Desktop, RemoteApp, Workspace
from tests.roles.conftest import ROLE_SCOPES, AuditWatch, inside

KINDS = {
    "workspace": Workspace, "hostpool": HostPool, "applicationgroup": ApplicationGroup, "desktop": Desktop,
    "remoteapp": RemoteApp, "assignment": Assignment, "sessionhost": SessionHost, "usersession": UserSession,
    "connection": Connection, "gatewayinstance": GatewayInstance, "certificate": Certificate,
}
# In this order: deleting a workspace takes its application groups out of it (and out of its scope).
DELETABLE = {"assignment": "as", "remoteapp": "app", "applicationgroup": "rag", "sessionhost": "h", "workspace": "ws"}


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def run_action(browser: Client, model, action: str, objects, **extra) -> list[str]:
    response = browser.post(admin_url(model, "changelist"),
                            {"action": action, "_selected_action": [obj.pk for obj in objects], **extra}, follow=True)
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.fixture
def delegate(django_user_model, estate):
    return django_user_model.objects.create_user("delegate", is_staff=True)


@pytest.mark.parametrize(("role_name", "scope_type"), ROLE_SCOPES)
def test_every_role_at_every_scope_sees_and_does_exactly_what_it_grants_in_the_admin(
    estate, holder, role_name, scope_type
):
    role, browser, wrong = ROLES[role_name], holder(role_name, scope_type, staff=True), []

    for kind, model in KINDS.items():
        response = browser.get(admin_url(model, "changelist"))
        if f"{kind}.view" not in role.actions:
            if response.status_code != 403:
                wrong.append(f"{kind} list: {response.status_code}, expected 403")
            continue
        shown = {estate.name_of(model, obj.pk) for obj in response.context["cl"].result_list}
        expected = {name for name in estate.names_of(model) if inside(scope_type, name)}
        if shown != expected:
            wrong.append(f"{kind} list shows {sorted(shown)}, expected {sorted(expected)}")
        for name in estate.names_of(model):
            status = browser.get(admin_url(model, "change", estate[name].pk)).status_code
            if (status == 200) != inside(scope_type, name):
                wrong.append(f"{kind} page of {name}: {status}")

    for side in ("1", "2"):
        granted_here = {action for action in role.actions if inside(scope_type, f"h{side}")}
        host, pool, session = estate[f"h{side}"], estate[f"p{side}"], estate[f"s{side}"]
        audit = AuditWatch()  # each change below that was done is in the audit log; a refused one left nothing
        run_action(browser, SessionHost, "drain_on", [host])
        host.refresh_from_db()
        if host.allow_new_sessions == ("sessionhost.drain" in granted_here):
            wrong.append(f"drain {host.name} by action: allow_new_sessions={host.allow_new_sessions}")
        wrong += audit.mistakes(f"drain {host.name} by action", not host.allow_new_sessions)
        run_action(browser, SessionHost, "mark_for_replacement", [host])
        host.refresh_from_db()
        if (host.marked_for_replacement_at is not None) != ("sessionhost.replace" in granted_here):
            wrong.append(f"mark {host.name} by action")
        wrong += audit.mistakes(f"mark {host.name} by action", host.marked_for_replacement_at is not None)
        browser.post(admin_url(HostPool, "changelist"), {"action": "issue_registration_token",
                                                         "_selected_action": [pool.pk]})
        pool.refresh_from_db()
        if (pool.registration_token_hash != "") != ("hostpool.token" in granted_here):
            wrong.append(f"token for {pool.name} by action")
        wrong += audit.mistakes(f"token for {pool.name} by action", pool.registration_token_hash != "")
        for action, verb in [("log_off", "logoff"), ("disconnect", "disconnect"), ("send_message", "message")]:
            said = run_action(browser, UserSession, action, [session], title="Notice", text="Hello")
            tried = any("offline" in message for message in said)  # no agent is connected
            if tried != (f"usersession.{verb}" in granted_here):
                wrong.append(f"{action} on session {session.pk}: {said}")
            wrong += audit.mistakes(f"{action} on session {session.pk}", tried)

    for kind, stem in DELETABLE.items():
        model = KINDS[kind]
        for side in ("1", "2"):
            obj = estate[f"{stem}{side}"]
            audit = AuditWatch()
            browser.post(admin_url(model, "delete", obj.pk), {"post": "yes"})
            gone = not model.objects.filter(pk=obj.pk).exists()
            if gone != (f"{kind}.delete" in role.actions and inside(scope_type, f"{stem}{side}")):
                wrong.append(f"delete {stem}{side}: {'deleted' if gone else 'kept'}")
            wrong += audit.mistakes(f"delete {stem}{side}", gone)

    for model in (RoleAssignment,):
        if browser.get(admin_url(model, "changelist")).status_code != 403:
            wrong.append("role assignments are for superusers only")

    assert not wrong, f"{role_name} at {scope_type}:\n" + "\n".join(wrong)


def test_a_bulk_action_acts_only_on_the_selected_objects_the_roles_allow(estate, delegate, give_role):
    give_role(delegate, "Desktop Virtualization Reader")
    give_role(delegate, "Power On Off Contributor", estate["p1"])
    browser = Client()
    browser.force_login(delegate)
    said = run_action(browser, SessionHost, "drain_on", [estate["h1"], estate["h2"]])
    assert [h.allow_new_sessions for h in SessionHost.objects.order_by("name")] == [False, True]
    assert any("1 selected object(s) left alone" in message for message in said)


def test_a_scoped_contributor_cannot_save_an_object_outside_their_scope(estate, delegate, give_role):
    give_role(delegate, "Application Group Contributor", estate["ws1"])
    browser = Client()
    browser.force_login(delegate)
    form = {"name": "new-ag", "friendly_name": "", "description": "", "group_type": "remoteapp",
            "host_pool": estate["p2"].pk, "workspace": estate["ws2"].pk,
            "remote_apps-TOTAL_FORMS": 0, "remote_apps-INITIAL_FORMS": 0,
            "assignments-TOTAL_FORMS": 0, "assignments-INITIAL_FORMS": 0}
    # Side 2's pool and workspace are no choices of theirs: the form's errors, nothing saved.
    refused = browser.post(admin_url(ApplicationGroup, "add"), form)
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    assert not ApplicationGroup.objects.filter(name="new-ag").exists()
    response = browser.post(admin_url(ApplicationGroup, "add"), form | {"host_pool": estate["p1"].pk,
                                                                         "workspace": estate["ws1"].pk})
    assert response.status_code == 302, response.content.decode()[:3000]
    assert ApplicationGroup.objects.get(name="new-ag").workspace == estate["ws1"]


def test_staff_with_model_permissions_but_no_role_sees_nothing_in_the_admin(estate, delegate):
    from django.contrib.auth.models import Permission  # noqa: PLC0415

    delegate.user_permissions.add(*Permission.objects.all())
    browser = Client()
    browser.force_login(delegate)
    for model in (*KINDS.values(), RoleAssignment):
        assert browser.get(admin_url(model, "changelist")).status_code == 403, model
    assert browser.get(reverse("admin:auth_user_changelist")).status_code == 403
