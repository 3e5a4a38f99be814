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
from wire import relaylink

ACTIVITY = "3a183cce-c2c3-433f-aed1-6afd4dbe50c7"

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
        relay.start_bridge(*link, *rdp, ACTIVITY)
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


def agent_state(directory) -> AgentState:
    """A state directory with a CA and a key and certificate to prove with (the CA's own, for the test)."""
    write_root_files(directory, ec.generate_private_key(ec.SECP256R1()), "Agent Link Test CA")
    return AgentState(directory=directory, server="https://wvd.example.net", name="host-a", session_host_id=1,
                      host_pool="pool", key_file="ca.key", certificate_file="ca.crt")


async def gateway_answering(script) -> tuple[asyncio.AbstractServer, str]:
    """A stand-in gateway on 127.0.0.1 that runs ``script(reader, writer)`` after the upgrade request."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await script(reader, writer)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{port_of(server)}{relaylink.relay_path(ACTIVITY)}"


def challenge_then_refuse(expected: str, reason: str, seen: list[dict]):
    """A gateway script: upgrade, challenge, keep the agent's answer of type ``expected``, refuse it."""
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(relaylink.switching_protocols() + relaylink.challenge(b"\x01" * 32))
        seen.append(relaylink.decode(await reader.readline(), (expected,)))
        writer.write(relaylink.refused(reason))

    return script


async def test_a_refused_upgrade_fails_the_connect_order_with_the_gateways_words(tmp_path):
    async def not_found(reader, writer):
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 29\r\n\r\nno such connection here, sorry")

    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    gateway, url = await gateway_answering(not_found)
    async with listener, gateway:
        outcome = await relay.connect(agent_state(tmp_path), ("127.0.0.1", port_of(listener)), url, ACTIVITY,
                                      "wht1.ticket")
    assert outcome.status == "failed"
    assert "HTTP 404: no such connection here" in outcome.message


async def test_a_refused_hello_fails_the_connect_order_with_the_reason(tmp_path):
    hellos: list[dict] = []
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    gateway, url = await gateway_answering(
        challenge_then_refuse("hello", "the host ticket is for another connection", hellos))
    async with listener, gateway:
        outcome = await relay.connect(agent_state(tmp_path), ("127.0.0.1", port_of(listener)), url, ACTIVITY,
                                      "wht1.ticket")
    assert outcome.status == "failed" and "the host ticket is for another connection" in outcome.message
    assert hellos[0]["ticket"] == "wht1.ticket" and hellos[0]["signature"]


async def test_an_unreachable_listener_is_reported_to_the_gateway_at_once(tmp_path):
    reports: list[dict] = []
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    dead_port = port_of(closed)
    closed.close()
    await closed.wait_closed()
    gateway, url = await gateway_answering(challenge_then_refuse("fail", "recorded", reports))
    async with gateway:
        outcome = await relay.connect(agent_state(tmp_path), ("127.0.0.1", dead_port), url, ACTIVITY, "wht1.ticket")
    assert outcome.status == "failed" and "unreachable" in outcome.message
    assert reports[0]["reason"] == "rdp_unreachable" and reports[0]["ticket"] == "wht1.ticket"


def test_the_link_trusts_our_ca_and_the_systems(tmp_path):
    # The gateway shows a gateway-tls certificate from our CA, or one the admin installed
    # (WVD_GATEWAY_CERT_FILE) that RDP clients trust through the system's store: the agent accepts both.
    state = agent_state(tmp_path)
    context = state.relay_ssl_context()
    subjects = [dict(item[0] for item in cert["subject"]).get("commonName") for cert in context.get_ca_certs()]
    assert "Agent Link Test CA" in subjects
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    bundle = ssl.get_default_verify_paths().cafile
    if not bundle or not os.path.exists(bundle):
        pytest.skip("this machine has no system CA bundle")
    assert len(subjects) > 1
