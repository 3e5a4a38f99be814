"""The Redis channel layer with a pool that waits for a connection when a burst wants more than it holds.

channels_redis builds redis-py's plain ``ConnectionPool`` for each event loop, which refuses the call that would
open connection number ``max_connections`` + 1 at once (``MaxConnectionsError: Too many connections``). Every
host channel's heartbeat, hello and close makes such calls; when thousands of agents reconnect or drop at once
(bench/RESULTS.md saw about 4,300 refusals per instance as 5,000 channels closed together), the refused calls
were lost: a closed channel's host stayed Available until its heartbeats were missed. Here the pool is redis-py's
``BlockingConnectionPool``: the extra calls wait, up to ``connection_wait`` seconds, for one of the
``max_connections`` (WVD_REDIS_CHANNEL_CONNECTIONS) connections to be free; only a wait that long fails.
"""
from __future__ import annotations

from channels_redis.core import RedisChannelLayer as ChannelsRedisLayer
from redis.asyncio import BlockingConnectionPool

CONNECTION_WAIT = 10.0  # seconds a call waits for a free connection (within the agents' 15 s for a hello)


class RedisChannelLayer(ChannelsRedisLayer):
    def __init__(self, *args, max_connections: int = 100, connection_wait: float = CONNECTION_WAIT,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        self.connection_wait = connection_wait

    def create_pool(self, index: int) -> BlockingConnectionPool:
        """One pool per shard and event loop (channels_redis's RedisLoopLayer asks), bounded and waiting."""
        host = dict(self.hosts[index])
        if "address" not in host:  # a sentinel or keyword host: not how settings.py configures Redis
            raise ValueError("the channel layer's Redis hosts are given by address (WVD_REDIS_URL)")
        address = host.pop("address")
        return BlockingConnectionPool.from_url(address, max_connections=self.max_connections,
                                               timeout=self.connection_wait, **host)
