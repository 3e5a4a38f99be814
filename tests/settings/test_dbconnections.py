"""Kept database connections (WVD_DATABASE_CONN_MAX_AGE): the long-lived threads keep theirs and replace one
the server dropped before using it; web requests close theirs."""
from __future__ import annotations

import asyncio
import gc
import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator
from django.core.handlers.asgi import ASGIHandler
from django.db import connection

from core.models import ApiToken

pytestmark = pytest.mark.django_db(transaction=True)


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def other_backends() -> int:
    """Connections to this database other than the caller's own."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.fixture
async def kept_connections():
    """The product's PostgreSQL default (the suite opens a connection per call: tests/conftest.py)."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's connections (on SQLite nothing is kept: CONN_MAX_AGE applies to PostgreSQL)")
    database = connection.settings_dict
    before = database["CONN_MAX_AGE"], database["CONN_HEALTH_CHECKS"]
    database.update(CONN_MAX_AGE=300, CONN_HEALTH_CHECKS=True)
    yield
    database["CONN_MAX_AGE"], database["CONN_HEALTH_CHECKS"] = before
    await database_sync_to_async(close)()  # the database thread's, so the test database can go


def close() -> None:
    connection.close()  # the calling thread's connection


def test_postgresql_connections_are_kept_with_a_health_check_by_default(settings):
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("the PostgreSQL shape's settings")
    assert settings.DATABASE_CONN_MAX_AGE == 300  # WVD_DATABASE_CONN_MAX_AGE, unset in CI


@pytest.mark.asyncio
@pytest.mark.usefixtures("kept_connections")
async def test_the_database_thread_keeps_its_connection_between_calls():
    first = await database_sync_to_async(backend_pid)()
    assert await database_sync_to_async(backend_pid)() == first


@pytest.mark.asyncio
@pytest.mark.usefixtures("kept_connections")
async def test_a_kept_connection_the_server_dropped_is_replaced_before_the_next_call():
    first = await database_sync_to_async(backend_pid)()

    def terminate() -> None:  # as a PostgreSQL restart would, for this one connection
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [first])
        connection.close()

    await database_sync_to_async(terminate, thread_sensitive=False)()
    # The health check finds it gone: the call gets a new connection instead of an error.
    second = await database_sync_to_async(backend_pid)()
    assert second != first
    assert await database_sync_to_async(backend_pid)() == second


@pytest.mark.asyncio
@pytest.mark.usefixtures("kept_connections")
async def test_web_requests_leave_no_connection_open_behind_them(member):
    _, key = await database_sync_to_async(ApiToken.issue)(member, description="test")
    before = await database_sync_to_async(other_backends)()
    gc.disable()  # a connection left open closes when the collector finds it: that must not count here
    try:
        for _ in range(5):  # each looks its token up and lists the feed, in a thread of its own (ASGI)
            communicator = HttpCommunicator(ASGIHandler(), "GET", "/api/v1/feed/", headers=[
                (b"host", b"127.0.0.1"), (b"authorization", f"Bearer {key}".encode())])
            response = await communicator.get_response()
            await communicator.wait()  # the request's end, as a server lets it finish
            assert response["status"] == 200
        # Counted from the database thread, whose kept connection is not among them. A closed connection's
        # backend takes a moment to leave PostgreSQL's list; one left open stays there.
        deadline = time.monotonic() + 10
        while (left := await database_sync_to_async(other_backends)()) != before and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        gc.enable()
    assert left == before
