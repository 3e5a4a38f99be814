"""Placement in personal host pools: the assigned host, automatic assignment, direct assignment."""
from __future__ import annotations

import pytest

from broker.choices import ConnectionState, PersonalAssignment, SessionHostStatus, UserSessionState
from broker.models import Connection, HostPool, SessionHost
from broker.placement import Route, place_connection
from tests.placement import build
from wire.errors import ErrorCode

pytestmark = pytest.mark.django_db


@pytest.fixture
def direct_pool(db):
    return HostPool.objects.create(name="personal-direct", pool_type="personal",
                                   personal_assignment=PersonalAssignment.DIRECT)


def placed_host(result) -> SessionHost:
    assert result.ok, result
    return Connection.objects.get(pk=result.connection_id).session_host


def test_it_uses_the_users_assigned_host(personal_pool, member):
    build.host(personal_pool, "a-free")
    mine = build.host(personal_pool, "z-mine", assigned_user=member)

    result = place_connection(build.connection(member, personal_pool))

    assert placed_host(result) == mine
    assert result.route == Route.PERSONAL_HOST


def test_the_assigned_host_takes_the_user_whatever_the_pools_session_limit(personal_pool, member):
    mine = build.host(personal_pool, "mine", assigned_user=member)
    build.session(mine, member, state=UserSessionState.DISCONNECTED)
    build.sessions(mine, 2)  # e.g. an admin's sessions; personal_pool's limit is 1

    assert placed_host(place_connection(build.connection(member, personal_pool))) == mine


def test_automatic_assignment_claims_the_first_free_host_by_name(personal_pool, member):
    build.host(personal_pool, "p-b")
    build.host(personal_pool, "p-a")

    result = place_connection(build.connection(member, personal_pool))

    host = placed_host(result)
    assert host.name == "p-a"
    assert host.assigned_user == member
    assert result.route == Route.PERSONAL_ASSIGNMENT


def test_automatic_assignment_skips_taken_unhealthy_and_drained_hosts(personal_pool, member, outsider):
    build.host(personal_pool, "a-taken", assigned_user=outsider)
    build.host(personal_pool, "b-unavailable", status=SessionHostStatus.UNAVAILABLE)
    build.host(personal_pool, "c-drained", drained=True)
    build.host(personal_pool, "d-free")

    assert placed_host(place_connection(build.connection(member, personal_pool))).name == "d-free"


def test_an_automatically_assigned_user_comes_back_to_the_same_host(personal_pool, member):
    build.host(personal_pool, "p1")
    build.host(personal_pool, "p2")
    first = build.connection(member, personal_pool)
    host = placed_host(place_connection(first))
    Connection.objects.filter(pk=first.pk).update(state=ConnectionState.ENDED)

    again = place_connection(build.connection(member, personal_pool))

    assert placed_host(again) == host
    assert again.route == Route.PERSONAL_HOST
    assert SessionHost.objects.filter(assigned_user=member).count() == 1


def test_the_same_user_connecting_twice_gets_one_host(personal_pool, member):
    build.host(personal_pool, "p1")
    build.host(personal_pool, "p2")

    first = place_connection(build.connection(member, personal_pool))
    second = place_connection(build.connection(member, personal_pool))

    assert first.session_host_id == second.session_host_id
    assert SessionHost.objects.filter(assigned_user=member).count() == 1


def test_direct_assignment_without_a_host_fails_with_no_personal_desktop_assigned(direct_pool, member):
    free = build.host(direct_pool, "p1")

    result = place_connection(build.connection(member, direct_pool))

    assert result.error_code == ErrorCode.ConnectionFailedNoPersonalDesktopAssigned
    assert "uses direct assignment" in result.error_message
    free.refresh_from_db()
    assert free.assigned_user is None


def test_direct_assignment_uses_the_host_an_admin_assigned(direct_pool, member):
    mine = build.host(direct_pool, "p1", assigned_user=member)

    assert placed_host(place_connection(build.connection(member, direct_pool))) == mine


def test_no_free_host_fails_with_no_personal_desktop_free(personal_pool, member, outsider):
    build.host(personal_pool, "taken", assigned_user=outsider)
    build.host(personal_pool, "broken", status=SessionHostStatus.NEEDS_ASSISTANCE)

    result = place_connection(build.connection(member, personal_pool))

    assert result.error_code == ErrorCode.ConnectionFailedNoPersonalDesktopFree
    assert "2 hosts, 1 unassigned" in result.error_message


@pytest.mark.parametrize(
    ("status", "drained", "condition"),
    [
        (SessionHostStatus.AVAILABLE, True, "in drain mode"),
        (SessionHostStatus.UNAVAILABLE, False, "Unavailable"),
        (SessionHostStatus.SHUTDOWN, True, "Shutdown and in drain mode"),
    ],
)
def test_an_assigned_host_that_cannot_take_a_new_session_fails_with_personal_desktop_failed(
    personal_pool, member, status, drained, condition
):
    build.host(personal_pool, "mine", assigned_user=member, status=status, drained=drained)
    build.host(personal_pool, "spare")

    result = place_connection(build.connection(member, personal_pool))

    assert result.error_code == ErrorCode.ConnectionFailedPersonalDesktopFailed
    assert f"Assigned host mine is {condition}." in result.error_message
    assert SessionHost.objects.filter(assigned_user=member).count() == 1  # no second host handed out


def test_an_existing_session_on_a_drained_personal_host_is_reconnected(personal_pool, member):
    mine = build.host(personal_pool, "mine", assigned_user=member, drained=True)
    build.session(mine, member, state=UserSessionState.DISCONNECTED)

    result = place_connection(build.connection(member, personal_pool))

    assert placed_host(result) == mine
    assert result.route == Route.EXISTING_SESSION


def test_a_session_on_a_host_now_assigned_to_someone_else_is_not_followed(personal_pool, member, outsider):
    theirs = build.host(personal_pool, "theirs", assigned_user=outsider)
    build.session(theirs, member, state=UserSessionState.DISCONNECTED)
    mine = build.host(personal_pool, "mine", assigned_user=member)

    assert placed_host(place_connection(build.connection(member, personal_pool))) == mine
