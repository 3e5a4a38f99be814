"""One relayed session through our gateway, against a plain asyncio TCP relay and websockify, on loopback.

    .venv/bin/python bench/relay.py            # full run: 256 MiB per transfer, 3 rounds, 5,000 round trips
    .venv/bin/python bench/relay.py --quick    # CI size: a few seconds of each measurement

The contenders run side by side in this one run, taking turns (each round runs every contender once, in
a rotated order), and the ratios come from these same figures:

- gateway: the whole product path. A control plane (`serve`, embedded default) with a registered agent
  (`python -m hostagent.agent run`) whose RDP target is bench/target.py; the client (bench/clients.py)
  speaks MS-TSGU over WebSocket over TLS to the gateway as FreeRDP 2.11 does, with the ticket of the
  .rdp file the feed served. Bytes go client → TLS/WebSocket/TSGU → gateway → agent link (TLS to the
  gateway's own listener, raw bytes after an HTTP upgrade) → agent → TCP → target.
- tcp relay: bench/tcprelay.py, a plain asyncio TCP relay (no TLS, no framing).
- websockify (ws): websockify from PyPI relaying WebSocket → TCP, no TLS, as its default.
- websockify (wss): the same with TLS, like for like with the gateway, whose client side is always TLS.
- direct: the client straight to the target (the round-trip baseline).

Figures: throughput each way with 16 KiB and 64 KiB writes; the round trip added to a 64-byte
ping-pong; the gateway's RSS growth while a client limited to 10 MB/s reads 256 MiB.
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import workloads  # noqa: E402
from bench.clients import TcpStream, WebSocketStream, client_tls_context  # noqa: E402
from bench.harness import (  # noqa: E402
    EMBEDDED,
    Child,
    Estate,
    exit_on_sigterm,
    machine_description,
    markdown_table,
    median,
    percentile,
    rss_bytes,
    sampling_rss,
    start_child,
    start_target,
    verdict,
)
from testbed.ports import free_port  # noqa: E402

MiB = 1 << 20
THROUGHPUT_SHARE_TARGET = 0.20  # of the plain TCP relay
ADDED_RTT_TARGET = 1e-3  # seconds, p50
RSS_GROWTH_TARGET = 32 * MiB
SLOW_READER_RATE = 10e6  # bytes/s


def write_self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 (generated here, never stored in the repository);
    the bench's clients trust it as their only CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
                   .not_valid_after(now + timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "websockify-cert.pem", directory / "websockify-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return cert_path, key_path


class Contenders:
    """Every relay of this run, started once, and how the client opens a stream through each."""

    def __init__(self, work_dir: Path, quick: bool) -> None:
        self.work_dir = work_dir
        self.quick = quick
        self.children: list[Child] = []
        self.estate: Estate | None = None
        self.openers: dict[str, Callable[[], Awaitable]] = {}
        self.target_port = 0

    def start(self) -> None:
        logs = self.work_dir / "logs"
        target, port = start_target(logs)
        self.children.append(target)
        self.target_port = port
        relay_port = free_port()
        self.children.append(start_child("tcprelay", [sys.executable, str(Path(__file__).parent / "tcprelay.py"),
                                                      "--port", str(relay_port), "--target", f"127.0.0.1:{port}"],
                                         logs, relay_port))
        ws_port, wss_port = free_port(), free_port()
        websockify = [sys.executable, "-m", "websockify"]
        self.children.append(start_child("websockify", [*websockify, f"127.0.0.1:{ws_port}", f"127.0.0.1:{port}"],
                                         logs, ws_port))
        cert, key = write_self_signed(self.work_dir)
        self.children.append(start_child(
            "websockify-tls",
            [*websockify, "--cert", str(cert), "--key", str(key), "--ssl-only", f"127.0.0.1:{wss_port}",
             f"127.0.0.1:{port}"],
            logs, wss_port))
        self.estate = Estate(EMBEDDED, f"127.0.0.1:{port}")
        self.estate.start()
        estate = self.estate
        self.openers = {
            "direct": lambda: TcpStream.open("127.0.0.1", port),
            "tcp relay": lambda: TcpStream.open("127.0.0.1", relay_port),
            "websockify (ws)": lambda: WebSocketStream.open("127.0.0.1", ws_port),
            "websockify (wss)": lambda: WebSocketStream.open("127.0.0.1", wss_port, tls=client_tls_context(cert)),
            "gateway": estate.open_session,
        }

    def stop(self) -> None:
        if self.estate is not None:
            self.estate.stop()
        for child in self.children:
            child.stop()


RELAYS = ("tcp relay", "websockify (ws)", "websockify (wss)", "gateway")


async def measure_throughput(contenders: Contenders, total: int, rounds: int) -> dict:
    """MB/s per (direction, write size, contender): the median over ``rounds`` alternating rounds."""
    cases = [("host → client", 16 * 1024), ("host → client", 64 * 1024),
             ("client → host", 16 * 1024), ("client → host", 64 * 1024)]
    results: dict[tuple[str, int], dict[str, list[float]]] = {case: {name: [] for name in RELAYS} for case in cases}
    for direction, size in cases:
        run = workloads.host_to_client if direction.startswith("host") else workloads.client_to_host
        # One untimed warm-up each: first connections pay for imports, caches and TCP autotuning.
        for name in RELAYS:
            stream = await contenders.openers[name]()
            await run(stream, min(total, 8 * MiB), size)
            await stream.close()
        for index in range(rounds):
            order = RELAYS[index % len(RELAYS):] + RELAYS[:index % len(RELAYS)]
            for name in order:
                stream = await contenders.openers[name]()
                try:
                    seconds = await run(stream, total, size)
                finally:
                    await stream.close()
                results[(direction, size)][name].append(total / seconds / 1e6)
    return results


async def measure_round_trips(contenders: Contenders, count: int, rounds: int) -> dict[str, list[float]]:
    """64-byte ping-pong round trips (s), in alternating blocks, for the direct path and every relay."""
    names = ("direct", *RELAYS)
    times: dict[str, list[float]] = {name: [] for name in names}
    streams = {}
    for name in names:
        streams[name] = await contenders.openers[name]()
        await workloads.ping_pong(streams[name], 200)  # warm-up
    try:
        per_block = max(1, count // rounds)
        for index in range(rounds):
            order = names[index % len(names):] + names[:index % len(names)]
            for name in order:
                times[name] += await workloads.ping_pong(streams[name], per_block, started=True)
    finally:
        for stream in streams.values():
            await stream.close()
    return times


async def measure_slow_reader(contenders: Contenders, total: int) -> dict:
    estate = contenders.estate
    assert estate is not None
    stream = await estate.open_session()
    serve, agent = estate.serve_pid, estate.agent_pids[0]
    serve_before, agent_before = rss_bytes(serve), rss_bytes(agent)
    try:
        with sampling_rss(serve) as serve_samples, sampling_rss(agent) as agent_samples:
            rate = total / await workloads.host_to_client(stream, total, 64 * 1024, rate=SLOW_READER_RATE)
    finally:
        await stream.close()
    return {"rate": rate, "serve_before": serve_before, "serve_peak": max(serve_samples),
            "agent_before": agent_before, "agent_peak": max(agent_samples)}


def throughput_table(results: dict, rounds: int) -> str:
    rows = []
    for (direction, size), by_name in results.items():
        mbs = {name: median(values) for name, values in by_name.items()}
        gateway = mbs["gateway"]
        share = gateway / mbs["tcp relay"]
        vs_wss, vs_ws = gateway / mbs["websockify (wss)"], gateway / mbs["websockify (ws)"]
        rows.append([
            direction, f"{size // 1024} KiB",
            *(f"{mbs[name]:,.0f}" for name in RELAYS),
            f"{share:.2f}", f"{vs_wss:.2f}", f"{vs_ws:.2f}",
            verdict(share >= THROUGHPUT_SHARE_TARGET and vs_wss > 1),
            verdict(share >= THROUGHPUT_SHARE_TARGET and vs_ws > 1),
        ])
    headers = ["direction", "writes", *(f"{name} MB/s" for name in RELAYS), "gw / tcp relay",
               "gw / wss", "gw / ws", "target (wss)", "target (ws)"]
    return markdown_table(headers, rows) + (
        f"\n\nMB/s = 10^6 bytes/s, median of {rounds} alternating rounds per cell. Target: the gateway moves at "
        "least 0.20 of the plain TCP relay and more than websockify; \"target (wss)\" compares with websockify "
        "over TLS like the gateway (like for like), \"target (ws)\" with websockify's default plain WebSocket.")


def round_trip_table(times: dict[str, list[float]]) -> str:
    direct50, direct99 = percentile(times["direct"], 50), percentile(times["direct"], 99)
    rows = []
    for name, values in times.items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        added50, added99 = p50 - direct50, p99 - direct99
        check = verdict(added50 < ADDED_RTT_TARGET) if name == "gateway" else ""
        rows.append([name, len(values), f"{p50 * 1e6:,.0f}", f"{p99 * 1e6:,.0f}",
                     "" if name == "direct" else f"{added50 * 1e6:,.0f}",
                     "" if name == "direct" else f"{added99 * 1e6:,.0f}", check])
    return markdown_table(["path", "round trips", "p50 µs", "p99 µs", "added p50 µs", "added p99 µs",
                           "gateway added p50 < 1 ms"], rows)


def slow_reader_table(figures: dict, total: int) -> str:
    growth = figures["serve_peak"] - figures["serve_before"]
    agent_growth = figures["agent_peak"] - figures["agent_before"]
    rows = [[f"{total // MiB} MiB at ≤ 10 MB/s", f"{figures['rate'] / 1e6:.1f}",
             f"{figures['serve_before'] / MiB:.1f}", f"{figures['serve_peak'] / MiB:.1f}", f"{growth / MiB:+.1f}",
             f"{agent_growth / MiB:+.1f}", verdict(growth < RSS_GROWTH_TARGET)]]
    return markdown_table(["slow reader", "achieved MB/s", "gateway RSS before MiB", "gateway RSS peak MiB",
                           "gateway growth MiB", "agent growth MiB", "gateway growth < 32 MiB"], rows)


async def run(options: argparse.Namespace, contenders: Contenders) -> str:
    total = options.size * MiB
    started = time.monotonic()
    results = await measure_throughput(contenders, total, options.rounds)
    times = await measure_round_trips(contenders, options.round_trips, options.rtt_blocks)
    slow = await measure_slow_reader(contenders, options.slow_size * MiB)
    return "\n\n".join([
        f"## bench/relay.py{' --quick' if options.quick else ''}",
        machine_description(),
        f"### Throughput, one session, {options.size} MiB per transfer",
        throughput_table(results, options.rounds),
        "### Round trip, 64-byte ping-pong (alternating blocks)",
        round_trip_table(times),
        "### Gateway memory with a slow reader",
        slow_reader_table(slow, options.slow_size * MiB),
        f"Run took {time.monotonic() - started:.0f} s (setup excluded).",
    ])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI size: small transfers, one round")
    parser.add_argument("--size", type=int, help="MiB per throughput transfer (default 256; quick 8)")
    parser.add_argument("--rounds", type=int, help="alternating rounds per throughput cell (default 3; quick 1)")
    parser.add_argument("--round-trips", type=int, help="ping-pongs per path (default 5000; quick 300)")
    parser.add_argument("--slow-size", type=int, help="MiB the slow reader receives (default 256; quick 8)")
    options = parser.parse_args(argv)
    quick = options.quick
    options.size = options.size or (8 if quick else 256)
    options.rounds = options.rounds or (1 if quick else 3)
    options.round_trips = options.round_trips or (300 if quick else 5000)
    options.rtt_blocks = 1 if quick else 5
    options.slow_size = options.slow_size or (8 if quick else 256)
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    exit_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="wvd-bench-relay-") as work:
        contenders = Contenders(Path(work), options.quick)
        try:
            contenders.start()
            print(asyncio.run(run(options, contenders)), flush=True)
        finally:
            contenders.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
