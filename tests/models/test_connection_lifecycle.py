"""A Connection's lifecycle: each transition, the one rule for "still open", and the races between
writers (two enders, an end before the start). Every write to a Connection row goes through these."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.utils import timezone

from broker import verdicts
from broker.choices import ConnectionState, EndReason
from broker.models import Connection, GatewayInstance, HostPool, SessionHost, failure_message
from broker.tasks import purge_old_connections
from wire.errors import ErrorCode, describe

pytestmark = pytest.mark.django_db

E = ErrorCode


@pytest.fixture
def pool(db):
    return HostPool.objects.create(name="pool-l", max_session_limit=5)


@pytest.fixture
def host(pool):
    return SessionHost.objects.create(host_pool=pool, name="host-l", status="available")


@pytest.fixture
def instance(db):
    return GatewayInstance.objects.create(name="gw-1", public_host="127.0.0.1", public_port=8443)


@pytest.fixture
def started(member, pool, instance) -> Connection:
    return Connection.objects.admit(user=member, username="member", host_pool=pool, gateway_instance=instance)


def one(connection: Connection) -> Connection:
    return Connection.objects.get(pk=connection.pk)


def this(connection: Connection):
    return Connection.objects.filter(pk=connection.pk)


@pytest.fixture
def announced(monkeypatch) -> list[tuple[str, int | None]]:
    """The verdict announcements made (broker/verdicts.py), in order."""
    calls: list[tuple[str, int | None]] = []
    monkeypatch.setattr(verdicts, "announce", lambda activity, instance: calls.append((activity, instance)))
    return calls


class TestAdmission:
    def test_an_admitted_connection_is_started_with_one_clock_reading(self, started):
        assert started.state == ConnectionState.STARTED and started.ended_at is None
        assert started.ticket_accepted_at == started.created_at

    def test_a_refusal_is_recorded_failed_with_its_own_sentence(self, instance):
        refused = Connection.objects.refuse(E.ConnectionFailedTicketExpired, "The ticket has expired.",
                                            gateway_instance=instance, client_address="192.0.2.7")
        assert refused.state == ConnectionState.FAILED and refused.error_code == E.ConnectionFailedTicketExpired
        assert refused.error_message == "The ticket has expired."
        assert refused.ended_at == refused.created_at and refused.end_reason == EndReason.ERROR
        assert refused.ticket_accepted_at is None

    def test_a_refusal_without_a_sentence_says_what_the_code_documents(self):
        refused = Connection.objects.refuse(E.ConnectionFailedTicketInvalid, "")
        assert refused.error_message == describe(E.ConnectionFailedTicketInvalid).message

    def test_a_refusal_needs_a_documented_code(self):
        with pytest.raises(ValueError):
            Connection.objects.refuse("NotACode", "nope")


class TestSetup:
    def test_reserving_a_host_makes_it_connecting(self, started, host):
        assert this(started).reserve(host) == 1
        row = one(started)
        assert row.state == ConnectionState.CONNECTING and row.session_host == host and row.host_selected_at

    def test_only_a_started_connection_is_reserved(self, started, host):
        this(started).reserve(host)
        assert this(started).reserve(host) == 0  # placed already: a retry changes nothing

    def test_a_failed_connection_is_not_reserved(self, started, host):
        this(started).fail(E.ConnectionFailedClientDisconnect)
        assert this(started).reserve(host) == 0
        assert one(started).session_host is None

    def test_the_connect_order_and_the_hosts_arrival_are_recorded_once(self, started, host):
        this(started).reserve(host)
        assert this(started).host_notified() == 1
        first = one(started).host_notified_at
        assert this(started).host_notified() == 0 and one(started).host_notified_at == first
        assert this(started).host_connected() == 1 and this(started).host_connected() == 0

    def test_the_relay_start_makes_it_connected(self, started, host):
        this(started).reserve(host)
        assert this(started).relay_started() == 1
        row = one(started)
        assert row.state == ConnectionState.CONNECTED and row.relay_started_at is not None

    def test_the_client_name_is_recorded(self, started):
        this(started).record_client_name("x" * 300)
        assert one(started).client_name == "x" * 255

    def test_lock_says_whether_the_row_exists(self, started):
        assert this(started).lock() == 1
        assert Connection.objects.filter(pk=started.pk + 1000).lock() == 0
        assert one(started).state == ConnectionState.STARTED  # and changes nothing


class TestFailing:
    def test_failing_records_the_code_its_documented_message_and_the_detail(self, started):
        assert this(started).fail(E.ConnectionFailedNoHealthyRdshAvailable, "Host pool pool-l has no hosts.") == 1
        row = one(started)
        assert row.state == ConnectionState.FAILED and row.ended_at is not None
        assert row.error_code == E.ConnectionFailedNoHealthyRdshAvailable
        assert row.error_message == failure_message(E.ConnectionFailedNoHealthyRdshAvailable,
                                                    "Host pool pool-l has no hosts.")
        assert row.error_message.startswith(describe(E.ConnectionFailedNoHealthyRdshAvailable).message)
        assert row.end_reason == EndReason.ERROR

    def test_a_client_that_left_ends_it_as_the_clients_doing(self, started):
        this(started).fail(E.ConnectionFailedClientDisconnect)
        assert one(started).end_reason == EndReason.CLIENT_CLOSED

    def test_failing_needs_a_documented_code(self, started):
        with pytest.raises(ValueError):
            this(started).fail("SomethingWentWrong")
        assert one(started).state == ConnectionState.STARTED

    def test_a_connected_connection_can_fail_but_being_set_up_cannot_touch_it(self, started, host):
        this(started).reserve(host)
        this(started).relay_started()
        assert this(started).being_set_up().fail(E.ConnectionFailedReverseConnectTimeout) == 0
        assert one(started).state == ConnectionState.CONNECTED
        assert this(started).fail(E.InternalError) == 1

    def test_the_waiting_client_is_told_once_the_failure_is_committed(self, started, instance, announced,
                                                                      django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=False) as pending:
            this(started).fail(E.ConnectionFailedMaxSessionsReached)
            assert announced == []  # not before the commit: the waiter would read the old state
        for callback in pending:
            callback()
        assert announced == [(str(started.activity_id), instance.pk)]

    def test_nothing_is_announced_when_nothing_failed(self, started, announced, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            this(started).fail(E.InternalError)
        with django_capture_on_commit_callbacks(execute=True):
            assert this(started).fail(E.InternalError) == 0
        assert announced == [(str(started.activity_id), started.gateway_instance_id)]  # the first only


    def test_nobody_is_told_when_the_client_left_or_its_relay_already_runs(
            self, started, host, member, pool, instance, announced, django_capture_on_commit_callbacks):
        relaying = Connection.objects.admit(user=member, host_pool=pool, gateway_instance=instance)
        this(relaying).reserve(host)
        this(relaying).relay_started()
        with django_capture_on_commit_callbacks(execute=True):
            assert this(started).fail(E.ConnectionFailedClientDisconnect) == 1
            assert this(relaying).fail(E.InternalError) == 1
        assert announced == []


class TestTheEnds:
    def test_finishing_ends_it_with_who_ended_it_and_the_bytes(self, started, host):
        this(started).reserve(host)
        this(started).relay_started()
        assert this(started).finish(EndReason.HOST_CLOSED, 1200, 3400) == 1
        row = one(started)
        assert (row.state, row.end_reason) == (ConnectionState.ENDED, EndReason.HOST_CLOSED)
        assert (row.bytes_client_to_host, row.bytes_host_to_client) == (1200, 3400) and row.ended_at

    def test_an_end_before_the_start_is_recorded_and_the_late_start_changes_nothing(self, started, host):
        this(started).reserve(host)
        assert this(started).finish(EndReason.CLIENT_CLOSED, 10, 0) == 1  # a quick host: the end came first
        assert this(started).relay_started() == 0
        row = one(started)
        assert row.state == ConnectionState.ENDED and row.relay_started_at is None

    def test_a_failed_setup_keeps_its_error_and_gets_the_bytes_seen(self, started, host):
        this(started).reserve(host)
        this(started).fail(E.ConnectionFailedHostListenerUnreachable, "connection refused")
        assert this(started).finish(EndReason.HOST_CLOSED, 19, 0) == 0
        row = one(started)
        assert row.state == ConnectionState.FAILED and row.end_reason == EndReason.ERROR
        assert row.error_code == E.ConnectionFailedHostListenerUnreachable and row.bytes_client_to_host == 19

    def test_the_second_of_two_enders_changes_nothing(self, started, host):
        this(started).reserve(host)
        this(started).relay_started()
        assert this(started).finish(EndReason.CLIENT_CLOSED, 5, 6) == 1
        ended_at = one(started).ended_at
        assert this(started).fail(E.InternalError) == 0
        assert this(started).ended_with_instance() == 0
        row = one(started)
        assert (row.state, row.end_reason, row.ended_at) == (ConnectionState.ENDED, EndReason.CLIENT_CLOSED, ended_at)

    def test_a_failure_is_never_turned_into_an_end(self, started):
        this(started).fail(E.ConnectionFailedMaxSessionsReached)
        assert this(started).ended_with_instance() == 0
        assert this(started).finish(EndReason.CLIENT_CLOSED, 0, 0) == 0
        assert one(started).state == ConnectionState.FAILED

    def test_an_instance_that_went_away_ends_its_open_connections(self, member, pool, instance, host):
        setting_up = Connection.objects.admit(user=member, host_pool=pool, gateway_instance=instance)
        relaying = Connection.objects.admit(user=member, host_pool=pool, gateway_instance=instance)
        this(relaying).reserve(host)
        this(relaying).relay_started()
        failed = Connection.objects.refuse(E.ConnectionFailedTicketInvalid, "bad", gateway_instance=instance)

        assert Connection.objects.filter(gateway_instance=instance).ended_with_instance() == 2

        for row in (one(setting_up), one(relaying)):
            assert (row.state, row.end_reason) == (ConnectionState.ENDED, EndReason.GATEWAY_SHUTDOWN)
        assert one(failed).state == ConnectionState.FAILED


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif("sqlite" in db_connection.vendor, reason="needs a database whose writers wait for row locks")
def test_two_enders_racing_on_postgresql_leave_exactly_one_end(member, pool, host):
    started = Connection.objects.admit(user=member, host_pool=pool)
    this(started).reserve(host)
    this(started).relay_started()
    barrier, results = threading.Barrier(2), {}

    def finish() -> None:
        barrier.wait()
        results["finish"] = this(started).finish(EndReason.HOST_CLOSED, 1, 2)
        db_connection.close()

    def fail() -> None:
        barrier.wait()
        results["fail"] = this(started).fail(E.InternalError, "the gateway failed")
        db_connection.close()

    threads = [threading.Thread(target=finish), threading.Thread(target=fail)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results.values()) == [0, 1]
    row = one(started)
    assert row.state == (ConnectionState.ENDED if results["finish"] else ConnectionState.FAILED)


class TestRetention:
    def test_records_that_ended_before_the_retention_are_purged_and_open_ones_kept(self, member, pool, settings):
        settings.CONNECTION_RETENTION = timedelta(days=30)
        old_end = Connection.objects.refuse(E.ConnectionFailedTicketExpired, "expired")
        recent_end = Connection.objects.refuse(E.ConnectionFailedTicketExpired, "expired")
        old_open = Connection.objects.admit(user=member, host_pool=pool)
        Connection.objects.filter(pk__in=[old_end.pk, old_open.pk]).update(
            created_at=timezone.now() - timedelta(days=60))
        Connection.objects.filter(pk=old_end.pk).update(ended_at=timezone.now() - timedelta(days=31))

        assert purge_old_connections.apply().get() == 1

        assert set(Connection.objects.values_list("pk", flat=True)) == {recent_end.pk, old_open.pk}

    def test_purging_goes_in_batches(self, member):
        for _ in range(5):
            Connection.objects.refuse(E.ConnectionFailedTicketExpired, "expired")
        assert Connection.objects.purge_ended_before(timezone.now() + timedelta(seconds=1), batch=2) == 5
        assert not Connection.objects.exists()
