"""What TLS costs a Python relay: the CPU a bare asyncio relay spends per MB, with and without TLS.

    .venv/bin/python bench/tlsrelay.py            # 256 MiB per transfer, 3 alternating rounds
    .venv/bin/python bench/tlsrelay.py --quick    # 8 MiB, 1 round

The relay is bench/tcprelay.py (64 KiB reads, drain on every write, no framing) in three shapes, started
side by side and taking turns: plain on both sides; TLS towards the client only (the shape of websockify
over TLS); TLS on both sides (the gateway's shape: the client's TLS in, the agent link's TLS out). A source
in this process sends one stream through each (host → client) and the figure is the relay process's CPU
per MB, with the ratio to the plain relay measured in the same run. It tells how much of the gateway's own
cost per MB (bench/relay.py, bench/RESULTS.md) is terminating two TLS connections in Python at all.
"""
from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.clients import client_tls_context  # noqa: E402
from bench.harness import (  # noqa: E402
    Child,
    cpu_seconds,
    exit_on_sigterm,
    free_port,
    machine_description,
    markdown_table,
    start_child,
)
from bench.relay import write_self_signed  # noqa: E402

MiB = 1 << 20
WRITE_SIZE = 64 * 1024
SHAPES = ("plain → plain", "TLS → plain (websockify's shape)", "TLS → TLS (the gateway's shape)")


class Source:
    """Sends ``total`` bytes in 64 KiB writes to each connection, then closes it (plain or TLS)."""

    def __init__(self) -> None:
        self.total = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunk = b"\x5a" * WRITE_SIZE
        try:
            for _ in range(self.total // WRITE_SIZE):
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


async def transfer(port: int, tls: Path | None, relay: Child) -> tuple[float, float]:
    """One stream through a relay (``tls``: over TLS, trusting that certificate): (MB/s, the relay's CPU ms
    per MB)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_tls_context(tls) if tls else None,
                                                   limit=4 * MiB)
    cpu_before, started, received = cpu_seconds(relay.pid), time.perf_counter(), 0
    while data := await reader.read(4 * MiB):
        received += len(data)
    seconds = time.perf_counter() - started
    cpu = cpu_seconds(relay.pid) - cpu_before
    writer.close()
    megabytes = received / 1e6
    return megabytes / seconds, 1000 * cpu / megabytes


async def run(options: argparse.Namespace, work: Path) -> str:
    source = Source()
    cert, key = write_self_signed(work)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(str(cert), str(key))
    plain_source = await asyncio.start_server(source.serve, "127.0.0.1", 0)
    tls_source = await asyncio.start_server(source.serve, "127.0.0.1", 0, ssl=server_tls)
    plain_port, tls_port = (server.sockets[0].getsockname()[1] for server in (plain_source, tls_source))
    relay = [sys.executable, str(Path(__file__).parent / "tcprelay.py")]
    listen_tls = ["--cert", str(cert), "--key", str(key)]
    relays: dict[str, tuple[Child, int, Path | None]] = {}
    try:
        for name, target, extra, tls in (
            (SHAPES[0], plain_port, [], None),
            (SHAPES[1], plain_port, listen_tls, cert),
            (SHAPES[2], tls_port, [*listen_tls, "--target-ca", str(cert)], cert),
        ):
            port = free_port()
            child = start_child(f"relay-{len(relays)}", [*relay, "--port", str(port), "--target",
                                                           f"127.0.0.1:{target}", *extra], work, port)
            relays[name] = (child, port, tls)
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in SHAPES}
        source.total = min(options.size, 8) * MiB
        for name in SHAPES:  # warm-up: imports, TLS session set-up, TCP autotuning
            child, port, tls = relays[name]
            await transfer(port, tls, child)
        source.total = options.size * MiB
        for index in range(options.rounds):
            for name in SHAPES[index % 3:] + SHAPES[:index % 3]:
                child, port, tls = relays[name]
                figures[name].append(await transfer(port, tls, child))
    finally:
        for child, _, _ in relays.values():
            child.stop()
        plain_source.close()
        tls_source.close()
    cost = {name: statistics.median(ms for _, ms in figures[name]) for name in SHAPES}
    plain = cost[SHAPES[0]]  # CPU time comes in clock ticks: a tiny --size can measure none at all
    rows = [[name, f"{statistics.median(mbs for mbs, _ in figures[name]):.0f}", f"{cost[name]:.2f}",
             f"{cost[name] / plain:.2f}" if plain else "–"] for name in SHAPES]
    return "\n\n".join([
        f"## bench/tlsrelay.py{' --quick' if options.quick else ''}",
        machine_description(),
        f"### One stream host → client through a bare asyncio relay, {options.size} MiB per transfer",
        markdown_table(["relay", "MB/s", "relay CPU ms per MB", "CPU ÷ plain"], rows),
        (f"Median of {options.rounds} alternating rounds. The second TLS connection costs the relay "
         f"{max(0.0, cost[SHAPES[2]] - cost[SHAPES[1]]):.2f} ms per MB here (at least a few MiB are needed to see it); compare the gateway's own CPU per MB in "
         "bench/RESULTS.md."),
    ])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI size: 8 MiB, one round")
    parser.add_argument("--size", type=int, help="MiB per transfer (default 256; quick 8)")
    parser.add_argument("--rounds", type=int, help="alternating rounds (default 3; quick 1)")
    options = parser.parse_args(argv)
    options.size = options.size or (8 if options.quick else 256)
    options.rounds = options.rounds or (1 if options.quick else 3)
    if options.size < 1:
        parser.error("--size must be at least 1 MiB")
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    exit_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="wvd-bench-tlsrelay-") as work:
        print(asyncio.run(run(options, Path(work))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
