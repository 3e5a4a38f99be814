"""Faults on the cluster: the Celery worker, Redis and PostgreSQL lost and back, an agent cut off and back.
Each test says what survives, what ends, and what is recorded (Connection records through the API, a host's
status and its history).

Real processes throughout (tests/cluster/conftest.py): `serve` ×2 behind nginx, Celery worker and beat, a
private PostgreSQL and Redis (restarted here: never the machine's own), two host agents, RD Gateway clients
as FreeRDP speaks it (bench/clients.py). Heartbeats are the harness's short ones (testbed/cluster.py FAST_ENV).
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import redis
from prometheus_client.parser import text_string_to_metric_families

from bench.clients import GatewayRefused, RdgStream
from gateway.records import as_hresult
from testbed.cluster import FAST_ENV
from tests.cluster.conftest import HOSTS, Bed, Echo, cluster_tests
from wire.errors import ErrorCode, describe

pytestmark = cluster_tests

MIB = 1 << 20
HOST_ARRIVAL_TIMEOUT = 15  # WVD_GATEWAY_HOST_ARRIVAL_TIMEOUT's default: how long a client waits for its host
HEARTBEAT = timedelta(seconds=int(FAST_ENV["WVD_HEARTBEAT_INTERVAL"]))  # the agents' heartbeat in the harness
QUEUE = "wvd.tasks"  # CELERY_TASK_DEFAULT_QUEUE with the default WVD_REDIS_NAMESPACE
UNACKED = "unacked"  # kombu's hash of the messages workers took and have not acknowledged
ORCHESTRATE = "broker.tasks.orchestrate_connection"
TRACEBACK = re.compile(r"^Traceback \(most recent call last\):", re.MULTILINE)


# --- the Celery worker ---------------------------------------------------------------------------------

async def test_a_worker_killed_while_connections_are_set_up_ends_them_in_time_and_loses_no_task(bed: Bed):
    cluster = bed.cluster
    broker = redis.Redis(host="127.0.0.1", port=cluster.redis.port)
    cluster.beat.signal(signal.SIGSTOP)  # only the clients' orchestrations reach the queue meanwhile
    try:
        # The worker dies holding the tasks it took (its pool paused, so none finishes) with one more queued,
        # and no worker returns while the clients wait.
        await asyncio.to_thread(bed.wait_for, "the worker to be idle", lambda: (
            broker.llen(QUEUE) == 0 and broker.hlen(UNACKED) == 0))
        pause_pool(cluster.worker.pid)
        started = time.monotonic()
        waiting = [asyncio.create_task(open_or_refusal(bed, 1)) for _ in range(3)]
        taken, queued = await asyncio.to_thread(bed.wait_for, "the worker to take the orchestrations", lambda: (
            found if len((found := tasks_in(broker))[0]) >= 1 and sum(map(len, found)) == 3 else None))
        cluster.kill_worker(signal.SIGKILL)

        outcomes = await asyncio.gather(*waiting)
        waited = time.monotonic() - started
        # None hangs past its wait: each is refused with the documented code once the wait runs out.
        orchestration_timeout = as_hresult(int(describe(ErrorCode.ConnectionFailedOrchestrationTimeout).gateway_status))
        assert [type(outcome) for outcome in outcomes] == [GatewayRefused] * 3, outcomes
        assert {outcome.code for outcome in outcomes} == {orchestration_timeout}  # type: ignore[union-attr]
        assert HOST_ARRIVAL_TIMEOUT <= waited < HOST_ARRIVAL_TIMEOUT + 10
        failed = bed.connections(state="failed")
        assert len(failed) == 3
        for row in failed:
            assert (row["error_code"], row["end_reason"]) == (ErrorCode.ConnectionFailedOrchestrationTimeout, "error")
            assert row["ended_at"] and row["session_host"] is None and row["host_selected_at"] is None
        # … and counted where the operator watches: by the instance that ended them.
        assert sample(cluster.scrape(cluster.instance(1).metrics_port), "wvd_connections_total", outcome="failed",
                      error_code=ErrorCode.ConnectionFailedOrchestrationTimeout) == 3

        # A worker returns: the tasks the dead one held come back to the queue (Redis's visibility timeout),
        # run, and change nothing for connections that already failed.
        cluster.start_worker()
        await asyncio.to_thread(bed.wait_for, "every orchestration to run once a worker is back", lambda: (
            orchestrations_done(cluster.worker.log) >= len(taken) + len(queued)
            and broker.llen(QUEUE) == 0 and broker.hlen(UNACKED) == 0))
        assert sorted(row["activity_id"] for row in bed.connections(state="failed")) == sorted(
            row["activity_id"] for row in failed)
        assert bed.connections(state="connecting") == bed.connections(state="connected") == []
        assert sample(cluster.scrape(cluster.worker_metrics_port), "wvd_celery_task_seconds_count",
                      task=ORCHESTRATE, state="SUCCESS") == len(taken) + len(queued)

        # The worker is killed again holding the tasks of clients still waiting, and comes back at once:
        # those tasks are not lost, the hosts dial in and the bytes flow.
        pause_pool(cluster.worker.pid)
        waiting = [asyncio.create_task(open_or_refusal(bed, index)) for index in (1, 2)]
        await asyncio.to_thread(bed.wait_for, "the worker to take the new orchestrations", lambda: (
            len(tasks_in(broker)[0]) >= 1 and sum(map(len, tasks_in(broker))) == 2))
        cluster.kill_worker(signal.SIGKILL)
        cluster.start_worker()
        streams = await asyncio.gather(*waiting)
        assert all(isinstance(stream, RdgStream) for stream in streams), streams
    finally:
        cluster.beat.signal(signal.SIGCONT)
    try:
        echoes = await asyncio.gather(*(Echo.start(stream) for stream in streams))  # type: ignore[arg-type]
        await asyncio.gather(*(echo.round(MIB) for echo in echoes))
        connected = bed.connections(state="connected")
        assert len(connected) == 2
        for row in connected:
            assert row["host_selected_at"] and row["host_notified_at"] and row["relay_started_at"]
    finally:
        await asyncio.gather(*(stream.close() for stream in streams))  # type: ignore[union-attr]
    ended = await asyncio.to_thread(bed.wait_for, "both records to end", lambda: (
        rows if len(rows := bed.connections(state="ended")) == 2 else None))
    assert sorted(row["end_reason"] for row in ended) == ["client_closed"] * 2  # type: ignore[union-attr]
    assert "Traceback" not in cluster.worker.text()


async def open_or_refusal(bed: Bed, instance: int) -> RdgStream | GatewayRefused:
    try:
        return await bed.open(instance)
    except GatewayRefused as refusal:
        return refusal


def pause_pool(worker_pid: int) -> None:
    """SIGSTOP the worker's pool processes (its children; not the worker, which still takes tasks for them)."""
    children = Path(f"/proc/{worker_pid}/task/{worker_pid}/children").read_text().split()
    assert children, "the worker has no pool processes"
    for child in children:
        os.kill(int(child), signal.SIGSTOP)


def tasks_in(broker: redis.Redis) -> tuple[list[str], list[str]]:
    """The orchestrations a worker took and has not acknowledged, and those still queued: task ids."""
    taken = [json.loads(value)[0] for value in broker.hvals(UNACKED)]
    queued = [json.loads(value) for value in broker.lrange(QUEUE, 0, -1)]
    return ([m["headers"]["id"] for m in taken if m["headers"]["task"] == ORCHESTRATE],
            [m["headers"]["id"] for m in queued if m["headers"]["task"] == ORCHESTRATE])


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels``, in a /metrics page."""
    return sum(value.value for family in text_string_to_metric_families(text) for value in family.samples
               if value.name == name and labels.items() <= value.labels.items())


def orchestrations_done(log: Path) -> int:
    """How many orchestrations the worker logged as done since its log began."""
    return len(re.findall(rf"Task {re.escape(ORCHESTRATE)}\[[^]]+\] succeeded", log.read_text(errors="replace")))


# --- Redis ---------------------------------------------------------------------------------------------

async def test_redis_restarted_keeps_live_relays_and_host_channels_recover_by_themselves(bed: Bed):
    cluster = bed.cluster
    live_stream = await bed.open(1)
    try:
        live = await Echo.start(live_stream)
        await live.round(MIB)
        (opened,) = bed.connections(state="connected")

        cluster.restart_redis(down_for=2)  # everything Redis held is gone: channel groups, queue, cache
        back = datetime.now(timezone.utc)

        await live.round(MIB)  # the relay was not cut, and stays byte exact
        # The host channels recover without anyone acting: each host's agent (on its channel, or on a new one if
        # the outage closed it) heartbeats again, which re-joins its group; then commands reach each agent.
        bed.wait_for("a heartbeat of each host after Redis returned", lambda: all(
            row["status"] == "available" and row["last_heartbeat_at"]
            and datetime.fromisoformat(row["last_heartbeat_at"]) > back + HEARTBEAT
            for row in cluster.api("GET", "/api/v1/sessionhosts/")["results"]))  # type: ignore[index]
        for host, host_id in bed.host_ids().items():
            status, answer = cluster.call("POST", f"/api/v1/hostagent/session-hosts/{host_id}/renew-certificate/",
                                          {}, cluster.admin_token(), timeout=90)
            assert (status, answer.get("status")) == (200, "ok"), (host, status, answer)  # type: ignore[union-attr]
        # Connect orders reach the hosts again: a new connection on each instance, byte exact.
        fresh_streams = await asyncio.gather(bed.open(1), bed.open(2))
        try:
            fresh = await asyncio.gather(*(Echo.start(stream) for stream in fresh_streams))
            await asyncio.gather(*(echo.round(MIB) for echo in fresh))
            await live.round(MIB)
        finally:
            await asyncio.gather(*(stream.close() for stream in fresh_streams))
    finally:
        await live_stream.close()
    done = bed.ended(opened["activity_id"])
    assert (done["state"], done["end_reason"]) == ("ended", "client_closed")
    assert (done["bytes_client_to_host"], done["bytes_host_to_client"]) == (live.client_to_host, live.received)
    assert len(bed.connections(state="ended")) == 3


# --- PostgreSQL ----------------------------------------------------------------------------------------

async def test_postgres_restarted_keeps_live_relays_and_records_what_ended_meanwhile(bed: Bed):
    cluster = bed.cluster
    kept_stream, ending_stream = await asyncio.gather(bed.open(1), bed.open(2))
    try:
        kept, ending = await asyncio.gather(Echo.start(kept_stream), Echo.start(ending_stream))
        await asyncio.gather(kept.round(MIB), ending.round(MIB))
        rows = {row["gateway_instance"]: row for row in bed.connections(state="connected")}
        instances = {name: pk for pk, name in bed.instance_ids().items()}
        kept_row, ending_row = rows[instances["gw1"]], rows[instances["gw2"]]
        tracebacks_before = traceback_counts(bed)

        cluster.postgres.stop()
        try:
            await asyncio.gather(kept.round(MIB), ending.round(MIB))  # relays do not need the database
            await ending_stream.close()  # a session that ends while the database is down
            await asyncio.sleep(3)  # the instances' heartbeats and the sweeps fail meanwhile
            await kept.round(MIB)
        finally:
            cluster.postgres.start()
            back_at = datetime.now(timezone.utc)

        # The end that happened during the outage is recorded once the database is back, bytes and all.
        ended = bed.ended(ending_row["activity_id"])
        assert (ended["state"], ended["end_reason"]) == ("ended", "client_closed")
        assert (ended["bytes_client_to_host"], ended["bytes_host_to_client"]) == (
            ending.client_to_host, ending.received)
        # The live one carried on, still open in the records.
        await kept.round(MIB)
        assert bed.connections(activity_id=kept_row["activity_id"])[0]["state"] == "connected"
        # The hosts' channels come back by themselves (a heartbeat that could not be written closed them, and
        # their agents reconnected with their back-off): once each host has a heartbeat written since the
        # database returned, new connections work.
        bed.wait_for("every host's heartbeat written again", lambda: all(
            row["status"] == "available" and datetime.fromisoformat(row["last_heartbeat_at"]) > back_at
            for row in (host_row(bed, name) for name in HOSTS)), timeout=60)
        try:
            fresh_stream = await bed.open(2)
        except GatewayRefused as refusal:
            raise AssertionError(f"{refusal}: {bed.connections()[:1]}\n{cluster.failure_report(4000)}") from None
        try:
            await (await Echo.start(fresh_stream)).round(MIB)
        finally:
            await fresh_stream.close()
    finally:
        await asyncio.gather(kept_stream.close(), ending_stream.close())
    done = bed.ended(kept_row["activity_id"])
    assert (done["state"], done["bytes_client_to_host"], done["bytes_host_to_client"]) == (
        "ended", kept.client_to_host, kept.received)
    # Nothing was lost for good: no instance was taken for lost, no connection failed.
    assert bed.connections(state="failed") == []
    # No traceback loop: the outage is told in log lines, and nothing is still failing once it is back.
    settled = traceback_counts(bed)
    time.sleep(3)
    assert traceback_counts(bed) == settled, "tracebacks still coming after the database returned"
    new = {name: settled[name] - tracebacks_before.get(name, 0) for name in settled}
    assert all(count <= 2 for count in new.values()), new


def traceback_counts(bed: Bed) -> dict[str, int]:
    """Traceback lines in each process's log of the cluster's own programs."""
    logs = bed.cluster.logs()
    return {name: len(TRACEBACK.findall(text)) for name, text in logs.items() if name not in ("postgres", "redis")}


# --- an agent cut off ----------------------------------------------------------------------------------

async def test_an_agent_cut_off_makes_its_host_unavailable_and_it_comes_back_for_new_connections(bed: Bed):
    cluster = bed.cluster
    cut, other = HOSTS
    hosts = bed.host_ids()
    agent = bed.agents[cut]

    agent.signal(signal.SIGSTOP)  # as a network cut: its channel stays open, nothing comes through it
    try:
        bed.wait_for(f"{cut} to be unavailable", lambda: host_row(bed, cut)["status"] == "unavailable")
        assert "heartbeat" in host_row(bed, cut)["status_reason"].lower()
        # Meanwhile new connections go to the other host.
        assert await a_session_placed(bed, 1) == [hosts[other]]
    finally:
        agent.signal(signal.SIGCONT)

    bed.wait_for(f"{cut} to be available again", lambda: host_row(bed, cut)["status"] == "available")
    history = status_history(bed, cut)
    assert history[-2:] == [("available", "unavailable"), ("unavailable", "available")], history

    # Its users' new connections work: with the other host drained, placement picks it.
    cluster.api("POST", f"/api/v1/sessionhosts/{hosts[other]}/drain/", {"allow_new_sessions": False})
    assert await a_session_placed(bed, 2) == [hosts[cut]]
    ended = bed.wait_for("both records to end", lambda: (
        rows if len(rows := bed.connections(state="ended")) == 2 else None))
    assert sorted(row["session_host"] for row in ended) == sorted(hosts.values())  # type: ignore[union-attr]


async def a_session_placed(bed: Bed, instance: int) -> list[int]:
    """Open a connection on ``instance``, check 1 MiB both ways byte exact, close it; the session hosts of the
    connections open meanwhile (the records)."""
    stream = await bed.open(instance)
    try:
        await (await Echo.start(stream)).round(MIB)
        return [row["session_host"] for row in bed.connections(state="connected")]
    finally:
        await stream.close()


def host_row(bed: Bed, name: str) -> dict:
    rows = bed.cluster.api("GET", "/api/v1/sessionhosts/")["results"]  # type: ignore[index]
    return next(row for row in rows if row["name"] == name)


def status_history(bed: Bed, name: str) -> list[tuple[str, str]]:
    """The host's recorded status changes, oldest first (the table the admin's host page shows)."""
    postgres = bed.cluster.postgres
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres", "-d", "wvd", "-At", "-F", " ", "-c",
         "SELECT c.old_status, c.new_status FROM broker_sessionhoststatuschange c JOIN broker_sessionhost h "
         f"ON h.id = c.session_host_id WHERE h.name = '{name}' ORDER BY c.at, c.id"],
        capture_output=True, text=True, timeout=30, check=True, stdin=subprocess.DEVNULL)
    return [tuple(line.split(" ", 1)) for line in out.stdout.splitlines()]  # type: ignore[misc]
