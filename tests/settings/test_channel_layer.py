"""The Redis channel layer waits for a free connection when a burst of calls wants more than its pool holds
(core/channellayer.py): the calls of thousands of host channels closing at once are made, not refused. On the
PostgreSQL + Redis shape (it needs the Redis of WVD_REDIS_URL)."""
from __future__ import annotations

import asyncio
import secrets

import pytest
from channels_redis.core import RedisChannelLayer as ChannelsRedisLayer
from django.conf import settings
from redis.exceptions import MaxConnectionsError

from core.channellayer import RedisChannelLayer

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis (WVD_REDIS_URL): the PostgreSQL + Redis shape")

BURST = 200
GROUPS = 5


def layer_config() -> dict:
    return {"hosts": [{"address": settings.REDIS_URL, "socket_timeout": 30}],
            "prefix": f"{settings.REDIS_NAMESPACE}:test-{secrets.token_hex(4)}"}


async def join_all(layer) -> list[object]:
    """``BURST`` channels join ``GROUPS`` groups at once, as a fleet's channels do when they (re)connect."""
    return await asyncio.gather(*(layer.group_add(f"pool-{i % GROUPS}", f"specific.test!{i}") for i in range(BURST)),
                                return_exceptions=True)


async def members(layer) -> int:
    connection = layer.connection(0)
    return sum([await connection.zcard(layer._group_key(f"pool-{i}")) for i in range(GROUPS)])


def test_the_deployment_uses_the_waiting_layer_with_its_configured_size():
    config = settings.CHANNEL_LAYERS["default"]
    assert config["BACKEND"] == "core.channellayer.RedisChannelLayer"
    assert config["CONFIG"]["max_connections"] == settings.REDIS_CHANNEL_CONNECTIONS


async def test_a_burst_larger_than_the_pool_waits_for_connections_and_every_call_is_made():
    layer = RedisChannelLayer(**layer_config(), max_connections=4)
    try:
        results = await join_all(layer)
        assert [result for result in results if isinstance(result, BaseException)] == []
        assert await members(layer) == BURST
        assert layer.connection(0).connection_pool.max_connections == 4
    finally:
        await layer.flush()


async def test_channels_redis_s_own_pool_refuses_the_same_burst():
    # Why the layer is ours: the library's pool fails the calls beyond its size at once.
    layer = ChannelsRedisLayer(**{**layer_config(), "hosts": [{"address": settings.REDIS_URL, "max_connections": 4}]})
    try:
        results = await join_all(layer)
        refused = [result for result in results if isinstance(result, MaxConnectionsError)]
        assert refused and await members(layer) == BURST - len(refused)
    finally:
        await layer.flush()
