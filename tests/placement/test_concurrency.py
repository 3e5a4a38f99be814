"""Concurrent placements, each in its own thread with its own database connection.

On PostgreSQL these prove the row locks: without ``select_for_update`` on the pool's hosts, two
placements read the same loads and overfill a host. SQLite serialises writers on its database lock,
so there the same tests check that placements queue instead of failing with "database is locked".
"""
from __future__ import annotations

import sqlite3
import threading
from collections import Counter

import pytest
from django.db import connection as db_connection

from broker.choices import ConnectionState, LoadBalancer
from broker.models import Connection, HostPool, SessionHost
from broker.placement import PlacementResult, place_connection
from tests.placement import build
from wire.errors import ErrorCode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("database_file_on_sqlite")]


@pytest.fixture
def database_file_on_sqlite(tmp_path):
    """On SQLite, run the test on a file copy of the test database, as the embedded default runs.

    The test database is in memory in shared-cache mode, where a second writer gets "database table
    is locked" at once instead of waiting on the busy timeout as writers on a database file do; that
    would test the test set-up, not placement. PostgreSQL needs nothing.
    """
    if db_connection.vendor != "sqlite":
        yield
        return
    settings_dict = db_connection.settings_dict  # shared with every thread's new connection
    memory_name = settings_dict["NAME"]
    # The in-memory database lives while a connection to it is open: hold one across the swap.
    keeper = sqlite3.connect(memory_name, uri=True)
    copy = sqlite3.connect(tmp_path / "placement.sqlite3")
    keeper.backup(copy)
    copy.close()
    settings_dict["NAME"] = str(tmp_path / "placement.sqlite3")
    db_connection.close()
    try:
        yield
    finally:
        db_connection.close()
        settings_dict["NAME"] = memory_name
        db_connection.ensure_connection()
        keeper.close()


def place_all_at_once(connections: list[Connection]) -> list[PlacementResult]:
    """Place every connection from its own thread, all released together by a barrier."""
    barrier = threading.Barrier(len(connections))
    results: list[PlacementResult | None] = [None] * len(connections)
    errors: list[BaseException] = []

    def worker(index: int, pk: int) -> None:
        try:
            barrier.wait(timeout=60)
            results[index] = place_connection(pk)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            db_connection.close()  # this thread's own connection

    threads = [threading.Thread(target=worker, args=(i, c.pk)) for i, c in enumerate(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


@pytest.mark.parametrize("balancer", [LoadBalancer.BREADTH_FIRST, LoadBalancer.DEPTH_FIRST])
def test_concurrent_placements_never_exceed_the_session_limit(balancer):
    limit, hosts, users = 2, 3, 10
    pool = HostPool.objects.create(name="busy", max_session_limit=limit, load_balancer=balancer)
    for n in range(hosts):
        build.host(pool, f"h{n}")
    connections = [build.connection(build.user(f"u{n}"), pool) for n in range(users)]

    results = place_all_at_once(connections)

    per_host = Counter(
        Connection.objects.filter(state=ConnectionState.CONNECTING).values_list("session_host__name", flat=True)
    )
    assert per_host == {f"h{n}": limit for n in range(hosts)}
    failures = [r for r in results if not r.ok]
    assert len(failures) == users - limit * hosts
    assert {r.error_code for r in failures} == {ErrorCode.ConnectionFailedMaxSessionsReached}
    assert Connection.objects.filter(state=ConnectionState.FAILED).count() == len(failures)


def test_concurrent_first_connects_of_different_users_never_share_a_personal_host():
    pool = HostPool.objects.create(name="desks", pool_type="personal")
    for n in range(4):
        build.host(pool, f"p{n}")
    people = [build.user(f"u{n}") for n in range(5)]

    results = place_all_at_once([build.connection(person, pool) for person in people])

    placed = [r for r in results if r.ok]
    assert len(placed) == 4
    assert len({r.session_host_id for r in placed}) == 4
    for result in placed:
        conn = Connection.objects.select_related("session_host").get(pk=result.connection_id)
        assert conn.session_host.assigned_user_id == conn.user_id
    assert [r.error_code for r in results if not r.ok] == [ErrorCode.ConnectionFailedNoPersonalDesktopFree]
    assert SessionHost.objects.filter(assigned_user__isnull=False).count() == 4


def test_the_same_user_connecting_twice_at_once_gets_one_personal_host():
    pool = HostPool.objects.create(name="desks", pool_type="personal")
    for n in range(3):
        build.host(pool, f"p{n}")
    person = build.user("twice")

    results = place_all_at_once([build.connection(person, pool) for _ in range(3)])

    assert all(r.ok for r in results)
    assert len({r.session_host_id for r in results}) == 1
    assert SessionHost.objects.filter(assigned_user=person).count() == 1


def test_the_same_user_connecting_twice_at_once_lands_on_one_pooled_host():
    pool = HostPool.objects.create(name="pooled", max_session_limit=5)
    for n in range(3):
        build.host(pool, f"h{n}")
    person = build.user("twice")

    results = place_all_at_once([build.connection(person, pool) for _ in range(3)])

    assert all(r.ok for r in results)
    assert len({r.session_host_id for r in results}) == 1
