"""The fixed cast every permission test uses: an admin, a member with assignments, an outsider."""
from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from broker.models import HostPool
from core.models import ApiToken, RoleAssignment
from tests.architecture.connection_writes import only_the_lifecycle_writes_connections
from feed.models import ApplicationGroup, Assignment, Workspace
from testbed import slapd
from tests.e2e.fixtures import xrdp_server  # noqa: F401 - one xrdp bed per test session (fixtures.py)

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True, scope="session")
def connection_rows_are_written_by_their_lifecycle_only():
    """Throughout the run, a write of the Connection table from anywhere but its lifecycle fails."""
    with only_the_lifecycle_writes_connections():
        yield


@pytest.fixture(autouse=True, scope="session")
def a_database_connection_per_call():
    """The product keeps PostgreSQL connections in its long-lived threads (WVD_DATABASE_CONN_MAX_AGE). Here
    event loops, and their executor threads, come and go with each test: a connection kept by such a thread
    would stay open until the garbage collector found it. So the suite opens one per call as before;
    tests/settings/test_dbconnections.py keeps them where that is the subject, and the processes of the
    cluster and end-to-end tests run the product's default."""
    database = django_settings.DATABASES["default"]
    kept = database["CONN_MAX_AGE"], database["CONN_HEALTH_CHECKS"]
    database.update(CONN_MAX_AGE=0, CONN_HEALTH_CHECKS=False)
    yield
    database["CONN_MAX_AGE"], database["CONN_HEALTH_CHECKS"] = kept


@pytest.fixture(scope="session")
def ldap_server():
    """A real OpenLDAP slapd on loopback (testbed/slapd.py), one per test session for every folder
    (tests/directory, and tests/e2e's directory user); skipped, with the reason, where it is missing."""
    reason = slapd.missing()
    if reason:
        pytest.skip(f"directory tests skipped: {reason}")
    with slapd.Slapd() as server:
        yield server


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The real hasher costs ~0.2 s a user; no test here is about hashing strength."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_user(
        "admin", "admin@example.net", PASSWORD, is_staff=True, is_superuser=True
    )


@pytest.fixture
def member(django_user_model):
    return django_user_model.objects.create_user("member", "member@example.net", PASSWORD)


@pytest.fixture
def outsider(django_user_model):
    return django_user_model.objects.create_user("outsider", "outsider@example.net", PASSWORD)


@pytest.fixture
def workspace(db):
    return Workspace.objects.create(name="contoso", friendly_name="Contoso Workspace")


@pytest.fixture
def pooled_pool(db):
    return HostPool.objects.create(name="pool-a", friendly_name="Pool A", max_session_limit=2)


@pytest.fixture
def personal_pool(db):
    return HostPool.objects.create(name="pool-personal", pool_type="personal", max_session_limit=1)


@pytest.fixture
def desktop_group(pooled_pool, workspace, member):
    group = ApplicationGroup.objects.create(
        name="dag-a", friendly_name="Office desktop", group_type="desktop", host_pool=pooled_pool, workspace=workspace
    )
    Assignment.objects.create(application_group=group, user=member)
    return group


@pytest.fixture
def remoteapp_group(pooled_pool, workspace):
    return ApplicationGroup.objects.create(
        name="rag-a", friendly_name="Office apps", group_type="remoteapp", host_pool=pooled_pool, workspace=workspace
    )


@pytest.fixture
def give_role(db):
    """give_role(user_or_group, "Host Pool Reader", pool): a role assignment at the object's scope (a Workspace,
    HostPool or ApplicationGroup), or at the scope 'all' without one. Validated as the API validates it."""
    scope_types = {"Workspace": "workspace", "HostPool": "hostpool", "ApplicationGroup": "applicationgroup"}

    def _give(principal, role: str, scope=None) -> RoleAssignment:
        assignment = RoleAssignment(
            role=role, scope_type="all" if scope is None else scope_types[type(scope).__name__],
            scope_id=None if scope is None else scope.pk,
            **({"group": principal} if isinstance(principal, Group) else {"user": principal}),
        )
        assignment.full_clean()
        assignment.save()
        return assignment

    return _give


def _client_for(user) -> APIClient:
    client = APIClient()
    _, key = ApiToken.issue(user, description="test")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def admin_api(admin_user) -> APIClient:
    return _client_for(admin_user)


@pytest.fixture
def member_api(member) -> APIClient:
    return _client_for(member)


@pytest.fixture
def outsider_api(outsider) -> APIClient:
    return _client_for(outsider)


@pytest.fixture
def anonymous_api(db) -> APIClient:
    return APIClient()
