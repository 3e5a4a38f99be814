"""Reservations: a chosen host that does not arrive in time, and a client that leaves first."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from broker.choices import ConnectionState, EndReason
from broker.models import Connection, HostPool
from broker.placement import expire_stale_reservations, place_connection, release_reservation
from tests.placement import build
from wire.errors import ErrorCode, describe

pytestmark = pytest.mark.django_db


@pytest.fixture
def single_pool(db):
    return HostPool.objects.create(name="single", max_session_limit=1)


def test_a_reservation_older_than_the_timeout_fails_with_reverse_connect_timeout(single_pool, member):
    stale = build.reservation(build.host(single_pool, "h1"), member, seconds_ago=31)

    expired = expire_stale_reservations()

    stale.refresh_from_db()
    assert expired == [stale.pk]
    assert stale.state == ConnectionState.FAILED
    assert stale.error_code == ErrorCode.ConnectionFailedReverseConnectTimeout
    assert stale.error_message.startswith(describe(ErrorCode.ConnectionFailedReverseConnectTimeout).message)
    assert stale.end_reason == EndReason.ERROR and stale.ended_at is not None
    assert stale.session_host is not None  # kept for the diagnostics


def test_fresh_reservations_and_hosts_that_arrived_are_left_alone(single_pool, member):
    h1 = build.host(single_pool, "h1")
    fresh = build.reservation(h1, member, seconds_ago=5)
    arrived = build.reservation(h1, member, seconds_ago=600)
    Connection.objects.filter(pk=arrived.pk).update(host_connected_at=timezone.now())
    connected = build.reservation(h1, member, seconds_ago=600, state=ConnectionState.CONNECTED)

    assert expire_stale_reservations() == []
    for conn in (fresh, arrived, connected):
        old_state = conn.state
        conn.refresh_from_db()
        assert conn.state == old_state and conn.error_code == ""


def test_an_expired_reservation_gives_its_slot_to_the_next_user(single_pool, member, outsider):
    build.host(single_pool, "h1")
    first = place_connection(build.connection(member, single_pool))
    assert place_connection(build.connection(outsider, single_pool)).error_code == (
        ErrorCode.ConnectionFailedMaxSessionsReached
    )
    Connection.objects.filter(pk=first.connection_id).update(host_selected_at=timezone.now() - timedelta(minutes=5))

    assert expire_stale_reservations() == [first.connection_id]
    assert place_connection(build.connection(outsider, single_pool)).ok


def test_the_timeout_comes_from_settings(single_pool, member, settings):
    settings.CONNECTION_RESERVATION_TIMEOUT = timedelta(minutes=10)
    waiting = build.reservation(build.host(single_pool, "h1"), member, seconds_ago=300)

    assert expire_stale_reservations() == []
    settings.CONNECTION_RESERVATION_TIMEOUT = timedelta(minutes=4)
    assert expire_stale_reservations() == [waiting.pk]


def test_a_malformed_timeout_setting_is_refused(settings):
    settings.CONNECTION_RESERVATION_TIMEOUT = 30
    with pytest.raises(ImproperlyConfigured, match="CONNECTION_RESERVATION_TIMEOUT"):
        expire_stale_reservations()


def test_a_client_that_leaves_before_its_host_arrives_frees_the_slot(single_pool, member, outsider):
    host = build.host(single_pool, "h1")
    gone = place_connection(build.connection(member, single_pool))

    assert release_reservation(gone.connection_id) is True

    conn = Connection.objects.get(pk=gone.connection_id)
    assert conn.state == ConnectionState.FAILED
    assert conn.error_code == ErrorCode.ConnectionFailedClientDisconnect
    assert conn.end_reason == EndReason.CLIENT_CLOSED
    assert place_connection(build.connection(outsider, single_pool)).session_host_id == host.pk


def test_a_reservation_can_be_released_with_another_documented_code(single_pool, member):
    conn = build.reservation(build.host(single_pool, "h1"), member)

    assert release_reservation(conn, ErrorCode.ConnectionFailedAgentDisconnected, "no channel to h1")

    conn.refresh_from_db()
    assert conn.error_code == ErrorCode.ConnectionFailedAgentDisconnected
    assert conn.end_reason == EndReason.ERROR
    assert conn.error_message.endswith("(no channel to h1)")


def test_releasing_a_connection_that_is_no_longer_being_set_up_changes_nothing(single_pool, member):
    connected = build.reservation(build.host(single_pool, "h1"), member, state=ConnectionState.CONNECTED)

    assert release_reservation(connected) is False
    connected.refresh_from_db()
    assert connected.state == ConnectionState.CONNECTED and connected.error_code == ""


def test_release_refuses_a_code_that_is_not_in_the_table(single_pool, member):
    conn = build.reservation(build.host(single_pool, "h1"), member)
    with pytest.raises(ValueError):
        release_reservation(conn, "SomethingWentWrong")
    conn.refresh_from_db()
    assert conn.state == ConnectionState.CONNECTING
