"""Directory groups, against a real slapd: they appear as Django groups, an application group assigned to
one gives its members the desktop, and leaving the group (seen at the next sign-in or by the periodic sync)
takes the desktop away and makes the gateway refuse a connection ticket issued before."""
from __future__ import annotations

import logging

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from broker.models import GatewayInstance
from core import tasks
from core.models import DirectoryAccount, UserAccessChange
from core.tickets import issue_connection_ticket
from feed.models import ApplicationGroup, Assignment
from gateway import records
from tests.directory.conftest import PASSWORD
from wire.errors import ErrorCode

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def sign_in(username: str) -> APIClient:
    response = APIClient().post("/api/v1/auth/token/", {"username": username, "password": PASSWORD}, format="json")
    assert response.status_code == 201, response.content
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['token']}")
    return client


def feed_ids(client: APIClient) -> list[str]:
    response = client.get("/api/v1/feed/")
    assert response.status_code == 200
    return [resource["id"] for resource in response.json()]


def groups_of(username: str) -> set[str]:
    return set(get_user_model().objects.get(username=username).groups.values_list("name", flat=True))


@pytest.fixture
def gateway(db):
    return GatewayInstance.objects.create(name="gw-test", public_host="127.0.0.1", public_port=8443)


@pytest.fixture
def sales_desktop(pooled_pool, workspace):
    return ApplicationGroup.objects.create(name="dag-sales", friendly_name="Sales desktop", group_type="desktop",
                                           host_pool=pooled_pool, workspace=workspace)


def ticket_for(username: str, group: ApplicationGroup) -> str:
    """As the feed issues it into the .rdp file (feed/views.py)."""
    user = get_user_model().objects.get(username=username)
    return issue_connection_ticket(user=user, application_group_id=group.pk, resource=f"{group.name}/desktop",
                                   host_pool_id=group.host_pool_id, host_pool_name=group.host_pool.name)


def test_every_kind_of_directory_group_becomes_a_django_group(directory):
    name = directory.user("mallory")
    other = directory.user("nina")
    names = directory.group("names", [name])
    unique = directory.group("unique", [name, other], kind="groupOfUniqueNames")
    posix = directory.group("posix", [name], kind="posixGroup")
    directory.group("elsewhere", [other])

    sign_in(name)

    assert groups_of(name) == {names, unique, posix}
    assert Group.objects.filter(name__in=[names, unique, posix]).count() == 3


def test_an_application_group_assigned_to_a_directory_group_gives_its_members_the_desktop(directory, sales_desktop):
    member = directory.user("oscar")
    outsider = directory.user("peggy")
    sales = directory.group("sales", [member])
    # The admin assigns the group before anyone of it has signed in: it is created by name, then filled.
    Assignment.objects.create(application_group=sales_desktop, group=Group.objects.create(name=sales))

    assert feed_ids(sign_in(member)) == ["dag-sales/desktop"]
    assert feed_ids(sign_in(outsider)) == []


def test_leaving_the_group_takes_the_desktop_away_at_the_next_sign_in_and_refuses_old_tickets(
        directory, sales_desktop, gateway):
    name = directory.user("quinn")
    sales = directory.group("sales", [name])
    sign_in(name)
    Assignment.objects.create(application_group=sales_desktop, group=Group.objects.get(name=sales))
    UserAccessChange.objects.all().delete()  # the first sign-in's own change is not what this test is about
    ticket = ticket_for(name, sales_desktop)
    assert isinstance(records.admit(ticket, "192.0.2.20", "gw-test"), records.Admission)

    directory.server.remove_member(sales, name)
    client = sign_in(name)

    assert feed_ids(client) == []
    assert groups_of(name) == set()
    assert UserAccessChange.objects.get(user_id=get_user_model().objects.get(username=name).pk).reason == \
        "group membership changed"
    refusal = records.admit(ticket, "192.0.2.20", "gw-test")
    assert refusal.code == ErrorCode.ConnectionFailedUserNotAuthorized


def test_a_removal_and_return_between_sign_ins_still_refuses_the_old_ticket(directory, sales_desktop, gateway):
    """Entitled again by the time the ticket comes back: only the access change can refuse it."""
    name = directory.user("rupert")
    sales = directory.group("sales", [name])
    sign_in(name)
    Assignment.objects.create(application_group=sales_desktop, group=Group.objects.get(name=sales))
    UserAccessChange.objects.all().delete()
    ticket = ticket_for(name, sales_desktop)

    directory.server.remove_member(sales, name)
    sign_in(name)
    directory.server.add_member(sales, name)
    sign_in(name)

    assert groups_of(name) == {sales}
    assert records.admit(ticket, "192.0.2.20", "gw-test").code == ErrorCode.ConnectionFailedTicketRevoked


def test_the_sync_task_takes_the_group_away_without_a_sign_in(directory, sales_desktop, gateway, settings):
    name = directory.user("sybil")
    stays = directory.user("trent")
    sales = directory.group("sales", [name, stays], kind="groupOfUniqueNames")
    sign_in(name)
    sign_in(stays)
    Assignment.objects.create(application_group=sales_desktop, group=Group.objects.get(name=sales))
    UserAccessChange.objects.all().delete()
    ticket = ticket_for(name, sales_desktop)
    kept_ticket = ticket_for(stays, sales_desktop)

    directory.server.remove_member(sales, name, kind="groupOfUniqueNames")
    result = tasks.sync_directory_users.apply().get()

    assert result == {"refreshed": 2, "deactivated": 0, "unavailable": ""}
    assert groups_of(name) == set() and groups_of(stays) == {sales}
    assert records.admit(ticket, "192.0.2.20", "gw-test").code == ErrorCode.ConnectionFailedUserNotAuthorized
    assert isinstance(records.admit(kept_ticket, "192.0.2.20", "gw-test"), records.Admission)


def test_the_sync_deactivates_a_user_the_directory_no_longer_has(directory, sales_desktop, gateway):
    name = directory.user("uma")
    sales = directory.group("sales", [name], kind="posixGroup")
    sign_in(name)
    Assignment.objects.create(application_group=sales_desktop, group=Group.objects.get(name=sales))
    ticket = ticket_for(name, sales_desktop)

    directory.server.delete_user(name)
    result = tasks.sync_directory_users.apply().get()

    assert (result["deactivated"], result["unavailable"]) == (1, "")
    user = get_user_model().objects.get(username=name)
    assert not user.is_active and groups_of(name) == set()
    assert records.admit(ticket, "192.0.2.20", "gw-test").code == ErrorCode.ConnectionFailedUserNotAuthorized


def test_the_sync_changes_nobody_while_the_directory_is_down(directory, unreachable_uri, caplog):
    name = directory.user("victor")
    sales = directory.group("sales", [name])
    sign_in(name)
    directory.configure(URI=unreachable_uri)

    with caplog.at_level(logging.WARNING, logger="core.directory"):
        result = tasks.sync_directory_users.apply().get()

    assert result["refreshed"] == 0 and result["deactivated"] == 0 and result["unavailable"]
    user = get_user_model().objects.get(username=name)
    assert user.is_active and groups_of(name) == {sales}
    assert "directory sync skipped" in caplog.text


def test_the_sync_takes_the_least_recently_read_users_first_in_bounded_batches(directory):
    names = [directory.user(f"walt{index}") for index in range(3)]
    for name in names:
        sign_in(name)
    first = DirectoryAccount.objects.get(user__username=names[0]).synced_at

    assert tasks.sync_directory_users.apply(kwargs={}).get()["refreshed"] == 3
    directory.configure(SYNC_BATCH=2)
    assert tasks.sync_directory_users.apply().get()["refreshed"] == 2

    synced = dict(DirectoryAccount.objects.values_list("user__username", "synced_at"))
    assert synced[names[0]] > first
    assert synced[names[2]] < synced[names[0]]  # left for the next run
