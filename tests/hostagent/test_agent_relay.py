"""The agent's bridge between the gateway link and the RDP listener, over real sockets on 127.0.0.1."""
from __future__ import annotations

import asyncio
import gc

from hostagent.agent import relay

TIMEOUT = 10.0  # an upper bound for a loaded machine, not a speed assertion


def port_of(server: asyncio.AbstractServer) -> int:
    return server.sockets[0].getsockname()[1]


async def test_a_bridge_waiting_on_both_sides_survives_garbage_collection():
    # asyncio's client streams are held by their protocol only weakly: a bridge nobody references
    # would be collected while it waits, and the session would die silently under load.
    at_listener: asyncio.Queue[bytes] = asyncio.Queue()
    gateway_sides: list[asyncio.StreamWriter] = []

    async def rdp_listener(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await at_listener.put(await reader.readexactly(5))

    async def gateway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        gateway_sides.append(writer)
        await reader.read()

    listener = await asyncio.start_server(rdp_listener, "127.0.0.1", 0)
    gateway_server = await asyncio.start_server(gateway, "127.0.0.1", 0)
    async with listener, gateway_server:
        link = await asyncio.open_connection("127.0.0.1", port_of(gateway_server))
        rdp = await asyncio.open_connection("127.0.0.1", port_of(listener))
        relay.start_bridge(*link, *rdp, "3a183cce-c2c3-433f-aed1-6afd4dbe50c7")
        del link, rdp
        for _ in range(3):
            await asyncio.sleep(0.05)
            gc.collect()
        gateway_sides[0].write(b"hello")
        assert await asyncio.wait_for(at_listener.get(), TIMEOUT) == b"hello"
        gateway_sides[0].close()
        async with asyncio.timeout(TIMEOUT):
            while relay._bridges:  # noqa: SLF001 - the gateway hung up: the bridge ends and lets go
                await asyncio.sleep(0.01)
