"""The cluster the fault tests run on (testbed/cluster.py): two `serve` instances behind nginx, a worker, beat,
a private PostgreSQL and Redis; one published desktop, two real agents bridging to bench/target.py (the byte
"RDP server"), and the user's .rdp file. Clients reach an instance's RD Gateway listener directly.

Skipped where nginx, PostgreSQL 15's server binaries or redis-server are missing, and with
``WVD_TEST_SKIP=cluster`` (CI's SQLite shape: the cluster brings its own PostgreSQL and Redis, so it runs once,
on the PostgreSQL + Redis shape).
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench.clients import RdgStream, client_tls_context
from bench.harness import Child, RdpFile, fetch_rdp_file, start_target
from testbed.cluster import Agent, Cluster, missing_tools

HOSTS = ("host-1", "host-2")
PASSWORD = "cluster-user-password-1"
LOST = "ConnectionBrokenGatewayInstanceLost"
MISSING = missing_tools()

cluster_tests = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.skipif(bool(MISSING), reason=f"the cluster needs {', '.join(MISSING)}"),
    pytest.mark.skipif("cluster" in os.environ.get("WVD_TEST_SKIP", "").split(","),
                       reason="WVD_TEST_SKIP=cluster: CI runs the cluster tests on the PostgreSQL + Redis shape"),
]


@dataclass
class Bed:
    """The running cluster with its estate: what a test drives."""

    cluster: Cluster
    target: Child
    rdp: RdpFile
    agents: dict[str, Agent] = field(default_factory=dict)

    async def open(self, instance: int) -> RdgStream:
        """A new RD Gateway connection, as FreeRDP opens it, to instance ``instance``'s listener."""
        return await RdgStream.open("127.0.0.1", self.cluster.instance(instance).gateway_port, self.rdp.ticket,
                                    self.rdp.resource, ssl_context=client_tls_context(self.cluster.ca_file))

    def connections(self, **filters: str) -> list[dict]:
        query = "&".join(f"{key}={value}" for key, value in {"page_size": "100", **filters}.items())
        return self.cluster.api("GET", f"/api/v1/connections/?{query}")["results"]  # type: ignore[index]

    def instance_ids(self) -> dict[int, str]:
        """Gateway instance id -> name (gw1, gw2), as the API lists them."""
        rows = self.cluster.api("GET", "/api/v1/gatewayinstances/")["results"]  # type: ignore[index]
        return {row["id"]: row["name"] for row in rows}

    def host_ids(self) -> dict[str, int]:
        rows = self.cluster.api("GET", "/api/v1/sessionhosts/")["results"]  # type: ignore[index]
        return {row["name"]: row["id"] for row in rows}

    def wait_for(self, what: str, condition: Callable[[], object], timeout: float = 30) -> object:
        """Poll ``condition`` until it returns something true; fail with the cluster's logs after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}\n{self.cluster.failure_report(4000)}")
            time.sleep(0.2)

    def ended(self, activity_id: str) -> dict:
        """The connection's record once its end is recorded (waits for it)."""
        return self.wait_for(f"the end of {activity_id} to be recorded", lambda: (  # type: ignore[return-value]
            row if (row := self.connections(activity_id=activity_id)[0])["ended_at"] else None))

    def hosts_available(self) -> bool:
        rows = self.cluster.api("GET", "/api/v1/sessionhosts/")["results"]  # type: ignore[index]
        return sorted(row["name"] for row in rows if row["status"] == "available") == sorted(HOSTS)

    def spread_channels(self) -> dict[str, int]:
        """Restart agents until the two instances hold one host channel each (nginx balances round robin,
        so a reconnect lands on the other instance soon); returns host -> instance index."""
        for _attempt in range(10):
            where = self.wait_for("every host channel to be held", lambda: (
                {host: self.cluster.channel_instance(host) for host in HOSTS}
                if all(self.cluster.channel_instance(host) for host in HOSTS) else None))
            if sorted(where.values()) == [1, 2]:  # type: ignore[union-attr]
                return where  # type: ignore[return-value]
            agent = self.agents[HOSTS[0]]
            agent.stop()
            self.cluster.run_agent(agent)
        pytest.fail(f"the host channels never spread over both instances\n{self.cluster.failure_report(4000)}")


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Bed]:
    target, port = start_target(tmp_path / "target")
    cluster = Cluster(instances=2, work_dir=tmp_path / "cluster")
    try:
        cluster.start()
        user_id = cluster.create_user("cluster-user", PASSWORD)
        desktop = cluster.publish_desktop("cluster", [user_id])
        agents = {host: cluster.start_agent(host, desktop.registration_token, f"127.0.0.1:{port}")
                  for host in HOSTS}
        user = cluster.sign_in("cluster-user", PASSWORD)
        bed = Bed(cluster, target, download_rdp(cluster, user), agents)
        bed.wait_for("both hosts to be available", bed.hosts_available, timeout=60)
        yield bed
    finally:
        cluster.stop()
        target.stop()


def download_rdp(cluster: Cluster, user_token: str) -> RdpFile:
    """The user's desktop .rdp file from the feed, through the proxy."""
    return fetch_rdp_file(cluster.base_url, user_token, cluster.ssl_context())


def get_bytes(cluster: Cluster, path: str, token: str) -> tuple[int, dict, bytes]:
    """GET ``path`` through the proxy with a bearer token: (status, headers, body)."""
    request = urllib.request.Request(cluster.base_url + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30, context=cluster.ssl_context()) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


# --- byte-exact traffic ------------------------------------------------------------------------------------

ECHO = b"ECHO\n"


@dataclass
class Echo:
    """An open stream in ECHO mode (bench/target.py): what was sent and what came back, to compare by hash."""

    stream: RdgStream
    sent: int = 0
    received: int = 0

    @classmethod
    async def start(cls, stream: RdgStream) -> Echo:
        await stream.write(ECHO)
        return cls(stream)

    async def round(self, size: int, chunk: int = 16 * 1024) -> None:
        """Send ``size`` random bytes and read them back; fail unless the SHA-256 of both agree."""
        payload = secrets.token_bytes(size)
        back = bytearray()

        async def reader() -> None:
            while len(back) < size:
                data = await asyncio.wait_for(self.stream.read(), 20)
                assert data, f"the stream ended after {len(back)} of {size} bytes"
                back.extend(data)

        async def writer() -> None:
            for offset in range(0, size, chunk):
                await self.stream.write(payload[offset:offset + chunk])

        await asyncio.gather(reader(), writer())
        assert len(back) == size
        assert hashlib.sha256(back).hexdigest() == hashlib.sha256(payload).hexdigest()
        self.sent += size
        self.received += size

    @property
    def client_to_host(self) -> int:
        return len(ECHO) + self.sent
