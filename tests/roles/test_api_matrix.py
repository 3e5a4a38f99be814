"""The role matrix over the REST API: every built-in role at every scope it may be given at, against every
action on side 1's object (inside the scope) and side 2's (outside it, unless the scope is 'all').

A granted action succeeds and is in the audit log under the caller's name; every other one fails closed: 403,
or 404 where the caller may not even read the object, and leaves no audit event. Lists show exactly the
objects the role may read.
"""
from __future__ import annotations

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from broker.models import Connection, GatewayInstance, HostPool, SessionHost, UserSession
from core.models import ApiToken, AuditEvent, Certificate
from core.roles import ROLES
from feed.models import ApplicationGroup, Assignment, Desktop, RemoteApp, Workspace
from tests.roles.conftest import NEW_OBJECT_INSIDE, ROLE_SCOPES, audit_mistakes, inside, pickable

LISTS = {
    "workspace": ("workspaces", Workspace), "hostpool": ("hostpools", HostPool),
    "applicationgroup": ("applicationgroups", ApplicationGroup), "desktop": ("desktops", Desktop),
    "remoteapp": ("remoteapps", RemoteApp), "assignment": ("assignments", Assignment),
    "sessionhost": ("sessionhosts", SessionHost), "usersession": ("usersessions", UserSession),
    "connection": ("connections", Connection), "gatewayinstance": ("gatewayinstances", GatewayInstance),
    "certificate": ("certificates", Certificate),
}
# (action, object name without its side, method, path, body, the statuses that mean "done")
OPERATIONS = [
    ("workspace.change", "ws", "patch", "/api/v1/workspaces/{pk}/", {}, {200}),
    ("workspace.delete", "ws", "delete", "/api/v1/workspaces/{pk}/", None, {204}),
    ("hostpool.change", "p", "patch", "/api/v1/hostpools/{pk}/", {}, {200}),
    ("hostpool.delete", "p", "delete", "/api/v1/hostpools/{pk}/", None, {204, 409}),  # 409: still in use
    ("hostpool.token", "p", "post", "/api/v1/hostpools/{pk}/registration-token/", {}, {201}),
    ("hostpool.token", "p", "delete", "/api/v1/hostpools/{pk}/registration-token/", None, {204}),
    ("applicationgroup.change", "ag", "patch", "/api/v1/applicationgroups/{pk}/", {}, {200}),
    ("applicationgroup.delete", "ag", "delete", "/api/v1/applicationgroups/{pk}/", None, {204}),
    ("desktop.change", "d", "patch", "/api/v1/desktops/{pk}/", {}, {200}),
    ("remoteapp.change", "app", "patch", "/api/v1/remoteapps/{pk}/", {}, {200}),
    ("remoteapp.delete", "app", "delete", "/api/v1/remoteapps/{pk}/", None, {204}),
    ("assignment.change", "as", "patch", "/api/v1/assignments/{pk}/", {}, {200}),
    ("assignment.delete", "as", "delete", "/api/v1/assignments/{pk}/", None, {204}),
    ("sessionhost.change", "h", "patch", "/api/v1/sessionhosts/{pk}/", {}, {200}),
    ("sessionhost.delete", "h", "delete", "/api/v1/sessionhosts/{pk}/", None, {204}),
    ("sessionhost.drain", "h", "post", "/api/v1/sessionhosts/{pk}/drain/", {"allow_new_sessions": False}, {200}),
    ("sessionhost.replace", "h", "post", "/api/v1/sessionhosts/{pk}/replacement/", {"marked_for_replacement": True},
     {200}),
    # The hosts have no agent connected: a command that got through answers 503 (offline).
    ("sessionhost.renew", "h", "post", "/api/v1/hostagent/session-hosts/{pk}/renew-certificate/", None, {503}),
    ("usersession.logoff", "s", "post", "/api/v1/hostagent/user-sessions/{pk}/logoff/", None, {503}),
    ("usersession.disconnect", "s", "post", "/api/v1/hostagent/user-sessions/{pk}/disconnect/", None, {503}),
    ("usersession.message", "s", "post", "/api/v1/hostagent/user-sessions/{pk}/message/", {"text": "Hello"}, {503}),
]


def new_objects(estate, side: str) -> list[tuple[str, str, dict, list[str]]]:
    """(action, list path, body, the estate's objects the body names) creating an object in side ``side``'s
    containers."""
    return [
        ("workspace.add", "/api/v1/workspaces/", {"name": f"new-ws{side}"}, []),
        ("hostpool.add", "/api/v1/hostpools/", {"name": f"new-pool{side}"}, []),
        ("applicationgroup.add", "/api/v1/applicationgroups/", {
            "name": f"new-rag{side}", "group_type": "remoteapp", "host_pool": estate[f"p{side}"].pk,
            "workspace": estate[f"ws{side}"].pk}, [f"p{side}", f"ws{side}"]),
        ("remoteapp.add", "/api/v1/remoteapps/", {
            "application_group": estate[f"rag{side}"].pk, "name": "new-app", "friendly_name": "New app",
            "file_path": "b.exe"}, [f"rag{side}"]),
        ("assignment.add", "/api/v1/assignments/", {"application_group": estate[f"ag{side}"].pk, "group": None,
                                                     "user": estate.delegate.pk}, [f"ag{side}"]),
    ]


def api_for(user) -> APIClient:
    client = APIClient()
    _, key = ApiToken.issue(user, description="matrix")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def attempt(api: APIClient, method: str, path: str, body) -> tuple[int, list[tuple[str, str]]]:
    """One request whose effects are rolled back, so every action meets the same estate; its status and the
    audit events (action, actor) it recorded."""
    with transaction.atomic():
        latest = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        status = getattr(api, method)(path, body).status_code if body is not None else getattr(api, method)(
            path).status_code
        events = list(AuditEvent.objects.filter(pk__gt=latest).values_list("action", "actor_name"))
        transaction.set_rollback(True)
    return status, events


@pytest.fixture
def delegate(django_user_model, estate):
    estate.delegate = django_user_model.objects.create_user("delegate")
    return estate.delegate


@pytest.mark.parametrize(("role_name", "scope_type"), ROLE_SCOPES)
def test_every_role_at_every_scope_does_exactly_what_it_grants(estate, delegate, give_role, role_name, scope_type):
    role = ROLES[role_name]
    give_role(delegate, role_name, estate.scope(scope_type))
    api = api_for(delegate)
    wrong: list[str] = []

    for kind, (endpoint, model) in LISTS.items():
        response = api.get(f"/api/v1/{endpoint}/?page_size=100")
        if f"{kind}.view" not in role.actions:
            if response.status_code != 403:
                wrong.append(f"list {endpoint}: {response.status_code}, expected 403")
            continue
        shown = {estate.name_of(model, row["id"]) for row in response.json()["results"]}
        expected = {name for name in estate.names_of(model) if inside(scope_type, name)}
        if shown != expected:
            wrong.append(f"list {endpoint}: shows {sorted(shown)}, expected {sorted(expected)}")
        for name in estate.names_of(model):
            status = api.get(f"/api/v1/{endpoint}/{estate[name].pk}/").status_code
            if (status == 200) != inside(scope_type, name):
                wrong.append(f"read {name}: {status}")

    for action, stem, method, path, body, done in OPERATIONS:
        for side in ("1", "2"):
            name = f"{stem}{side}"
            granted = action in role.actions and inside(scope_type, name)
            status, events = attempt(api, method, path.format(pk=estate[name].pk), body)
            if granted and status not in done:
                wrong.append(f"{action} {method} on {name}: {status}, expected {sorted(done)}")
            if not granted and status not in {403, 404}:
                wrong.append(f"{action} {method} on {name}: {status}, expected 403 or 404")
            # An empty PATCH changes nothing, and a change of nothing is not an event; nor is a delete the pool's
            # rule refused (409, still in use). A host command the offline agent could not take is one (503).
            if not (method == "patch" and body == {} and granted):
                wrong += audit_mistakes(f"{action} {method} on {name}", granted and status in done - {409}, events)

    for side in ("1", "2"):
        for action, path, body, named in new_objects(estate, side):
            kind = action.split(".")[0]
            where = NEW_OBJECT_INSIDE[kind] if side == "1" else {"all"}
            granted = action in role.actions and scope_type in where
            # Naming an object the caller may not pick is the field's 400 (as for an id that does not exist);
            # a form of pickable objects that would land outside the scope is a 403; no role for it at all, 403.
            refusal = 400 if action in role.actions and not all(pickable(scope_type, n) for n in named) else 403
            expected = 201 if granted else refusal
            status, events = attempt(api, "post", path, body)
            if status != expected:
                wrong.append(f"{action} on side {side}: {status}, expected {expected}")
            wrong += audit_mistakes(f"{action} on side {side}", granted and status == 201, events)

    assert not wrong, f"{role_name} at {scope_type}:\n" + "\n".join(wrong)
