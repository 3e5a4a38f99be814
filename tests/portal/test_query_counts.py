"""List pages run a fixed number of queries however many rows they show: N+1 regressions fail here.

Every page costs two queries for the session and its user; the rest is the page's own.
"""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from broker.models import Connection, SessionHost, UserSession
from feed.models import ApplicationGroup, Assignment, Workspace
from tests.portal.conftest import more_pools

PAGES = [
    # (url name, queries): session + user, then what each page reads
    ("portal:dashboard", 2 + 5),  # pools with host counts, sessions per pool, attention, per hour, per code
    ("portal:pools", 2 + 2),  # pools with host counts, sessions per pool
    ("portal:workspaces", 2 + 1),
    ("portal:groups", 2 + 1),
    ("portal:sessions", 2 + 2),  # count, page
    ("portal:connections", 2 + 2),  # count, page
]


def grow(rows: int, tag: str, user) -> None:
    """More of everything each list shows, with every relation filled in."""
    workspace = Workspace.objects.create(name=f"ws-{tag}")
    for host, group in more_pools(rows, tag):
        UserSession.objects.create(session_host=host, session_id=2, user=user, username=user.username)
        Connection.objects.create(user=user, username=user.username, session_host=host, host_pool=host.host_pool,
                                  application_group=group, state="failed", error_code="InternalError")
        ApplicationGroup.objects.filter(pk=group.pk).update(workspace=workspace)
        Assignment.objects.create(application_group=group, user=user)


def queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


@pytest.mark.parametrize(("name", "expected"), PAGES)
def test_list_pages_cost_a_fixed_number_of_queries(staff, estate, member, name, expected):
    url = reverse(name)
    grow(3, "few", member)
    few = queries(staff, url)
    grow(9, "many", member)
    many = queries(staff, url)

    assert (few, many) == (expected, expected)


def test_the_pool_page_costs_a_fixed_number_of_queries(staff, estate):
    url = reverse("portal:pool-detail", args=[estate["pool"].pk])
    few = queries(staff, url)
    for i in range(10):
        host = SessionHost.objects.create(host_pool=estate["pool"], name=f"more-{i}", assigned_user=None)
        UserSession.objects.create(session_host=host, session_id=1, username=f"u{i}")

    # the pool, its counts (2), its application groups, its hosts
    assert (few, queries(staff, url)) == (2 + 5, 2 + 5)


def test_the_group_page_costs_a_fixed_number_of_queries(staff, estate, django_user_model):
    group = estate["desktop_group"]
    url = reverse("portal:group-detail", args=[group.pk])
    few = queries(staff, url)
    for i in range(10):
        Assignment.objects.create(application_group=group, user=django_user_model.objects.create_user(f"x{i}"))

    # the group, its desktop, its assignments
    assert (few, queries(staff, url)) == (2 + 3, 2 + 3)
