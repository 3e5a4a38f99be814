"""Schemathesis over the app's own OpenAPI schema (``/api/schema/``), as an admin with an API token: whatever
it sends to any operation, the API answers without a server error.

In-process through Django's WSGI handler (no server), against the fixed cast plus a session host, a user
session, a connection, a gateway instance, a certificate and a RemoteApp, so generated ids that are small
numbers land on real objects. Bounded: a few examples per operation, about a minute in all. The DELETE
operations run in a test of their own, so the objects the others need are still there. CI runs this
once per run, on the PostgreSQL shape, whose database refuses more than SQLite does (``.ci/run`` sets
``WVD_TEST_SKIP=schemathesis`` for the embedded one).
"""
from __future__ import annotations

import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from broker.models import Connection, GatewayInstance, HostPool, SessionHost, UserSession
from core.models import ApiToken, Certificate
from feed.models import ApplicationGroup, Assignment, Desktop, RemoteApp, Workspace

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif("schemathesis" in os.environ.get("WVD_TEST_SKIP", "").split(","),
                       reason="WVD_TEST_SKIP=schemathesis: CI runs schemathesis once, on the other shape"),
]

# The model behind each collection, by the path segment before ``{id}``.
MODELS = {
    "workspaces": Workspace, "hostpools": HostPool, "applicationgroups": ApplicationGroup,
    "assignments": Assignment, "desktops": Desktop, "remoteapps": RemoteApp, "sessionhosts": SessionHost,
    "session-hosts": SessionHost, "usersessions": UserSession, "user-sessions": UserSession,
    "connections": Connection, "gatewayinstances": GatewayInstance, "certificates": Certificate,
    "tokens": ApiToken,
}

# Generated examples per operation, besides schemathesis' own boundary cases: about a minute in all.
# WVD_TEST_API_EXAMPLES=200 explores further by hand.
EXAMPLES = int(os.environ.get("WVD_TEST_API_EXAMPLES", "12"))
BOUNDED = settings(max_examples=EXAMPLES, deadline=None, database=None,
                   suppress_health_check=list(HealthCheck))

schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture
def api_schema(request, transactional_db, desktop_group, remoteapp_group, connection, user_session, certificate):
    """The schema as the app serves it, calling the app in-process.

    Django's test client keeps a test's database connection open across requests by taking
    close_old_connections off the request signals; the WSGI handler needs the same.
    """
    # schemathesis 4.32 names each operation's subtest by rewriting ``node._nodeid``, which pytest 9 keeps
    # as ``_id``: give it the attribute to rewrite (it only changes how the subtests are labelled).
    request.node._nodeid = request.node.nodeid
    RemoteApp.objects.create(application_group=remoteapp_group, name="calc", friendly_name="Calculator",
                             file_path="C:\\Windows\\System32\\calc.exe")
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def admin_token(admin_user):
    """A usable API token of the admin's: re-issued when an operation revoked the one before."""
    state = {}

    def current() -> str:
        if not state or not ApiToken.objects.usable().filter(pk=state["token"].pk).exists():
            state["token"], state["key"] = ApiToken.issue(admin_user, description="schemathesis")
        return state["key"]

    return current


def on_existing_object(case) -> None:
    """Point a small generated id at a real object of the operation's model (larger ones stay as made)."""
    value = case.path_parameters.get("id") if case.path_parameters else None
    if not isinstance(value, int) or not 0 <= value < 1000:
        return
    segments = case.operation.path.split("/")
    model = MODELS.get(segments[segments.index("{id}") - 1])
    ids = sorted(model.objects.values_list("pk", flat=True)) if model else []
    if ids:
        case.path_parameters["id"] = ids[value % len(ids)]


def call_and_check(case, token: str) -> None:
    on_existing_object(case)
    response = case.call(headers={"Authorization": f"Bearer {token}"})
    if is_offline_host(case, response):
        return
    case.validate_response(response, checks=[not_a_server_error])


def is_offline_host(case, response) -> bool:
    """The documented 503 of an action that reaches a host's agent (logoff, disconnect, message,
    renew-certificate) when no agent is connected, as none is here; it answers at once."""
    if not case.operation.path.startswith("/api/v1/hostagent/") or response.status_code != 503:
        return False
    try:
        return response.json().get("status") == "offline"
    except ValueError:  # not the JSON answer: a server error after all
        return False


@schema.exclude(method="DELETE").parametrize()
@BOUNDED
def test_the_api_answers_without_a_server_error(case, admin_token):
    call_and_check(case, admin_token())


@schema.include(method="DELETE").parametrize()
@BOUNDED
def test_deleting_answers_without_a_server_error(case, admin_token):
    call_and_check(case, admin_token())
