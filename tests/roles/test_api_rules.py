"""The rules around the matrix: roles add up, an object cannot be moved out of a scope, a removed role or
group membership stops at once, groups carry roles, lists cost a fixed number of queries, and the
role-assignment endpoints themselves."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from core.models import RoleAssignment
from core.roles import ROLES
from tests.roles.test_api_matrix import LISTS, api_for


@pytest.fixture
def delegate(django_user_model, estate):
    estate.delegate = django_user_model.objects.create_user("delegate")
    return estate.delegate


def drain(api, host) -> int:
    return api.post(f"/api/v1/sessionhosts/{host.pk}/drain/", {"allow_new_sessions": False}).status_code


def test_roles_add_up_and_each_keeps_its_own_scope(estate, delegate, give_role):
    give_role(delegate, "Desktop Virtualization Reader")
    give_role(delegate, "Power On Off Contributor", estate["p1"])
    api = api_for(delegate)
    assert drain(api, estate["h1"]) == 200
    # Readable everywhere, but drained only where the power role is: a 403, not a 404.
    assert drain(api, estate["h2"]) == 403
    assert api.get(f"/api/v1/sessionhosts/{estate['h2'].pk}/").status_code == 200


def test_a_scoped_contributor_cannot_move_an_object_out_of_its_scope(estate, delegate, give_role):
    give_role(delegate, "Application Group Contributor", estate["ws1"])
    api = api_for(delegate)
    # ws2 is no choice of theirs: the field's 400, as for a workspace that does not exist.
    moved = api.patch(f"/api/v1/applicationgroups/{estate['rag1'].pk}/", {"workspace": estate["ws2"].pk})
    assert moved.status_code == 400 and "workspace" in moved.json()
    estate["rag1"].refresh_from_db()
    assert estate["rag1"].workspace == estate["ws1"]
    # Nor move an app into a group outside it.
    moved = api.patch(f"/api/v1/remoteapps/{estate['app1'].pk}/", {"application_group": estate["rag2"].pk})
    assert moved.status_code == 400 and "application_group" in moved.json()
    assert api.patch(f"/api/v1/applicationgroups/{estate['rag1'].pk}/", {"friendly_name": "Kept"}).status_code == 200


def test_a_removed_assignment_stops_every_action_at_once(estate, delegate, give_role):
    role = give_role(delegate, "Session Host Contributor", estate["p1"])
    api = api_for(delegate)
    assert drain(api, estate["h1"]) == 200
    assert api.get("/api/v1/sessionhosts/").json()["count"] == 1
    role.delete()
    assert drain(api, estate["h1"]) == 403
    assert api.get("/api/v1/sessionhosts/").status_code == 403
    assert api.get(f"/api/v1/sessionhosts/{estate['h1'].pk}/").status_code == 403


def test_a_role_given_to_a_group_covers_its_members_while_they_are_members(estate, delegate, give_role):
    helpdesk = Group.objects.create(name="helpdesk")
    give_role(helpdesk, "User Session Operator", estate["p1"])
    api = api_for(delegate)
    logoff = f"/api/v1/hostagent/user-sessions/{estate['s1'].pk}/logoff/"
    assert api.post(logoff).status_code == 403

    delegate.groups.add(helpdesk)
    assert api.post(logoff).status_code == 503  # let through; the host's agent is not connected
    assert [row["id"] for row in api.get("/api/v1/usersessions/").json()["results"]] == [estate["s1"].pk]
    assert api.post(f"/api/v1/hostagent/user-sessions/{estate['s2'].pk}/logoff/").status_code == 404

    delegate.groups.remove(helpdesk)
    assert api.post(logoff).status_code == 403


@pytest.mark.parametrize("kind", sorted(LISTS))
def test_a_scoped_list_costs_a_fixed_number_of_queries(estate, delegate, give_role, django_assert_num_queries, kind):
    endpoint, _ = LISTS[kind]
    give_role(delegate, "Desktop Virtualization Reader", estate["p1"])
    give_role(delegate, "Desktop Virtualization Reader", estate["ws2"])
    api = api_for(delegate)
    api.get(f"/api/v1/{endpoint}/")  # Warm up: the first request also records the token's last use.
    # The token, the caller's role assignments (theirs and their groups', one query), the page's COUNT and
    # SELECT. The gateway instances and certificates lie in no scope but 'all': the SELECT is skipped.
    empty = kind in {"gatewayinstance", "certificate"}
    with django_assert_num_queries(2 if empty else 4):
        response = api.get(f"/api/v1/{endpoint}/")
    assert response.status_code == 200


def test_a_reader_of_two_scopes_lists_exactly_both(estate, delegate, give_role):
    give_role(delegate, "Host Pool Reader", estate["p1"])
    give_role(delegate, "Host Pool Reader", estate["p2"])
    give_role(delegate, "Application Group Reader", estate["ag2"])
    api = api_for(delegate)
    assert {row["name"] for row in api.get("/api/v1/sessionhosts/").json()["results"]} == {
        "h1.example.net", "h2.example.net"}
    assert {row["name"] for row in api.get("/api/v1/applicationgroups/").json()["results"]} == {"ag2"}


# --- /api/v1/role-assignments/ and /api/v1/roles/ ---------------------------------------------------------

def test_a_superuser_gives_a_role_at_a_scope_and_takes_it_away(admin_api, estate, delegate):
    created = admin_api.post("/api/v1/role-assignments/", {
        "role": "Host Pool Reader", "user": delegate.pk, "scope_type": "hostpool", "scope_id": estate["p1"].pk})
    assert created.status_code == 201, created.json()
    assert created.json() | {"created_at": None} == {
        "id": created.json()["id"], "role": "Host Pool Reader", "user": delegate.pk, "group": None,
        "scope_type": "hostpool", "scope_id": estate["p1"].pk, "created_at": None}
    api = api_for(delegate)
    assert api.get("/api/v1/hostpools/").json()["count"] == 1
    assert admin_api.delete(f"/api/v1/role-assignments/{created.json()['id']}/").status_code == 204
    assert api.get("/api/v1/hostpools/").status_code == 403


@pytest.mark.parametrize(("body", "field"), [
    ({"role": "Host Pool Reader", "scope_type": "all"}, "user"),  # no principal
    ({"role": "Host Pool Reader", "scope_type": "all", "both": True}, "user"),  # two principals
    ({"role": "Host Pool Reader", "scope_type": "hostpool", "principal": True}, "scope_id"),  # no scope_id
    ({"role": "Host Pool Reader", "scope_type": "all", "scope_id": 1, "principal": True}, "scope_id"),
    ({"role": "Host Pool Reader", "scope_type": "hostpool", "scope_id": 999999, "principal": True}, "scope_id"),
    ({"role": "Host Pool Reader", "scope_type": "workspace", "scope": "ws1", "principal": True}, "scope_type"),
    ({"role": "Owner", "scope_type": "all", "principal": True}, "role"),
    ({"role": "Host Pool Reader", "scope_type": "subscription", "principal": True}, "scope_type"),
])
def test_a_role_assignment_that_makes_no_sense_is_a_400_naming_the_field(admin_api, estate, delegate, body, field):
    body = dict(body)
    if body.pop("principal", False):
        body["user"] = delegate.pk
    if body.pop("both", False):
        body.update(user=delegate.pk, group=Group.objects.create(name="g").pk)
    if "scope" in body:
        body["scope_id"] = estate[body.pop("scope")].pk
    response = admin_api.post("/api/v1/role-assignments/", body)
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not RoleAssignment.objects.exists()


def test_the_same_role_twice_at_one_scope_is_a_400(admin_api, estate, delegate, give_role):
    give_role(delegate, "Host Pool Reader", estate["p1"])
    response = admin_api.post("/api/v1/role-assignments/", {
        "role": "Host Pool Reader", "user": delegate.pk, "scope_type": "hostpool", "scope_id": estate["p1"].pk})
    assert response.status_code == 400


def test_only_superusers_manage_role_assignments(estate, delegate, give_role):
    # Not even a contributor to everything: AVD's contributors cannot assign roles either.
    give_role(delegate, "Desktop Virtualization Contributor")
    api = api_for(delegate)
    assert api.get("/api/v1/role-assignments/").status_code == 403
    grant_self = api.post("/api/v1/role-assignments/", {"role": "Desktop Virtualization Contributor",
                                                          "user": delegate.pk, "scope_type": "all"})
    assert grant_self.status_code == 403


def test_deleting_a_scope_deletes_the_roles_given_at_it(estate, delegate, give_role):
    give_role(delegate, "Workspace Contributor", estate["ws2"])
    kept = give_role(delegate, "Workspace Contributor", estate["ws1"])
    estate["ws2"].delete()
    assert list(RoleAssignment.objects.all()) == [kept]


def test_the_roles_table_lists_every_role_with_its_actions_and_scopes(member_api):
    response = member_api.get("/api/v1/roles/")
    assert response.status_code == 200
    table = {row["name"]: row for row in response.json()}
    assert set(table) == set(ROLES)
    operator = table["User Session Operator"]
    assert operator["scopes"] == ["all", "hostpool"]
    assert "usersession.logoff" in operator["actions"] and "sessionhost.drain" not in operator["actions"]
    one = member_api.get("/api/v1/roles/Power On Off Contributor/")
    assert one.status_code == 200 and one.json()["actions"] == ["hostpool.view", "sessionhost.drain",
                                                                "sessionhost.view"]
    assert member_api.get("/api/v1/roles/Owner/").status_code == 404


def test_the_audit_log_is_read_by_readers_of_everything_only(estate, delegate, give_role):
    from django.test import Client  # noqa: PLC0415
    from django.urls import reverse  # noqa: PLC0415

    from core import audit  # noqa: PLC0415
    from core.choices import AuditAction  # noqa: PLC0415

    event = audit.record(AuditAction.DRAIN, estate["h1"], changes={"allow_new_sessions": [True, False]})
    api, browser = api_for(delegate), Client()
    browser.force_login(delegate)
    assert api.get("/api/v1/audit/").status_code == 403
    # The audit log lies in no scope but 'all': a reader of one pool reads none of it, even of that pool.
    pool_reader = give_role(delegate, "Desktop Virtualization Reader", estate["p1"])
    assert api.get("/api/v1/audit/").json()["count"] == 0
    assert api.get(f"/api/v1/audit/{event.pk}/").status_code == 404
    pool_reader.delete()
    give_role(delegate, "Desktop Virtualization Reader")
    assert [row["id"] for row in api.get("/api/v1/audit/").json()["results"]] == [event.pk]
    assert api.get("/api/v1/audit/?format=csv").status_code == 200
    assert browser.get(reverse("portal:audit")).status_code == 200
