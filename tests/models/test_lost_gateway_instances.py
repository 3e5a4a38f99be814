"""A gateway instance that stops refreshing its row is taken for dead once another instance has refreshed its own
without a gap for WVD_GATEWAY_INSTANCE_MISSED_HEARTBEATS heartbeats since: the periodic sweep
(broker.tasks.sweep_lost_gateway_instances, on beat's schedule and the embedded default's in-process timers) ends
its open connections with ConnectionBrokenGatewayInstanceLost. A database outage, where every row falls behind
together and the instances come back one after the other, ends nothing."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from broker.choices import ConnectionState, EndReason
from broker.gateways import sweep_lost_instances, touch_instance
from broker.models import Connection, GatewayInstance, SessionHost
from broker.tasks import sweep_lost_gateway_instances
from wire.errors import ERRORS, ErrorCode

pytestmark = pytest.mark.django_db

LOST = ErrorCode.ConnectionBrokenGatewayInstanceLost


@pytest.fixture
def pool(pooled_pool):
    return pooled_pool  # tests/conftest.py's


@pytest.fixture
def host(pool):
    return SessionHost.objects.create(host_pool=pool, name="host-g", status="available")


def instance(name: str, seen_ago: timedelta, refreshing_for: timedelta | None = None) -> GatewayInstance:
    """An instance last seen ``seen_ago``, whose refreshes ran unbroken for ``refreshing_for`` before that
    (by default long enough to vouch for the database)."""
    last_seen = timezone.now() - seen_ago
    return GatewayInstance.objects.create(name=name, public_host="127.0.0.1", public_port=8443, last_seen_at=last_seen,
                                          seen_since=last_seen - (refreshing_for or lost_after() * 10))


def relaying(member, pool, host, gateway: GatewayInstance) -> Connection:
    connection = Connection.objects.admit(user=member, host_pool=pool, gateway_instance=gateway)
    Connection.objects.filter(pk=connection.pk).reserve(host)
    Connection.objects.filter(pk=connection.pk).relay_started()
    return connection


def one(connection: Connection) -> Connection:
    return Connection.objects.get(pk=connection.pk)


def lost_after() -> timedelta:
    return settings.GATEWAY_INSTANCE_LOST_AFTER


def test_lost_after_is_the_configured_multiple_of_the_heartbeat():
    assert lost_after() == timedelta(
        seconds=settings.GATEWAY_INSTANCE_HEARTBEAT * settings.GATEWAY_INSTANCE_MISSED_HEARTBEATS)


def test_a_lost_instance_s_open_connections_fail_with_a_documented_code(member, pool, host):
    dead = instance("gw-dead", lost_after() + timedelta(seconds=5))
    instance("gw-alive", timedelta(0))
    live = relaying(member, pool, host, dead)
    waiting = Connection.objects.admit(user=member, host_pool=pool, gateway_instance=dead)

    assert sweep_lost_instances() == {"gw-dead": 2}

    for row in (one(live), one(waiting)):
        assert (row.state, row.error_code, row.end_reason) == (ConnectionState.FAILED, LOST, EndReason.ERROR)
        assert row.ended_at is not None
        assert "gw-dead" in row.error_message and "last seen" in row.error_message
    assert LOST in ERRORS


def test_a_live_instance_keeps_its_connections(member, pool, host):
    fresh = instance("gw-live", lost_after() - timedelta(seconds=2))
    live = relaying(member, pool, host, fresh)

    assert sweep_lost_instances() == {}
    assert one(live).state == ConnectionState.CONNECTED and one(live).ended_at is None


def test_an_instance_that_refreshed_its_row_is_no_longer_lost(member, pool, host):
    late = instance("gw-late", lost_after() + timedelta(seconds=5))
    instance("gw-alive", timedelta(0))
    live = relaying(member, pool, host, late)
    touch_instance("gw-late")

    assert sweep_lost_instances() == {}
    assert one(live).state == ConnectionState.CONNECTED


def test_ended_connections_keep_their_end_and_a_second_sweep_is_quiet(member, pool, host):
    dead = instance("gw-gone", lost_after() * 2)
    instance("gw-alive", timedelta(0))
    finished = relaying(member, pool, host, dead)
    Connection.objects.filter(pk=finished.pk).finish(EndReason.CLIENT_CLOSED, 10, 20)
    open_one = relaying(member, pool, host, dead)

    assert sweep_lost_instances() == {"gw-gone": 1}
    assert sweep_lost_instances() == {}
    assert (one(finished).state, one(finished).end_reason) == (ConnectionState.ENDED, EndReason.CLIENT_CLOSED)
    assert one(open_one).error_code == LOST


def test_only_the_lost_instance_is_swept(member, pool, host):
    dead = instance("gw-1", lost_after() + timedelta(seconds=1))
    survivor = instance("gw-2", timedelta(0))
    on_dead, on_survivor = relaying(member, pool, host, dead), relaying(member, pool, host, survivor)

    assert sweep_lost_gateway_instances() == {"gw-1": 1}  # the task beat runs

    assert one(on_dead).state == ConnectionState.FAILED
    assert one(on_survivor).state == ConnectionState.CONNECTED


def test_rows_late_together_are_a_database_outage_not_lost_instances(member, pool, host):
    # Every instance missed its refreshes by the same margin: the database was away, not the instances.
    first = instance("gw-1", lost_after() * 3)
    second = instance("gw-2", lost_after() * 3 - timedelta(seconds=1))
    on_first, on_second = relaying(member, pool, host, first), relaying(member, pool, host, second)

    assert sweep_lost_instances() == {}
    assert one(on_first).ended_at is None and one(on_second).ended_at is None


def test_an_instance_slow_to_come_back_after_an_outage_has_its_time(member, pool, host):
    # The database is back; gw-2 refreshed its row first, gw-1 has not yet (its thread is still reconnecting).
    slow = instance("gw-1", lost_after() * 3)
    instance("gw-2", lost_after() * 3 - timedelta(seconds=1))
    on_slow = relaying(member, pool, host, slow)
    touch_instance("gw-2")  # after a gap: its unbroken run of refreshes starts now

    assert sweep_lost_instances() == {}
    touch_instance("gw-1")
    GatewayInstance.objects.filter(name="gw-2").update(seen_since=timezone.now() - lost_after() * 2)
    assert sweep_lost_instances() == {}
    assert one(on_slow).ended_at is None


def test_one_that_stays_behind_while_another_refreshes_for_the_whole_span_is_lost(member, pool, host):
    behind = instance("gw-1", lost_after() * 3)
    instance("gw-2", timedelta(0), refreshing_for=lost_after() * 2)  # back from the outage for two spans
    on_behind = relaying(member, pool, host, behind)

    assert sweep_lost_instances() == {"gw-1": 1}
    assert one(on_behind).error_code == LOST


def test_refreshing_starts_a_new_unbroken_run_only_after_a_gap():
    instance("gw-steady", timedelta(seconds=0), refreshing_for=lost_after() * 4)
    instance("gw-back", lost_after() + timedelta(seconds=1))
    steady_since = GatewayInstance.objects.get(name="gw-steady").seen_since

    touch_instance("gw-steady")
    touch_instance("gw-back")

    steady, back = GatewayInstance.objects.get(name="gw-steady"), GatewayInstance.objects.get(name="gw-back")
    assert steady.seen_since == steady_since
    assert back.seen_since == back.last_seen_at


def test_a_lone_instance_is_never_taken_for_lost(member, pool, host):
    alone = instance("gw-alone", lost_after() * 5)
    on_alone = relaying(member, pool, host, alone)

    assert sweep_lost_instances() == {}
    assert one(on_alone).ended_at is None


def test_the_sweep_is_on_the_beat_schedule_once_per_heartbeat():
    entry = settings.CELERY_BEAT_SCHEDULE["broker-sweep-lost-gateway-instances"]
    assert entry["task"] == sweep_lost_gateway_instances.name
    assert entry["schedule"] == timedelta(seconds=settings.GATEWAY_INSTANCE_HEARTBEAT)
