"""An RD Gateway listener in the test process with a simulated session host, for transport and connector
tests over real sockets on 127.0.0.1.

Everything on the gateway's side is the real thing: ``GatewayServer`` with a real ``Rendezvous``, ticket
checks, Connection records, and the broker's placement and connect order (Celery tasks run in process).
Only the session host is simulated, at the point where the gateway meets it: it listens on its host
channel group for the connect order, exactly as the agent's consumer would, records its arrival and
attaches its own end to the connection's relay — what the agent link (gateway/transports/agentlink.py)
does, without the second WebSocket.

Import the fixtures into a test module (``from tests.connector.gatewaybed import bed, eager_tasks, ...``);
``gateway_ssl`` is None (plain TCP) unless a conftest overrides it.
"""
from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db.backends.signals import connection_created

from broker.choices import SessionHostStatus
from broker.gateways import register_instance
from broker.hostbus import host_group
from broker.models import Connection, HostPool, SessionHost
from core.tickets import issue_connection_ticket
from feed.models import ApplicationGroup
from gateway import records
from gateway.relay import Relay, Rendezvous, Side
from gateway.server import GatewayConfig, GatewayServer

RECEIVE_TIMEOUT = 10.0  # an upper bound for a loaded machine, not a speed assertion
INSTANCE_NAME = "test-gateway"


def db(func: Callable) -> Callable:
    return database_sync_to_async(func, thread_sensitive=False)


class HostEnd:
    """The simulated host's end of a relay: what the gateway sent it, and how it was closed."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.closed_with: str | None = None
        self._changed = asyncio.Event()

    async def send(self, data: bytes) -> None:
        self.received += data
        self._changed.set()

    def close(self, reason: str) -> None:
        self.closed_with = reason
        self._changed.set()

    async def read_exactly(self, count: int) -> bytes:
        """The first ``count`` bytes the host got (waiting for them), removed from ``received``."""
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            while len(self.received) < count:
                self._changed.clear()
                await self._changed.wait()
        data = bytes(self.received[:count])
        del self.received[:count]
        return data

    async def wait_closed(self) -> str:
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            while self.closed_with is None:
                self._changed.clear()
                await self._changed.wait()
        return self.closed_with


@dataclass
class Arrival:
    activity_id: str
    relay: Relay
    end: HostEnd

    async def send(self, data: bytes) -> None:
        """Bytes from the session host to the client."""
        await self.relay.deliver(Side.HOST, data)

    def hang_up(self) -> None:
        self.relay.end(Side.HOST, "host closed")


@dataclass
class SimulatedHost:
    """A session host that answers every connect order by joining the relay in this process."""

    host_id: int
    rendezvous: Rendezvous
    arrivals: asyncio.Queue = field(default_factory=asyncio.Queue)
    # What the host does the moment it has joined, before the test sees it (speak first, hang up).
    on_arrival: Callable[[Arrival], Awaitable[None]] | None = None
    _task: asyncio.Task | None = None
    _channel: str = ""

    async def start(self) -> None:
        layer = get_channel_layer()
        self._channel = await layer.new_channel()
        await layer.group_add(host_group(self.host_id), self._channel)
        self._task = asyncio.ensure_future(self._serve(layer))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await get_channel_layer().group_discard(host_group(self.host_id), self._channel)

    async def _serve(self, layer) -> None:
        while True:
            event = await layer.receive(self._channel)
            message = event.get("message", {})
            if message.get("type") != "command" or message.get("command") != "connect":
                continue
            activity_id = message["args"]["activity_id"]
            relay = self.rendezvous.get(activity_id)
            if relay is None:
                continue
            await db(records.mark_host_connected)(activity_id)
            end = HostEnd()
            await relay.attach(Side.HOST, end)
            arrival = Arrival(activity_id, relay, end)
            if self.on_arrival is not None:
                await self.on_arrival(arrival)
            await self.arrivals.put(arrival)

    async def next_arrival(self) -> Arrival:
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            return await self.arrivals.get()


@dataclass
class Bed:
    server: GatewayServer
    port: int
    pool: HostPool
    host: SessionHost
    group: ApplicationGroup
    user: object
    simulated: SimulatedHost

    def ticket(self, user=None, lifetime: timedelta | None = None) -> str:
        # As the feed issues it: the resource is ``<application group>/<alias>``, a desktop group's is "desktop".
        return issue_connection_ticket(user=user or self.user, application_group_id=self.group.pk,
                                       resource=f"{self.group.name}/desktop", host_pool_id=self.pool.pk,
                                       host_pool_name=self.pool.name, lifetime=lifetime)

    async def last_connection(self) -> Connection:
        return await db(lambda: Connection.objects.order_by("-pk").first())()

    async def connection_when(self, predicate: Callable[[Connection], bool]) -> Connection:
        """The newest Connection once ``predicate`` holds for it (its end is recorded off the loop)."""
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            while True:
                connection = await self.last_connection()
                if connection is not None and predicate(connection):
                    return connection
                await asyncio.sleep(0.05)

    async def drain(self) -> None:
        await db(SessionHost.objects.filter(pk=self.host.pk).update)(allow_new_sessions=False)


@pytest.fixture
def eager_tasks():
    """Celery tasks run in this process, as in the embedded default, even when Redis is configured:
    these tests start no worker."""
    from wvdportal.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


@pytest.fixture
def gateway_ssl() -> ssl.SSLContext | None:
    return None


@pytest.fixture
def estate_rows(member, desktop_group, pooled_pool) -> tuple:
    """The conftest cast's member and desktop group, with one Available host in its pool."""
    host = SessionHost.objects.create(host_pool=pooled_pool, name="host-a", status=SessionHostStatus.AVAILABLE)
    return member, desktop_group, pooled_pool, host


def _sqlite_readers_do_not_lock(sender, connection, **kwargs) -> None:
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA read_uncommitted = 1")


@pytest.fixture
def concurrent_sqlite():
    """On SQLite the test database is a shared-cache in-memory database, where a reader locks the table
    against writers in other threads and nobody waits (no busy timeout): the gateway's threads and the
    test's polling would trip over each other. Readers stop taking those locks (the SQLite file the
    server uses in production has ordinary locking with a busy timeout)."""
    connection_created.connect(_sqlite_readers_do_not_lock)
    yield
    connection_created.disconnect(_sqlite_readers_do_not_lock)


@pytest.fixture
def in_memory_channel_layer(settings):
    """The connect order travels over an in-memory channel layer even when Redis is configured: these
    tests are about the client transports, and a receive on the Redis layer cancelled at teardown can
    stall for its socket timeout."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
async def bed(concurrent_sqlite, estate_rows, eager_tasks, in_memory_channel_layer, gateway_ssl) -> AsyncIterator[Bed]:
    member, group, pool, host = estate_rows
    server = GatewayServer(GatewayConfig(instance_name=INSTANCE_NAME, host_arrival_timeout=RECEIVE_TIMEOUT),
                           Rendezvous(), gateway_ssl)
    listener = await server.start("127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    await db(register_instance)(INSTANCE_NAME, "127.0.0.1", port, "https://127.0.0.1:9")
    simulated = SimulatedHost(host.pk, server.rendezvous)
    await simulated.start()
    try:
        yield Bed(server=server, port=port, pool=pool, host=host, group=group, user=member, simulated=simulated)
    finally:
        await simulated.stop()
        await server.stop()
