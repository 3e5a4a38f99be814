"""List endpoints run a fixed number of queries however many rows they show: N+1 regressions fail here.

Each list costs: the token lookup, the page's COUNT and the page's SELECT (related rows joined in).
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from broker.models import Connection, GatewayInstance, HostPool, SessionHost, UserSession
from core.models import ApiToken, Certificate
from feed.models import ApplicationGroup, Assignment, RemoteApp, Workspace

ROWS = 5


@pytest.fixture
def estate(admin_user, django_user_model):
    """ROWS of everything, each row with all its relations filled in."""
    now = timezone.now()
    group = Group.objects.create(name="everyone")
    personal = HostPool.objects.create(name="pc-pool", pool_type="personal")
    for i in range(ROWS):
        user = django_user_model.objects.create_user(f"user{i}")
        workspace = Workspace.objects.create(name=f"ws-{i}")
        pool = HostPool.objects.create(name=f"pool-{i}")
        desktops = ApplicationGroup.objects.create(name=f"dag-{i}", group_type="desktop", host_pool=pool,
                                                   workspace=workspace)
        apps = ApplicationGroup.objects.create(name=f"rag-{i}", group_type="remoteapp", host_pool=pool,
                                               workspace=workspace)
        RemoteApp.objects.create(application_group=apps, name=f"app-{i}", friendly_name=f"App {i}", file_path="a.exe")
        Assignment.objects.create(application_group=desktops, user=user)
        Assignment.objects.create(application_group=apps, group=group)
        host = SessionHost.objects.create(host_pool=personal, name=f"pc-{i}", assigned_user=user)
        UserSession.objects.create(session_host=host, session_id=i + 1, user=user, username=user.username)
        gateway = GatewayInstance.objects.create(name=f"gw-{i}", public_host=f"gw{i}.example.net", public_port=8443)
        Connection.objects.create(user=user, username=user.username, application_group=desktops, host_pool=personal,
                                  session_host=host, gateway_instance=gateway, state="connected")
        Certificate.objects.create(
            serial_number=f"{i:04x}", subject=f"CN=pc-{i}", common_name=f"pc-{i}", purpose="host-agent",
            fingerprint_sha256=f"{i:064x}", not_before=now, not_after=now + timedelta(days=1), pem="PEM",
        )
        ApiToken.issue(admin_user, description=f"token {i}")


LISTS = [
    ("workspaces", ROWS, 3),
    ("hostpools", ROWS + 1, 3),
    ("applicationgroups", 2 * ROWS, 3),
    ("assignments", 2 * ROWS, 3),
    ("desktops", ROWS, 3),
    ("remoteapps", ROWS, 3),
    ("sessionhosts", ROWS, 3),
    ("usersessions", ROWS, 3),
    ("connections", ROWS, 3),
    ("gatewayinstances", ROWS, 3),
    ("certificates", ROWS, 3),
    ("tokens", ROWS + 1, 3),  # Plus the admin client's own token.
]


@pytest.mark.parametrize(("name", "rows", "queries"), LISTS)
def test_a_list_costs_a_fixed_number_of_queries(admin_api, estate, django_assert_max_num_queries, name, rows, queries):
    admin_api.get(f"/api/v1/{name}/")  # Warm up: the first request also records the token's last use.
    with django_assert_max_num_queries(queries):
        response = admin_api.get(f"/api/v1/{name}/")
    assert response.status_code == 200
    assert len(response.json()["results"]) == rows


def test_a_user_with_a_role_costs_one_more(member, member_api, give_role, estate, django_assert_max_num_queries):
    give_role(member, "Host Pool Reader")
    member_api.get("/api/v1/sessionhosts/")
    # One more: the user's role assignments, their own and their groups', in one query.
    with django_assert_max_num_queries(4):
        response = member_api.get("/api/v1/sessionhosts/")
    assert len(response.json()["results"]) == ROWS
