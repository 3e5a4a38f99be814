"""What the gateway records when the rest of the system fails it: a client whose wait runs out before the
broker placed it (its workers are gone) or after (its host never dialled), and a connection's end that
happens while the database is away or before its start is written."""
from __future__ import annotations

import asyncio
import threading

import pytest
from django.db import OperationalError
from django.utils import timezone

from broker.choices import ConnectionState, EndReason
from broker.models import Connection, HostPool
from broker.placement import place_connection
from gateway import records, server
from gateway.relay import RelayResult, Rendezvous, Side
from gateway.server import GatewayConfig, GatewayServer
from tests.placement import build
from wire.errors import ErrorCode, describe


@pytest.fixture
def single_pool(db):
    return HostPool.objects.create(name="single", max_session_limit=1)


@pytest.mark.django_db
def test_a_wait_that_runs_out_before_any_host_was_chosen_fails_with_orchestration_timeout(single_pool, member):
    build.host(single_pool, "h1")
    waiting = build.connection(member, single_pool)  # admitted; no worker ever placed it

    refusal = records.host_did_not_arrive(waiting.pk)

    waiting.refresh_from_db()
    assert refusal.code == ErrorCode.ConnectionFailedOrchestrationTimeout
    assert refusal.activity_id == str(waiting.activity_id)
    assert refusal.message == describe(ErrorCode.ConnectionFailedOrchestrationTimeout).message
    assert (waiting.state, waiting.error_code) == (ConnectionState.FAILED, ErrorCode.ConnectionFailedOrchestrationTimeout)
    assert waiting.ended_at is not None and waiting.session_host is None


@pytest.mark.django_db
def test_a_wait_that_runs_out_after_a_host_was_chosen_fails_with_reverse_connect_timeout_and_frees_it(
        single_pool, member, outsider):
    build.host(single_pool, "h1")
    placed = place_connection(build.connection(member, single_pool))
    assert placed.ok

    refusal = records.host_did_not_arrive(placed.connection_id)

    connection = Connection.objects.get(pk=placed.connection_id)
    assert refusal.code == connection.error_code == ErrorCode.ConnectionFailedReverseConnectTimeout
    assert connection.session_host is not None  # kept for the diagnostics
    assert place_connection(build.connection(outsider, single_pool)).ok  # its slot is free again


@pytest.mark.django_db(transaction=True)
async def test_an_end_while_the_database_is_away_is_recorded_once_it_answers_with_the_time_it_happened(
        single_pool, member, monkeypatch):
    monkeypatch.setattr(server, "RECORD_RETRY_FIRST_DELAY", 0.05)
    host = await asyncio.to_thread(build.host, single_pool, "h1")
    live = await asyncio.to_thread(build.reservation, host, member, state=ConnectionState.CONNECTED)
    gateway = GatewayServer(GatewayConfig(instance_name="test-gateway", host_arrival_timeout=1), Rendezvous(), None)
    ended = RelayResult(str(live.activity_id), Side.CLIENT, "client closed", 1000, 2000)
    outage: dict = {"refusals_left": 3, "first_try_at": None}
    finish = records.finish

    def finish_while_the_database_answers(result: RelayResult, at) -> None:
        outage["first_try_at"] = outage["first_try_at"] or timezone.now()
        if outage["refusals_left"]:
            outage["refusals_left"] -= 1
            raise OperationalError("connection failed: connection to server at 127.0.0.1 failed: Connection refused")
        finish(result, at)

    monkeypatch.setattr(records, "finish", finish_while_the_database_answers)
    before = timezone.now()
    gateway.report_end(ended)
    await asyncio.sleep(0.2)  # the database "returns" during the retries
    await gateway.stop()  # waits for the pending records

    live = await Connection.objects.aget(pk=live.pk)
    assert outage["refusals_left"] == 0
    assert (live.state, live.end_reason) == (ConnectionState.ENDED, EndReason.CLIENT_CLOSED)
    assert (live.bytes_client_to_host, live.bytes_host_to_client) == (1000, 2000)
    # The end's time is when it happened, not when the database took it.
    assert before <= live.ended_at <= outage["first_try_at"]


@pytest.mark.django_db(transaction=True)
async def test_an_end_reported_while_its_start_is_being_written_is_recorded_after_it(single_pool, member):
    # A short session: its client closes while the thread recording the relay's start is still at work.
    host = await asyncio.to_thread(build.host, single_pool, "h1")
    live = await asyncio.to_thread(build.reservation, host, member, state=ConnectionState.CONNECTING)
    gateway = GatewayServer(GatewayConfig(instance_name="test-gateway", host_arrival_timeout=1), Rendezvous(), None)
    may_write_start = threading.Event()
    told_at = timezone.now()  # the client heard that its channel is open

    def slow_start() -> None:
        assert may_write_start.wait(10)
        records.mark_relay_started(live.pk, told_at)

    start = asyncio.ensure_future(asyncio.to_thread(slow_start))
    gateway.report_end(RelayResult(str(live.activity_id), Side.CLIENT, "client closed", 10, 20), after=start)
    await asyncio.sleep(0.3)
    assert (await Connection.objects.aget(pk=live.pk)).ended_at is None  # the end waits for the start

    may_write_start.set()
    await gateway.stop()  # waits for the pending records

    live = await Connection.objects.aget(pk=live.pk)
    assert (live.state, live.end_reason) == (ConnectionState.ENDED, EndReason.CLIENT_CLOSED)
    assert live.relay_started_at == told_at and told_at <= live.ended_at
