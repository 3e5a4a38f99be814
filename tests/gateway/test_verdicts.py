"""The broker's verdict reaches a waiting client by message, not by polling (broker/verdicts.py).

A client waits in the gateway for its session host; when the broker fails the connection meanwhile
(placement, the reservation expiry, an order that could not be delivered), the waiting setup is woken
directly when the broker runs in the same process and over the channel layer when it does not. A slow
re-read of the verdict remains only as a safety net for a lost message.
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import contextmanager
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection as db_connection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from broker import verdicts
from broker.choices import ConnectionState
from broker.models import GatewayInstance
from broker.placement import expire_stale_reservations
from tests.connector.gatewaybed import (  # noqa: F401  (fixtures)
    INSTANCE_NAME,
    RECEIVE_TIMEOUT,
    Bed,
    bed,
    concurrent_sqlite,
    db,
    eager_tasks,
    estate_rows,
    gateway_ssl,
    in_memory_channel_layer,
)

ACTIVITY = "6f1c5a1e-8d4b-4a53-9d1e-0c4f1f0e2a11"
# Longer than any test here may take: a client answered sooner was woken, not found by a poll.
NEVER = 600.0


# --- the registry of waiters in one process -------------------------------------------------------


async def test_a_waiter_is_woken_from_another_thread():
    registry = verdicts.Waiters()
    event = registry.register(ACTIVITY)
    woken = await asyncio.to_thread(registry.wake, ACTIVITY)
    await asyncio.wait_for(event.wait(), RECEIVE_TIMEOUT)
    assert woken is True


async def test_waking_an_activity_nobody_waits_for_here_says_so():
    registry = verdicts.Waiters()
    assert registry.wake(ACTIVITY) is False
    event = registry.register(ACTIVITY)
    registry.unregister(ACTIVITY, event)
    assert registry.wake(ACTIVITY) is False and len(registry) == 0


async def test_a_late_unregister_does_not_remove_a_newer_waiter():
    registry = verdicts.Waiters()
    old = registry.register(ACTIVITY)
    new = registry.register(ACTIVITY)
    registry.unregister(ACTIVITY, old)
    assert registry.wake(ACTIVITY) is True
    await asyncio.wait_for(new.wait(), RECEIVE_TIMEOUT)


# --- across processes: the instance's group on the channel layer ----------------------------------


@contextmanager
def as_another_process():
    """What the process of a Celery worker knows: no waiter, and no gateway instance of its own."""
    saved = verdicts.waiters, verdicts._instances_here
    verdicts.waiters, verdicts._instances_here = verdicts.Waiters(), set()
    try:
        yield
    finally:
        verdicts.waiters, verdicts._instances_here = saved


async def start_listener(instance_id: int, registry: verdicts.Waiters, **options) -> asyncio.Task:
    """This process becomes the instance (before anything here may pretend to be another process)."""
    listener = asyncio.ensure_future(verdicts.listen(instance_id, registry, **options))
    await asyncio.sleep(0)
    assert instance_id in verdicts._instances_here
    return listener


def announce_from_another_process(activity_id: str, instance_id: int) -> None:
    with as_another_process():
        verdicts.announce(activity_id, instance_id)


async def announce_until_woken(event: asyncio.Event, activity_id: str, instance_id: int) -> None:
    """Announce (from another process) until the listener, which joins its group once it runs, has woken
    ``event``."""
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        while not event.is_set():
            await sync_to_async(announce_from_another_process, thread_sensitive=False)(activity_id, instance_id)
            try:
                await asyncio.wait_for(event.wait(), 0.2)
            except TimeoutError:
                pass


async def test_an_announcement_reaches_a_waiter_in_another_process_through_its_instances_group(
        in_memory_channel_layer):
    elsewhere = verdicts.Waiters()  # the waiters of the gateway process holding the client
    listener = await start_listener(7, elsewhere)
    try:
        event = elsewhere.register(ACTIVITY)
        await announce_until_woken(event, ACTIVITY, 7)  # this process has no such waiter: over the layer
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)


async def test_the_listener_ignores_malformed_messages_and_goes_on(in_memory_channel_layer, caplog):
    elsewhere = verdicts.Waiters()
    listener = await start_listener(8, elsewhere)
    try:
        await announce_until_woken(elsewhere.register(ACTIVITY), ACTIVITY, 8)  # the listener is in its group
        event = elsewhere.register(ACTIVITY)
        layer = get_channel_layer()
        with caplog.at_level(logging.WARNING, logger="broker.verdicts"):
            for junk in ({"type": "connection.verdict", "activity_id": "../../etc"},
                         {"type": "connection.verdict", "activity_id": 12},
                         {"type": "something.else", "activity_id": ACTIVITY}):
                await layer.group_send(verdicts.instance_group(8), junk)
            await announce_until_woken(event, ACTIVITY, 8)
        assert "ignored a malformed message" in caplog.text
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)


def test_a_verdict_for_this_processs_own_instance_that_nobody_here_waits_for_is_not_sent(monkeypatch):
    def no_layer():
        raise AssertionError("nothing should be sent")

    monkeypatch.setattr(verdicts, "get_channel_layer", no_layer)
    monkeypatch.setattr(verdicts, "_instances_here", {4})
    verdicts.announce(ACTIVITY, 4)  # e.g. the gateway failing a client it is still talking to


async def test_the_listener_survives_the_channel_layer_going_away(in_memory_channel_layer, monkeypatch, caplog):
    layer = get_channel_layer()
    real_receive, failures = layer.receive, []

    async def flaky_receive(channel):
        if len(failures) < 2:
            failures.append(channel)
            raise ConnectionError("Redis is restarting")
        return await real_receive(channel)

    monkeypatch.setattr(layer, "receive", flaky_receive)
    elsewhere = verdicts.Waiters()
    listener = await start_listener(9, elsewhere, retry_delay=0.01)
    try:
        with caplog.at_level(logging.INFO, logger="broker.verdicts"):
            await announce_until_woken(elsewhere.register(ACTIVITY), ACTIVITY, 9)
        assert len(failures) == 2 and "retrying" in caplog.text and "listening again" in caplog.text
        assert 9 in verdicts._instances_here
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
    assert 9 not in verdicts._instances_here


def test_an_announcement_the_channel_layer_cannot_carry_is_logged_not_raised(monkeypatch, caplog):
    def broken_layer():
        raise ConnectionError("Redis is restarting")

    monkeypatch.setattr(verdicts, "get_channel_layer", broken_layer)
    with caplog.at_level(logging.WARNING, logger="broker.verdicts"):
        verdicts.announce(ACTIVITY, 3)
    assert "could not announce the verdict" in caplog.text


# --- a waiting client ------------------------------------------------------------------------------

pytestmark_db = pytest.mark.django_db(transaction=True)


def wst_url(bed: Bed) -> str:
    return f"ws://127.0.0.1:{bed.port}/remoteDesktopGateway/"


async def refusal_answer(bed: Bed, during) -> tuple[int, str]:
    """Connect over the raw WebSocket transport, let ``during`` run once the host is reserved, and return
    the HTTP status and reason phrase the client's upgrade is answered with (the 101 waits for the verdict)."""
    opening = asyncio.ensure_future(ws_connect(wst_url(bed), additional_headers={"Authorization": f"Bearer {bed.ticket()}"},
                                               open_timeout=None))
    try:
        # Once the connect order is out the broker's set-up is over: nothing else writes the record until
        # ``during`` does (on the test's in-memory SQLite two writers at once fail with "table is locked").
        await bed.connection_when(lambda connection: connection.state == ConnectionState.CONNECTING
                                  and connection.host_notified_at is not None)
        await during()
        with pytest.raises(InvalidStatus) as refused:
            async with asyncio.timeout(RECEIVE_TIMEOUT):
                await opening
    finally:
        opening.cancel()
    return refused.value.response.status_code, refused.value.response.reason_phrase


def expire_now(settings) -> None:
    """The beat task that fails reservations whose host did not arrive, run as a worker would."""
    settings.CONNECTION_RESERVATION_TIMEOUT = timedelta(microseconds=1)
    assert expire_stale_reservations()


@pytestmark_db
async def test_the_brokers_verdict_wakes_the_waiting_client_without_a_poll(bed: Bed, settings):
    await bed.simulated.stop()  # the host never dials in
    bed.server.config.host_arrival_timeout = NEVER
    bed.server.config.verdict_check_interval = NEVER

    async def the_beat_expires_the_reservation() -> None:
        await asyncio.sleep(0.01)
        # From a thread of its own, as a Celery worker's would be (here in this process, so the waiter
        # is woken directly).
        await asyncio.to_thread(_run_in_thread, expire_now, settings)

    status, reason = await refusal_answer(bed, the_beat_expires_the_reservation)

    assert status == 504 and reason.startswith("ConnectionFailedReverseConnectTimeout activity ")


@pytestmark_db
async def test_a_verdict_announced_over_the_channel_layer_wakes_the_waiting_client(bed: Bed, settings):
    """As when the broker runs in a Celery worker: that process holds no waiter, so its announcement
    travels over the channel layer to the listener of the instance that holds the client."""
    await bed.simulated.stop()
    bed.server.config.host_arrival_timeout = NEVER
    bed.server.config.verdict_check_interval = NEVER
    instance = await db(GatewayInstance.objects.get)(name=INSTANCE_NAME)
    here = verdicts.waiters
    listener = await start_listener(instance.pk, here)

    def in_a_worker_process() -> None:
        with as_another_process():
            expire_now(settings)

    async def a_worker_fails_it() -> None:
        await asyncio.sleep(0.1)  # the listener joins its group
        await asyncio.to_thread(_run_in_thread, in_a_worker_process)

    try:
        status, reason = await refusal_answer(bed, a_worker_fails_it)
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
    assert status == 504 and reason.startswith("ConnectionFailedReverseConnectTimeout activity ")


@pytestmark_db
async def test_a_lost_announcement_is_still_read_by_the_safety_net(bed: Bed, settings, monkeypatch):
    await bed.simulated.stop()
    bed.server.config.host_arrival_timeout = NEVER
    # Long enough that the expiry below has committed before the first re-read (on the test's in-memory
    # SQLite, a read in one thread during a write in another can fail with "table is locked").
    bed.server.config.verdict_check_interval = 1.0
    monkeypatch.setattr(verdicts, "announce", lambda activity, instance: None)  # every message lost

    async def the_beat_expires_the_reservation() -> None:
        await asyncio.to_thread(_run_in_thread, expire_now, settings)

    status, reason = await refusal_answer(bed, the_beat_expires_the_reservation)

    assert status == 504 and reason.startswith("ConnectionFailedReverseConnectTimeout activity ")


def _run_in_thread(func, *args) -> None:
    try:
        func(*args)
    finally:
        db_connection.close()  # this thread's own connection
