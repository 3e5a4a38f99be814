"""Two gateway instances at once, and one of them killed: each host dials the instance that holds its client;
an instance that dies takes only its own connections with it, and the survivors record why.

Real processes throughout (tests/cluster/conftest.py): `serve` ×2 behind nginx, Celery worker and beat,
PostgreSQL, Redis, two host agents, RD Gateway clients as FreeRDP speaks it (bench/clients.py).
"""
from __future__ import annotations

import asyncio
import signal

import pytest

from tests.cluster.conftest import HOSTS, LOST, Bed, Echo, cluster_tests

pytestmark = cluster_tests

MIB = 1 << 20


def the_open_connection_on(bed: Bed, instance_name: str) -> dict:
    names = bed.instance_ids()
    rows = [row for row in bed.connections(state="connected")
            if names.get(row["gateway_instance"]) == instance_name]
    assert len(rows) == 1, rows
    return rows[0]


async def test_clients_on_two_instances_each_get_their_host_dialled_to_their_own_instance(bed: Bed):
    a_stream, b_stream = await asyncio.gather(bed.open(1), bed.open(2))
    try:
        a, b = await asyncio.gather(Echo.start(a_stream), Echo.start(b_stream))
        await asyncio.gather(a.round(2 * MIB), b.round(2 * MIB))  # at once, both ways, byte exact

        on_1, on_2 = the_open_connection_on(bed, "gw1"), the_open_connection_on(bed, "gw2")
        instances = {row["name"]: row for row in
                     bed.cluster.api("GET", "/api/v1/gatewayinstances/")["results"]}  # type: ignore[index]
        # The connect order named the client's instance: its relay URL is that instance's own listener.
        assert instances["gw1"]["relay_url"].endswith(f":{bed.cluster.instance(1).gateway_port}")
        assert instances["gw2"]["relay_url"].endswith(f":{bed.cluster.instance(2).gateway_port}")
        for row in (on_1, on_2):
            assert row["host_notified_at"] and row["host_connected_at"] and row["relay_started_at"]
            assert row["session_host"] in bed.host_ids().values()
        assert on_1["activity_id"] != on_2["activity_id"]
    finally:
        await asyncio.gather(a_stream.close(), b_stream.close())

    ended = bed.wait_for("both records to end", lambda: (
        rows if len(rows := bed.connections(state="ended")) == 2 else None))
    by_activity = {row["activity_id"]: row for row in ended}  # type: ignore[union-attr]
    for echo, opened in ((a, on_1), (b, on_2)):
        row = by_activity[opened["activity_id"]]
        assert row["end_reason"] == "client_closed" and not row["error_code"]
        assert row["gateway_instance"] == opened["gateway_instance"]
        assert (row["bytes_client_to_host"], row["bytes_host_to_client"]) == (echo.client_to_host, echo.received)


async def test_a_killed_instance_ends_only_its_own_connections_and_its_hosts_move_to_the_survivor(bed: Bed):
    cluster = bed.cluster
    channels = bed.spread_channels()
    moved = [host for host, index in channels.items() if index == 1]
    stayed = [host for host, index in channels.items() if index == 2]

    lost_stream, kept_stream = await asyncio.gather(bed.open(1), bed.open(2))
    lost, kept = await asyncio.gather(Echo.start(lost_stream), Echo.start(kept_stream))
    await asyncio.gather(lost.round(MIB), kept.round(MIB))
    on_1, on_2 = the_open_connection_on(bed, "gw1"), the_open_connection_on(bed, "gw2")

    cluster.kill_instance(1, signal.SIGKILL)
    try:
        # The client of the dead instance sees its stream end (a TimeoutError here: it did not).
        await asyncio.wait_for(_drain(lost_stream), 20)

        # The survivors notice the instance is gone and end its connection with the documented code.
        row = bed.wait_for("the lost instance's connection to be recorded", lambda: (
            r if (r := bed.connections(activity_id=on_1["activity_id"])[0])["ended_at"] else None))
        assert (row["state"], row["error_code"], row["end_reason"]) == ("failed", LOST, "error")  # type: ignore[index]
        assert "gw1" in row["error_message"]  # type: ignore[index]

        # The survivor's connection carried on, byte exact, and is still open in the records.
        await kept.round(MIB)
        survivor = bed.connections(activity_id=on_2["activity_id"])[0]
        assert survivor["state"] == "connected" and survivor["ended_at"] is None

        # Agents that lost their channel re-attached to the survivor through the proxy.
        for host in moved + stayed:
            bed.wait_for(f"{host}'s channel on gw2", lambda host=host: cluster.channel_instance(host) == 2)
        bed.wait_for("both hosts to be available again", bed.hosts_available)

        # The survivor's client ends its connection: recorded by the survivor with every byte counted.
        await kept_stream.close()
        done = bed.wait_for("the survivor's connection to end", lambda: (
            r if (r := bed.connections(activity_id=on_2["activity_id"])[0])["ended_at"] else None))
        assert (done["state"], done["end_reason"]) == ("ended", "client_closed")  # type: ignore[index]
        assert (done["bytes_client_to_host"], done["bytes_host_to_client"]) == (  # type: ignore[index]
            kept.client_to_host, kept.received)

        # A new connection succeeds through a host that moved (the others drained, so placement picks it).
        hosts = bed.host_ids()
        for host in stayed:
            cluster.api("POST", f"/api/v1/sessionhosts/{hosts[host]}/drain/", {"allow_new_sessions": False})
        fresh_stream = await bed.open(2)
        try:
            fresh = await Echo.start(fresh_stream)
            await fresh.round(MIB)
            placed = bed.connections(state="connected")
            assert [r["session_host"] for r in placed] == [hosts[moved[0]]]
            assert bed.instance_ids()[placed[0]["gateway_instance"]] == "gw2"
        finally:
            await fresh_stream.close()
    finally:
        await asyncio.gather(lost_stream.close(), kept_stream.close())
    assert "Traceback" not in cluster.instance(2).this_run()


async def _drain(stream) -> None:
    """Read until the stream ends (an error counts as the end)."""
    try:
        while await stream.read():
            pass
    except Exception:  # noqa: BLE001 - any way of breaking is the end here
        pass
