"""The agent's bridge between the gateway link and the RDP listener, over real sockets on 127.0.0.1."""
from __future__ import annotations

import asyncio
import gc
import os
import ssl

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from hostagent.agent import relay
from hostagent.agent.state import AgentState
from tests.ca_files import write_root_files

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


def test_the_link_trusts_our_ca_and_the_systems(tmp_path):
    # The gateway shows a gateway-tls certificate from our CA, or one the admin installed
    # (WVD_GATEWAY_CERT_FILE) that RDP clients trust through the system's store: the agent accepts both.
    write_root_files(tmp_path, ec.generate_private_key(ec.SECP256R1()), "Agent Link Test CA")
    state = AgentState(directory=tmp_path, server="https://wvd.example.net", name="host-a", session_host_id=1,
                       host_pool="pool", key_file="agent.key", certificate_file="agent.crt")
    context = state.relay_ssl_context()
    subjects = [dict(item[0] for item in cert["subject"]).get("commonName") for cert in context.get_ca_certs()]
    assert "Agent Link Test CA" in subjects
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    bundle = ssl.get_default_verify_paths().cafile
    if not bundle or not os.path.exists(bundle):
        pytest.skip("this machine has no system CA bundle")
    assert len(subjects) > 1
