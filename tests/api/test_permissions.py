"""Who may use the management endpoints: superusers, and users whose roles grant the action (docs/roles.md);
nobody else, staff or not."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.conftest import PASSWORD

# (URL name, fixture that makes one object, the model's permission prefix)
ENDPOINTS = [
    ("workspaces", "workspace", "feed.%s_workspace"),
    ("hostpools", "pooled_pool", "broker.%s_hostpool"),
    ("applicationgroups", "desktop_group", "feed.%s_applicationgroup"),
    ("assignments", "assignment", "feed.%s_assignment"),
    ("desktops", "desktop", "feed.%s_desktop"),
    ("remoteapps", "remote_app", "feed.%s_remoteapp"),
    ("sessionhosts", "session_host", "broker.%s_sessionhost"),
    ("usersessions", "user_session", "broker.%s_usersession"),
    ("connections", "connection", "broker.%s_connection"),
    ("gatewayinstances", "gateway_instance", "broker.%s_gatewayinstance"),
    ("certificates", "certificate", "wvdportal.%s_certificate"),
]
WRITABLE = {"workspaces", "hostpools", "applicationgroups", "assignments", "remoteapps", "sessionhosts"}


def _urls(request, name: str, fixture: str) -> tuple[str, str]:
    obj = request.getfixturevalue(fixture)
    return f"/api/v1/{name}/", f"/api/v1/{name}/{obj.pk}/"


@pytest.mark.parametrize(("name", "fixture", "perm"), ENDPOINTS)
def test_a_superuser_can_list_and_read_every_endpoint(request, admin_api, name, fixture, perm):
    list_url, detail_url = _urls(request, name, fixture)
    listed = admin_api.get(list_url)
    assert listed.status_code == 200
    assert listed.json()["count"] == 1
    assert admin_api.get(detail_url).status_code == 200


@pytest.mark.parametrize(("name", "fixture", "perm"), [*ENDPOINTS, ("tokens", "admin_api", "")])
def test_an_unknown_id_is_a_404(admin_api, name, fixture, perm):
    assert admin_api.get(f"/api/v1/{name}/999999/").status_code == 404


@pytest.mark.parametrize(("name", "fixture", "perm"), ENDPOINTS)
def test_a_plain_user_is_refused_every_management_endpoint(request, member_api, name, fixture, perm):
    list_url, detail_url = _urls(request, name, fixture)
    assert member_api.get(list_url).status_code == 403
    assert member_api.get(detail_url).status_code == 403
    assert member_api.post(list_url, {}).status_code == 403
    assert member_api.patch(detail_url, {}).status_code == 403
    assert member_api.put(detail_url, {}).status_code == 403
    assert member_api.delete(detail_url).status_code == 403


@pytest.mark.parametrize(("name", "fixture", "perm"), ENDPOINTS)
def test_anonymous_requests_get_401_with_a_bearer_challenge(request, anonymous_api, name, fixture, perm):
    list_url, detail_url = _urls(request, name, fixture)
    for response in (anonymous_api.get(list_url), anonymous_api.get(detail_url),
                     anonymous_api.post(list_url, {}), anonymous_api.delete(detail_url)):
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("name", "fixture", "perm"), ENDPOINTS)
def test_staff_status_and_model_permissions_grant_nothing_without_a_role(
    request, member, member_api, grant, name, fixture, perm
):
    # Roles are the one grant (docs/roles.md): a staff user holding every model permission sees nothing.
    member.is_staff = True
    member.save()
    grant(member, *(perm % verb for verb in ("view", "add", "change", "delete")))
    list_url, detail_url = _urls(request, name, fixture)
    assert member_api.get(list_url).status_code == 403
    assert member_api.get(detail_url).status_code == 403
    assert member_api.delete(detail_url).status_code == 403


@pytest.mark.parametrize(("name", "fixture", "perm"), ENDPOINTS)
def test_a_reader_of_everything_can_read_but_not_write(request, member, member_api, give_role, name, fixture, perm):
    list_url, detail_url = _urls(request, name, fixture)
    give_role(member, "Desktop Virtualization Reader")
    assert member_api.get(list_url).json()["count"] == 1
    assert member_api.get(detail_url).status_code == 200
    assert member_api.patch(detail_url, {}).status_code == 403
    assert member_api.delete(detail_url).status_code == 403


@pytest.mark.parametrize(("name", "fixture", "perm"), [e for e in ENDPOINTS if e[0] in WRITABLE])
def test_a_contributor_to_everything_can_delete(request, member, member_api, give_role, name, fixture, perm):
    _, detail_url = _urls(request, name, fixture)
    give_role(member, "Desktop Virtualization Contributor")
    # A pool still in use answers 409, which still proves the role let the request through.
    assert member_api.delete(detail_url).status_code in {204, 409}


def test_a_workspace_contributor_of_everything_can_create_and_read_workspaces(member, member_api, give_role):
    give_role(member, "Workspace Contributor")
    response = member_api.post("/api/v1/workspaces/", {"name": "fabrikam"})
    assert response.status_code == 201, response.json()
    assert member_api.get(f"/api/v1/workspaces/{response.json()['id']}/").status_code == 200


def test_a_workspace_contributor_can_update(member, member_api, give_role, workspace):
    give_role(member, "Workspace Contributor", workspace)
    response = member_api.patch(f"/api/v1/workspaces/{workspace.pk}/", {"friendly_name": "Renamed"})
    assert response.status_code == 200
    workspace.refresh_from_db()
    assert workspace.friendly_name == "Renamed"


def test_actions_need_the_operation_not_just_reading(member, member_api, give_role, session_host, pooled_pool):
    give_role(member, "Host Pool Reader", pooled_pool)
    drain_url = f"/api/v1/sessionhosts/{session_host.pk}/drain/"
    replacement_url = f"/api/v1/sessionhosts/{session_host.pk}/replacement/"
    token_url = f"/api/v1/hostpools/{pooled_pool.pk}/registration-token/"
    assert member_api.post(drain_url, {"allow_new_sessions": False}).status_code == 403
    assert member_api.post(replacement_url, {"marked_for_replacement": True}).status_code == 403
    assert member_api.post(token_url, {}).status_code == 403
    assert member_api.delete(token_url).status_code == 403

    give_role(member, "Session Host Contributor", pooled_pool)
    assert member_api.post(drain_url, {"allow_new_sessions": False}).status_code == 200
    assert member_api.post(replacement_url, {"marked_for_replacement": True}).status_code == 200
    assert member_api.post(token_url, {}).status_code == 201
    assert member_api.delete(token_url).status_code == 204


def test_the_api_root_lists_every_endpoint_to_a_signed_in_user(member_api):
    response = member_api.get("/api/v1/")
    assert response.status_code == 200
    assert {name for name, _, _ in ENDPOINTS} | {"tokens"} <= set(response.json())


def test_the_api_root_refuses_anonymous_requests(anonymous_api):
    assert anonymous_api.get("/api/v1/").status_code == 401


def test_an_inactive_superuser_is_refused(admin_user, admin_api):
    admin_user.is_active = False
    admin_user.save()
    assert admin_api.get("/api/v1/hostpools/").status_code == 401


def test_a_signed_in_session_works_and_writes_need_the_csrf_token(admin_user, workspace):
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="admin", password=PASSWORD)
    assert client.get("/api/v1/workspaces/").status_code == 200
    refused = client.patch(f"/api/v1/workspaces/{workspace.pk}/", {"friendly_name": "X"})
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
