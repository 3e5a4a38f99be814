"""The relay core pairs two ends by connection id and moves bytes in order, once, with bounded memory."""
from __future__ import annotations

import asyncio

import pytest

from gateway.relay import Relay, RelayError, Rendezvous, Side, pump


class RecordingEnd:
    def __init__(self, delay: float = 0.0) -> None:
        self.received: list[bytes] = []
        self.closed_with: str | None = None
        self.delay = delay

    async def send(self, data: bytes) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.received.append(data)

    def close(self, reason: str) -> None:
        self.closed_with = reason


async def test_bytes_flow_both_ways_and_are_counted():
    relay = Relay("c1")
    client, host = RecordingEnd(), RecordingEnd()
    await relay.attach(Side.CLIENT, client)
    await relay.attach(Side.HOST, host)
    assert relay.paired.is_set()
    await relay.deliver(Side.CLIENT, b"hello")
    await relay.deliver(Side.HOST, b"world!")
    assert host.received == [b"hello"] and client.received == [b"world!"]
    assert (relay.bytes_client_to_host, relay.bytes_host_to_client) == (5, 6)


async def test_bytes_that_arrive_before_the_peer_are_flushed_first_in_order():
    relay = Relay("c2")
    await relay.attach(Side.CLIENT, RecordingEnd())
    host = RecordingEnd(delay=0.01)
    await relay.deliver(Side.CLIENT, b"1")
    await relay.deliver(Side.CLIENT, b"2")
    attaching = asyncio.ensure_future(relay.attach(Side.HOST, host))
    await asyncio.sleep(0)  # the flush is under way and slow
    await relay.deliver(Side.CLIENT, b"3")  # arrives during the flush: must not overtake 1 and 2
    await attaching
    await relay.deliver(Side.CLIENT, b"4")
    assert host.received == [b"1", b"2", b"3", b"4"]


async def test_too_many_early_bytes_end_the_connection_instead_of_buffering_without_limit():
    ended = []
    relay = Relay("c3", on_end=ended.append, max_pending=10)
    await relay.deliver(Side.CLIENT, b"x" * 8)
    await relay.deliver(Side.CLIENT, b"x" * 8)
    assert relay.is_ended and ended[0].ended_by is Side.CLIENT
    assert "more than 10 bytes" in ended[0].reason


async def test_the_end_is_reported_once_and_closes_both_ends():
    ended = []
    relay = Relay("c4", on_end=ended.append)
    client, host = RecordingEnd(), RecordingEnd()
    await relay.attach(Side.CLIENT, client)
    await relay.attach(Side.HOST, host)
    await relay.deliver(Side.HOST, b"abc")
    first = relay.end(Side.HOST, "host closed")
    second = relay.end(Side.CLIENT, "client closed")
    assert first is second and len(ended) == 1
    assert ended[0].ended_by is Side.HOST and ended[0].bytes_host_to_client == 3
    assert client.closed_with == host.closed_with == "host closed"
    await relay.deliver(Side.CLIENT, b"late")  # ignored after the end
    assert host.received == []


async def test_attaching_twice_or_after_the_end_is_refused():
    relay = Relay("c5")
    await relay.attach(Side.HOST, RecordingEnd())
    with pytest.raises(RelayError, match="already attached"):
        await relay.attach(Side.HOST, RecordingEnd())
    relay.end(None, "gateway stopping")
    late = RecordingEnd()
    with pytest.raises(RelayError, match="already ended"):
        await relay.attach(Side.CLIENT, late)
    assert late.closed_with == "gateway stopping"


async def test_the_rendezvous_forgets_a_connection_when_it_ends():
    rendezvous = Rendezvous()
    reported = []
    relay = rendezvous.open("c6", on_end=reported.append)
    with pytest.raises(RelayError):
        rendezvous.open("c6")
    assert rendezvous.get("c6") is relay
    relay.end(Side.CLIENT, "client closed")
    assert rendezvous.get("c6") is None and len(rendezvous) == 0 and reported


async def test_waiting_for_the_host_times_out_or_returns_when_paired():
    rendezvous = Rendezvous()
    relay = rendezvous.open("c7")
    await relay.attach(Side.CLIENT, RecordingEnd())
    assert await rendezvous.wait_paired(relay, timeout=0.05) is False

    async def host_arrives() -> None:
        await asyncio.sleep(0.01)
        await relay.attach(Side.HOST, RecordingEnd())

    arrival = asyncio.ensure_future(host_arrives())
    assert await rendezvous.wait_paired(relay, timeout=5) is True
    await arrival


async def test_waiting_returns_false_when_the_client_leaves_first():
    rendezvous = Rendezvous()
    relay = rendezvous.open("c8")
    asyncio.get_running_loop().call_later(0.01, relay.end, Side.CLIENT, "client closed")
    assert await rendezvous.wait_paired(relay, timeout=5) is False


async def test_pump_reads_until_eof_and_ends_the_relay():
    relay = Relay("c9")
    host = RecordingEnd()
    await relay.attach(Side.CLIENT, RecordingEnd())
    await relay.attach(Side.HOST, host)
    chunks = [b"a", b"b", b""]

    async def read() -> bytes:
        return chunks.pop(0)

    await pump(read, relay, Side.CLIENT)
    assert host.received == [b"a", b"b"]
    assert relay.result.ended_by is Side.CLIENT and relay.result.reason == "client closed"


async def test_pump_turns_a_lost_connection_into_an_end():
    relay = Relay("c10")

    async def read() -> bytes:
        raise ConnectionResetError

    await pump(read, relay, Side.HOST)
    assert relay.result.ended_by is Side.HOST and "connection lost" in relay.result.reason
