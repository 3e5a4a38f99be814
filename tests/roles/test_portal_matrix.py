"""The role matrix over the portal: every built-in role at every scope it may be given at, against every
page and action on side 1's object (inside the scope) and side 2's (outside it, unless the scope is 'all').

A granted page answers 200 and a granted action does what it says; anything else fails closed: 403, or the
object's "gone" page (404) where the user may not read it, and nothing changes.
"""
from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from core.roles import ROLES
from feed.models import Assignment
from tests.roles.conftest import ROLE_SCOPES, AuditWatch, inside

# (the action the page needs, the page's URL name, the object it names, the action reading that object needs)
PAGES = [
    ("hostpool.view", "portal:pool-detail", "p", None),
    ("hostpool.change", "portal:pool-edit", "p", None),
    ("sessionhost.view", "portal:host-detail", "h", None),
    ("applicationgroup.view", "portal:group-detail", "ag", None),
    ("applicationgroup.change", "portal:group-edit", "ag", None),
    ("desktop.change", "portal:desktop-edit", "ag", "applicationgroup.view"),  # found through its group
    ("remoteapp.add", "portal:app-create", "rag", "applicationgroup.view"),
    ("remoteapp.change", "portal:app-edit", "app", None),
    ("workspace.change", "portal:workspace-edit", "ws", None),
]
# List pages: the action they need and the link each shown object carries.
LIST_PAGES = [
    ("hostpool.view", "portal:pools", "portal:pool-detail", "p"),
    ("applicationgroup.view", "portal:groups", "portal:group-detail", "ag"),
    ("usersession.view", "portal:sessions", "portal:session-logoff", "s"),
    ("connection.view", "portal:connections", "portal:connection-detail", "c"),
    ("workspace.view", "portal:workspaces", "portal:workspace-edit", "ws"),
]
CREATE_PAGES = [("hostpool.add", "portal:pool-create"), ("workspace.add", "portal:workspace-create"),
                ("applicationgroup.add", "portal:group-create")]


def url_arg(estate, url_name: str, name: str):
    return estate[name].activity_id if url_name == "portal:connection-detail" else estate[name].pk


@pytest.fixture
def delegate(django_user_model, estate):
    return django_user_model.objects.create_user("delegate")


@pytest.mark.parametrize(("role_name", "scope_type"), ROLE_SCOPES)
def test_every_role_at_every_scope_sees_and_does_exactly_what_it_grants_in_the_portal(
    estate, holder, role_name, scope_type
):
    role, browser, wrong = ROLES[role_name], holder(role_name, scope_type), []

    assert browser.get(reverse("portal:dashboard")).status_code == 200  # any role opens the portal

    for action, url_name, stem, reading in PAGES:
        for side in ("1", "2"):
            name = f"{stem}{side}"
            granted = (action in role.actions and inside(scope_type, name)
                       and (reading is None or reading in role.actions))
            status = browser.get(reverse(url_name, args=[url_arg(estate, url_name, name)])).status_code
            if (status == 200) != granted or (not granted and status not in {403, 404}):
                wrong.append(f"{url_name} {name}: {status}, {'granted' if granted else 'refused'} expected")

    for action, url_name, link_name, stem in LIST_PAGES:
        response = browser.get(reverse(url_name))
        if action not in role.actions:
            if response.status_code != 403:
                wrong.append(f"{url_name}: {response.status_code}, expected 403")
            continue
        page = response.content.decode()
        for side in ("1", "2"):
            name = f"{stem}{side}"
            shown = reverse(link_name, args=[url_arg(estate, link_name, name)]) in page
            if shown != inside(scope_type, name):
                wrong.append(f"{url_name} {'shows' if shown else 'hides'} {name}")

    for action, url_name in CREATE_PAGES:
        status = browser.get(reverse(url_name)).status_code
        if (status == 200) != (action in role.actions) or status not in {200, 403}:
            wrong.append(f"{url_name}: {status}")

    for side in ("1", "2"):
        host, pool, session = estate[f"h{side}"], estate[f"p{side}"], estate[f"s{side}"]
        granted = inside(scope_type, f"h{side}")
        audit = AuditWatch()  # each change below that was done is in the audit log; a refused one left nothing
        browser.post(reverse("portal:host-drain", args=[host.pk]), {"allow": "0"})
        host.refresh_from_db()
        if host.allow_new_sessions == ("sessionhost.drain" in role.actions and granted):
            wrong.append(f"drain {host.name}: allow_new_sessions={host.allow_new_sessions}")
        wrong += audit.mistakes(f"drain {host.name}", not host.allow_new_sessions)
        browser.post(reverse("portal:host-replacement", args=[host.pk]), {"mark": "1"})
        host.refresh_from_db()
        if (host.marked_for_replacement_at is not None) != ("sessionhost.replace" in role.actions and granted):
            wrong.append(f"replacement of {host.name}: {host.marked_for_replacement_at}")
        wrong += audit.mistakes(f"replacement of {host.name}", host.marked_for_replacement_at is not None)
        response = browser.post(reverse("portal:pool-token", args=[pool.pk]))
        pool.refresh_from_db()
        if (pool.registration_token_hash != "") != ("hostpool.token" in role.actions and granted):
            wrong.append(f"token of {pool.name}: {response.status_code}")
        wrong += audit.mistakes(f"token of {pool.name}", pool.registration_token_hash != "")
        for verb, url_name in [("logoff", "portal:session-logoff"), ("disconnect", "portal:session-disconnect")]:
            response = browser.post(reverse(url_name, args=[session.pk]), follow=True)
            tried = "not connected" in response.content.decode()  # the agent is not: the command was tried
            if tried != (f"usersession.{verb}" in role.actions and granted):
                wrong.append(f"{verb} of session {session.pk}: {'tried' if tried else 'not tried'}")
            wrong += audit.mistakes(f"{verb} of session {session.pk}", tried)
        response = browser.post(reverse("portal:session-message", args=[session.pk]), {"title": "Notice", "text": "Hi"})
        tried = "not connected" in response.content.decode()
        if tried != ("usersession.message" in role.actions and granted):
            wrong.append(f"message to session {session.pk}: {response.status_code}")
        wrong += audit.mistakes(f"message to session {session.pk}", tried)

        assignment = estate[f"as{side}"]
        browser.post(reverse("portal:assignment-delete", args=[assignment.pk]))
        removed = not Assignment.objects.filter(pk=assignment.pk).exists()
        if removed != ("assignment.delete" in role.actions and inside(scope_type, f"as{side}")):
            wrong.append(f"remove assignment {assignment.pk}: {'removed' if removed else 'kept'}")
        wrong += audit.mistakes(f"remove assignment {assignment.pk}", removed)

    assert not wrong, f"{role_name} at {scope_type}:\n" + "\n".join(wrong)


def test_a_scoped_contributor_creates_groups_inside_their_workspace_only(estate, delegate, give_role):
    from feed.models import ApplicationGroup  # noqa: PLC0415

    give_role(delegate, "Application Group Contributor", estate["ws1"])
    browser = Client()
    browser.force_login(delegate)
    # Side 2's pool and workspace are no choices of theirs: the form's error, as for ones that do not exist.
    for side, expected in [("2", 400), ("1", 302)]:
        response = browser.post(reverse("portal:group-create"), {
            "name": f"new-{side}", "friendly_name": "", "description": "", "group_type": "remoteapp",
            "host_pool": estate[f"p{side}"].pk, "workspace": estate[f"ws{side}"].pk})
        assert response.status_code == expected
    assert set(ApplicationGroup.objects.filter(name__startswith="new-").values_list("name", flat=True)) == {"new-1"}
    # Nor can they move one of theirs out.
    response = browser.post(reverse("portal:group-edit", args=[estate["rag1"].pk]), {
        "name": "rag1", "friendly_name": "", "description": "", "host_pool": estate["p1"].pk,
        "workspace": estate["ws2"].pk})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    estate["rag1"].refresh_from_db()
    assert estate["rag1"].workspace == estate["ws1"]


def test_staff_without_a_role_is_refused_the_portal_and_a_removed_role_closes_it(estate, delegate, give_role):
    delegate.is_staff = True
    delegate.save()
    browser = Client()
    browser.force_login(delegate)
    assert browser.get(reverse("portal:dashboard")).status_code == 403
    role = give_role(delegate, "Host Pool Reader", estate["p1"])
    assert browser.get(reverse("portal:pool-detail", args=[estate["p1"].pk])).status_code == 200
    role.delete()
    assert browser.get(reverse("portal:pool-detail", args=[estate["p1"].pk])).status_code == 403
    assert browser.get(reverse("portal:dashboard")).status_code == 403
