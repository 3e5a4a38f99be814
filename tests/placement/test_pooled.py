"""Placement in pooled host pools: reconnect first, then breadth-first or depth-first load balancing."""
from __future__ import annotations

import pytest

from broker.choices import ConnectionState, EndReason, LoadBalancer, SessionHostStatus, UserSessionState
from broker.models import Connection, HostPool
from broker.placement import Route, place_connection, release_reservation
from tests.placement import build
from wire.errors import ErrorCode, describe

pytestmark = pytest.mark.django_db


@pytest.fixture
def breadth_pool(db):
    return HostPool.objects.create(name="breadth", max_session_limit=3, load_balancer=LoadBalancer.BREADTH_FIRST)


@pytest.fixture
def depth_pool(db):
    return HostPool.objects.create(name="depth", max_session_limit=3, load_balancer=LoadBalancer.DEPTH_FIRST)


def placed_host_name(result) -> str:
    assert result.ok, result
    return Connection.objects.get(pk=result.connection_id).session_host.name


def test_breadth_first_picks_the_host_with_the_fewest_sessions(breadth_pool, member):
    build.sessions(build.host(breadth_pool, "h1"), 2)
    build.sessions(build.host(breadth_pool, "h2"), 1)
    build.sessions(build.host(breadth_pool, "h3"), 2)

    result = place_connection(build.connection(member, breadth_pool))

    assert placed_host_name(result) == "h2"
    assert result.route == Route.LOAD_BALANCED


def test_breadth_first_breaks_ties_by_host_name_not_creation_order(breadth_pool, member):
    build.host(breadth_pool, "h-b")
    build.host(breadth_pool, "H-a")

    assert placed_host_name(place_connection(build.connection(member, breadth_pool))) == "H-a"


def test_breadth_first_spreads_consecutive_users_over_the_hosts(breadth_pool):
    build.host(breadth_pool, "h1")
    build.host(breadth_pool, "h2")
    names = [placed_host_name(place_connection(build.connection(build.user(f"u{i}"), breadth_pool)))
             for i in range(4)]
    assert names == ["h1", "h2", "h1", "h2"]


def test_depth_first_fills_the_busiest_host_below_the_limit(depth_pool, member):
    build.sessions(build.host(depth_pool, "h1"), 1)
    build.sessions(build.host(depth_pool, "h2"), 2)
    build.sessions(build.host(depth_pool, "h3"), 3)  # full

    assert placed_host_name(place_connection(build.connection(member, depth_pool))) == "h2"


def test_depth_first_fills_one_host_before_the_next(depth_pool):
    build.host(depth_pool, "h2")
    build.host(depth_pool, "h1")
    names = [placed_host_name(place_connection(build.connection(build.user(f"u{i}"), depth_pool)))
             for i in range(5)]
    assert names == ["h1", "h1", "h1", "h2", "h2"]


def test_it_skips_drained_unhealthy_and_full_hosts(breadth_pool, member):
    build.host(breadth_pool, "a-drained", drained=True)
    build.host(breadth_pool, "b-unavailable", status=SessionHostStatus.UNAVAILABLE)
    build.host(breadth_pool, "c-shutdown", status=SessionHostStatus.SHUTDOWN)
    build.host(breadth_pool, "d-needs-assistance", status=SessionHostStatus.NEEDS_ASSISTANCE)
    build.host(breadth_pool, "e-upgrading", status=SessionHostStatus.UPGRADING)
    build.sessions(build.host(breadth_pool, "f-full"), 3)
    build.sessions(build.host(breadth_pool, "g-busy"), 2)

    assert placed_host_name(place_connection(build.connection(member, breadth_pool))) == "g-busy"


def test_the_chosen_host_is_reserved_on_the_connection(breadth_pool, member):
    chosen = build.host(breadth_pool, "h1")
    conn = build.connection(member, breadth_pool)

    result = place_connection(conn)

    conn.refresh_from_db()
    assert result.session_host_id == chosen.pk
    assert conn.state == ConnectionState.CONNECTING
    assert conn.session_host == chosen
    assert conn.host_selected_at is not None
    assert conn.ended_at is None and conn.error_code == ""


def test_reservations_of_other_users_count_towards_a_hosts_load(breadth_pool, member):
    build.sessions(build.host(breadth_pool, "h1"), 1)
    reserved = build.host(breadth_pool, "h2")
    build.reservation(reserved, build.user("other-a"))
    build.reservation(reserved, build.user("other-b"), state=ConnectionState.CONNECTED)

    assert placed_host_name(place_connection(build.connection(member, breadth_pool))) == "h1"


def test_a_users_session_and_their_connection_to_it_count_once(member, outsider):
    pool = HostPool.objects.create(name="tight", max_session_limit=2)
    only = build.host(pool, "h1")
    someone = build.user("someone")
    build.session(only, someone)
    build.reservation(only, someone, state=ConnectionState.CONNECTED)

    assert placed_host_name(place_connection(build.connection(member, pool))) == "h1"
    # Now two sessions' worth (someone + member's reservation): full.
    assert place_connection(build.connection(outsider, pool)).error_code == ErrorCode.ConnectionFailedMaxSessionsReached


def test_a_stale_reservation_no_longer_holds_a_slot(member):
    pool = HostPool.objects.create(name="single", max_session_limit=1)
    only = build.host(pool, "h1")
    build.reservation(only, build.user("gone"), seconds_ago=3600)

    assert placed_host_name(place_connection(build.connection(member, pool))) == "h1"


def test_an_ended_connection_no_longer_holds_a_slot(member):
    pool = HostPool.objects.create(name="single", max_session_limit=1)
    only = build.host(pool, "h1")
    old = build.reservation(only, build.user("earlier"))
    assert release_reservation(old)

    assert placed_host_name(place_connection(build.connection(member, pool))) == "h1"


def test_a_pool_without_hosts_fails_with_no_healthy_rdsh_available(breadth_pool, member):
    conn = build.connection(member, breadth_pool)

    result = place_connection(conn)

    conn.refresh_from_db()
    assert not result.ok
    assert result.error_code == conn.error_code == ErrorCode.ConnectionFailedNoHealthyRdshAvailable
    assert conn.state == ConnectionState.FAILED
    assert conn.end_reason == EndReason.ERROR and conn.ended_at is not None
    assert conn.session_host is None
    assert conn.error_message.startswith(describe(ErrorCode.ConnectionFailedNoHealthyRdshAvailable).message)
    assert "has no session hosts" in conn.error_message


def test_only_drained_or_unhealthy_hosts_fail_with_no_healthy_rdsh_available(breadth_pool, member):
    build.host(breadth_pool, "h1", drained=True)
    build.host(breadth_pool, "h2", status=SessionHostStatus.UNAVAILABLE)

    result = place_connection(build.connection(member, breadth_pool))

    assert result.error_code == ErrorCode.ConnectionFailedNoHealthyRdshAvailable
    assert "2 hosts: 1 Available, 1 Unavailable; 1 in drain mode" in result.error_message


def test_all_hosts_full_fails_with_max_sessions_reached(breadth_pool, member):
    build.sessions(build.host(breadth_pool, "h1"), 3)
    build.sessions(build.host(breadth_pool, "h2"), 2)
    build.reservation(breadth_pool.session_hosts.get(name="h2"), build.user("pending"))
    build.host(breadth_pool, "h3", drained=True)

    result = place_connection(build.connection(member, breadth_pool))

    assert result.error_code == ErrorCode.ConnectionFailedMaxSessionsReached
    assert "2 at the limit of 3 sessions" in result.error_message


def test_an_existing_disconnected_session_wins_even_on_a_drained_host(breadth_pool, member):
    drained = build.host(breadth_pool, "h1", drained=True)
    build.host(breadth_pool, "h2")
    build.session(drained, member, state=UserSessionState.DISCONNECTED)

    result = place_connection(build.connection(member, breadth_pool))

    assert placed_host_name(result) == "h1"
    assert result.route == Route.EXISTING_SESSION


def test_an_existing_session_wins_even_on_a_full_host(breadth_pool, member):
    full = build.host(breadth_pool, "h1")
    build.session(full, member)
    build.sessions(full, 2)
    build.host(breadth_pool, "h2")

    assert placed_host_name(place_connection(build.connection(member, breadth_pool))) == "h1"


def test_an_existing_session_is_found_by_username_when_the_report_named_no_account(breadth_pool, member):
    build.host(breadth_pool, "h1")
    theirs = build.host(breadth_pool, "h2")
    unmatched = build.session(theirs, member)
    unmatched.user = None
    unmatched.username = member.get_username().upper()
    unmatched.save()

    assert placed_host_name(place_connection(build.connection(member, breadth_pool))) == "h2"


def test_the_active_session_wins_over_an_older_disconnected_one(breadth_pool, member):
    build.session(build.host(breadth_pool, "h1"), member, state=UserSessionState.DISCONNECTED, minutes_ago=5)
    build.session(build.host(breadth_pool, "h2"), member, minutes_ago=60)

    assert placed_host_name(place_connection(build.connection(member, breadth_pool))) == "h2"


@pytest.mark.parametrize("status", [SessionHostStatus.UNAVAILABLE, SessionHostStatus.SHUTDOWN])
def test_a_session_on_an_unavailable_or_shut_down_host_is_not_followed(breadth_pool, member, status):
    build.session(build.host(breadth_pool, "h1", status=status), member)
    build.host(breadth_pool, "h2")

    result = place_connection(build.connection(member, breadth_pool))

    assert placed_host_name(result) == "h2"
    assert result.route == Route.LOAD_BALANCED


def test_a_session_in_another_pool_is_not_followed(breadth_pool, member):
    elsewhere = HostPool.objects.create(name="elsewhere")
    build.session(build.host(elsewhere, "x1"), member)
    build.sessions(build.host(breadth_pool, "h1"), 1)
    build.host(breadth_pool, "h2")

    assert placed_host_name(place_connection(build.connection(member, breadth_pool))) == "h2"


def test_the_same_user_connecting_twice_lands_on_one_host(breadth_pool, member):
    build.host(breadth_pool, "h1")
    build.host(breadth_pool, "h2")

    first = place_connection(build.connection(member, breadth_pool))
    second = place_connection(build.connection(member, breadth_pool))

    assert second.session_host_id == first.session_host_id
    assert second.route == Route.EXISTING_CONNECTION


def test_placing_a_placed_connection_again_returns_its_host_and_changes_nothing(breadth_pool, member):
    build.host(breadth_pool, "h1")
    conn = build.connection(member, breadth_pool)
    first = place_connection(conn)
    conn.refresh_from_db()
    selected_at = conn.host_selected_at
    build.host(breadth_pool, "a-new-emptier-host")

    again = place_connection(conn.pk)

    conn.refresh_from_db()
    assert again.session_host_id == first.session_host_id
    assert again.route == Route.ALREADY_PLACED
    assert conn.host_selected_at == selected_at


def test_a_connection_released_before_placement_is_not_placed(breadth_pool, member):
    build.host(breadth_pool, "h1")
    conn = build.connection(member, breadth_pool)
    release_reservation(conn)

    result = place_connection(conn)

    conn.refresh_from_db()
    assert result.error_code == ErrorCode.ConnectionFailedClientDisconnect
    assert conn.session_host is None


def test_a_connection_whose_user_was_deleted_fails_with_user_not_authorized(breadth_pool, member):
    build.host(breadth_pool, "h1")
    conn = build.connection(member, breadth_pool)
    member.delete()

    assert place_connection(conn).error_code == ErrorCode.ConnectionFailedUserNotAuthorized
    conn.refresh_from_db()
    assert conn.state == ConnectionState.FAILED


def test_a_disabled_user_fails_with_user_not_authorized(breadth_pool, member):
    build.host(breadth_pool, "h1")
    member.is_active = False
    member.save()

    assert place_connection(build.connection(member, breadth_pool)).error_code == (
        ErrorCode.ConnectionFailedUserNotAuthorized
    )


def test_a_connection_whose_pool_is_gone_fails_with_resource_not_found(member):
    conn = build.connection(member, None)

    assert place_connection(conn).error_code == ErrorCode.ConnectionFailedResourceNotFound


def test_a_missing_connection_is_reported_not_raised():
    result = place_connection(987654)
    assert not result.ok
    assert result.error_code == ErrorCode.InternalError
