"""Per-frame cost of WebSocket framing (and TSGU DATA on top) for 16 KiB payloads.

Run: ``.venv/bin/python bench/wsframing.py [--frames N] [--size BYTES]``. Prints frames/s and MB/s for
parsing and building server and client frames with the ``websockets`` sans-I/O layer as
``gateway/wsframing.py`` uses it, a hand-made unmasked frame build for reference, and the RD Gateway
session's DATA path. Single-threaded, in memory: an upper bound for what the relay's framing can do.
"""
from __future__ import annotations

import argparse
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Runnable as a script from the repository root or from bench/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from websockets.protocol import Protocol, Side, State  # noqa: E402

from gateway import rdg  # noqa: E402
from gateway.rdg_session import RdgServerSession, SessionState  # noqa: E402
from gateway.wsframing import ServerWebSocket  # noqa: E402


def measure(name: str, frames: int, size: int, run: Callable[[int], None]) -> None:
    run(min(frames, 200))  # warm up
    start = time.perf_counter()
    run(frames)
    elapsed = time.perf_counter() - start
    print(f"{name:<52} {frames / elapsed:>12,.0f} frames/s {frames * size / elapsed / 1e6:>10,.0f} MB/s")


def client_frames(payload: bytes, count: int) -> list[bytes]:
    """Masked frames as a client (FreeRDP) sends them, each with its own random key."""
    client = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
    frames = []
    for _ in range(count):
        client.send_binary(payload)
        frames.append(b"".join(client.data_to_send()))
    return frames


def opened_session() -> RdgServerSession:
    session = RdgServerSession()
    session.receive_data(rdg.build_handshake_request())
    session.receive_data(rdg.build_tunnel_create("token"))
    session.accept_tunnel(1)
    session.receive_data(rdg.build_tunnel_auth("bench"))
    session.receive_data(rdg.build_channel_create(["host"], 3389))
    session.accept_channel(1)
    assert session.state is SessionState.OPENED
    return session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--size", type=int, default=16 * 1024)
    args = parser.parse_args()
    frames, size = args.frames, args.size
    payload = bytes(i % 251 for i in range(size))

    masked = client_frames(payload, 64)
    server_side = ServerWebSocket()
    unmasked = server_side.send_binary(payload)

    def server_parse(n: int) -> None:
        ws = ServerWebSocket()
        for i in range(n):
            ws.receive_data(masked[i & 63])

    def server_parse_4_per_read(n: int) -> None:
        ws = ServerWebSocket()
        batch = b"".join(masked[:4])
        for _ in range(n // 4):
            ws.receive_data(batch)

    def server_build(n: int) -> None:
        ws = ServerWebSocket()
        for _ in range(n):
            ws.send_binary(payload)

    def handmade_build(n: int) -> None:
        # The 16-bit length form; enough to show the library's per-frame overhead over the bare copy.
        pack = struct.Struct("!BBH").pack
        for _ in range(n):
            pack(0x82, 126, size & 0xFFFF) + payload

    def client_build(n: int) -> None:
        client = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
        for _ in range(n):
            client.send_binary(payload)
            client.data_to_send()

    def client_parse(n: int) -> None:
        client = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
        for _ in range(n):
            client.receive_data(unmasked)
            client.events_received()

    tsgu_size = min(size, rdg.MAX_DATA_LENGTH)
    data_packet = rdg.build_data(payload[:tsgu_size])

    def session_receive(n: int) -> None:
        session = opened_session()
        for _ in range(n):
            session.receive_data(data_packet)

    def session_send(n: int) -> None:
        session = opened_session()
        chunk = payload[:16000]
        for _ in range(n):
            session.send_data(chunk)

    def relay_client_to_target(n: int) -> None:
        """What the gateway does per client frame: unframe, unwrap DATA."""
        ws, session = ServerWebSocket(), opened_session()
        frames_ = [b"".join(client_frames(data_packet, 1)) for _ in range(8)]
        for i in range(n):
            for piece in ws.receive_data(frames_[i & 7]):
                session.receive_data(piece)

    def relay_target_to_client(n: int) -> None:
        """What the gateway does per target read: wrap in DATA, frame each packet."""
        ws, session = ServerWebSocket(), opened_session()
        chunk = payload[:16000]
        for _ in range(n):
            for packet in session.send_data(chunk):
                ws.send_binary(packet)

    print(f"{frames} frames of {size} bytes (TSGU rows: {tsgu_size}/16000-byte DATA packets)")
    measure("server parse, masked client frame (1 per read)", frames, size, server_parse)
    measure("server parse, masked client frames (4 per read)", frames, size, server_parse_4_per_read)
    measure("server build, unmasked frame", frames, size, server_build)
    measure("  reference: hand-made unmasked header + payload", frames, size, handmade_build)
    measure("client build, masked frame (connector side)", frames, size, client_build)
    measure("client parse, unmasked server frame", frames, size, client_parse)
    measure("TSGU session: parse one DATA packet", frames, tsgu_size, session_receive)
    measure("TSGU session: build DATA packets", frames, 16000, session_send)
    measure("client->target: unframe + DATA unwrap", frames, tsgu_size, relay_client_to_target)
    measure("target->client: DATA wrap + frame", frames, 16000, relay_target_to_client)


if __name__ == "__main__":
    main()
