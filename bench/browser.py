"""The browser path (RDCleanPath) beside the RD Gateway path, through one gateway, on loopback, in one run.

    .venv/bin/python bench/browser.py            # full run: 128 MiB bulk, 8 MiB of xrdp bitmaps, 3 rounds
    .venv/bin/python bench/browser.py --quick    # CI size: a few seconds

One control plane (`serve`, embedded default) with a real agent (`python -m hostagent.agent run --rdp-cert
--rdp-key`, files in this run's temporary directory) whose RDP target is bench/rdptarget.py: an "RDP
listener" that answers the X.224 request choosing TLS and does TLS with the certificate the agent keeps,
read per connection. Nothing is measured before the host's agent has reported that certificate's
fingerprint (what the gateway pins). Three paths to the same target, taking turns in each round:

- direct: the client straight to the target, X.224 + TLS itself (the round-trip baseline).
- RD Gateway: the client speaks MS-TSGU over WebSocket over TLS as FreeRDP does (bench/clients.py's
  RdgStream, the .rdp file's ticket) and runs its own X.224 + TLS with the host *inside* the tunnel; the
  gateway relays ciphertext.
- browser: the client speaks RDCleanPath over wss to /remoteDesktopGateway/rdcleanpath as IronRDP's web
  client does (a single-use web ticket as proxy_auth, the portal's Origin); the *gateway* runs X.224 + TLS
  with the host through the relay, pins the certificate, and moves RDP plaintext as WebSocket messages,
  host → browser through the bitmap rewriter (wire.rdpbitmap.ServerBitmapFix).

Workloads (everything the host sends is RDP framing): bulk host → client (16 KiB X.224 Data PDUs that the
rewriter passes unchanged), xrdp's real padded bitmap PDUs host → client (testbed/rdpbitmap_vectors.py:
its Demand Active, then GREEN_BLOCK + BUTTON repeated; the browser path rewrites each), bulk client → host
(64 KiB writes), and a 64-byte TPKT ping-pong. Figures: MB/s, the gateway's (`serve`'s) CPU seconds per MB
from /proc/<pid>/stat before and after each transfer, the agent's too, the added round trip; every transfer
checks that the bytes arrived intact (SHA-256 of what arrived against what the host sent, or on the
browser path what the rewriter makes of it).
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import rdptarget, workloads  # noqa: E402
from bench.clients import BrowserStream, RdpTlsStream, TcpStream, client_tls_context  # noqa: E402
from bench.harness import (  # noqa: E402
    EMBEDDED,
    Child,
    Estate,
    cpu_seconds,
    exit_on_sigterm,
    machine_description,
    markdown_table,
    median,
    percentile,
    start_child,
)
from bench.target import pattern  # noqa: E402
from testbed.ports import free_port  # noqa: E402
from wire import rdpbitmap, x224  # noqa: E402

MiB = 1 << 20
PATHS = ("direct", "RD Gateway", "browser")
RELAYED = ("RD Gateway", "browser")
PING = x224.tpkt(rdptarget.X224_DATA + b"\x00" + pattern(64 - 8))  # a 64-byte TPKT PDU
TICKET_LIFETIME = 3 * 3600  # seconds; see Estate.web_tickets
TRANSFER_TIMEOUT = 600  # seconds: a transfer that stalls fails the run instead of hanging it


WorkloadError = workloads.WorkloadError


@dataclass
class Expected:
    """What the client must receive for one host → client command: its length and SHA-256."""

    length: int
    digest: bytes


def expected_bytes(command: str, count: int, rewritten: bool) -> Expected:
    """What arrives for ``command count``: the host's bytes, or what the rewriter makes of them."""
    head, unit, repeats = rdptarget.host_bytes(command, count)
    if rewritten:
        fix = rdpbitmap.ServerBitmapFix()
        head = fix.feed(head)
        first = fix.feed(unit)
        if fix.feed(unit) != first or fix.pending:
            raise WorkloadError("the rewriter's output for the repeated PDUs is not the same each time")
        unit = first
    digest = hashlib.sha256(head)
    per_update = max(1, (1 << 20) // len(unit))
    block = unit * per_update
    full, rest = divmod(repeats, per_update)
    for _ in range(full):
        digest.update(block)
    digest.update(unit * rest)
    return Expected(len(head) + len(unit) * repeats, digest.digest())


def host_length(command: str, count: int) -> int:
    head, unit, repeats = rdptarget.host_bytes(command, count)
    return len(head) + len(unit) * repeats


async def host_to_client(stream, command: str, count: int, expected: Expected) -> tuple[float, bool]:
    """Seconds until the client has everything the host sent for ``command``, and whether it is intact."""
    started = time.perf_counter()
    await stream.write(f"{command} {count}\n".encode("ascii"))
    digest, received = hashlib.sha256(), 0
    while received < expected.length:
        data = await stream.read()
        if not data:
            raise WorkloadError(f"the stream ended after {received} of {expected.length} bytes")
        received += len(data)
        digest.update(data)
    seconds = time.perf_counter() - started
    return seconds, received == expected.length and digest.digest() == expected.digest


async def ping_pong(stream, count: int) -> list[float]:
    clock = time.perf_counter
    times = []
    for _ in range(count):
        sent = clock()
        await stream.write(PING)
        received = b""
        while len(received) < len(PING):
            data = await stream.read()
            if not data:
                raise WorkloadError("the stream ended during a round trip")
            received += data
        times.append(clock() - sent)
        if received != PING:
            raise WorkloadError("a round trip came back changed")
    return times


@dataclass
class Bench:
    work_dir: Path
    children: list[Child] = field(default_factory=list)
    estate: Estate | None = None
    fingerprint: str = ""
    tickets: list[str] = field(default_factory=list)
    openers: dict[str, Callable[[], Awaitable]] = field(default_factory=dict)

    def start(self, browser_connections: int) -> None:
        logs = self.work_dir / "logs"
        logs.mkdir(exist_ok=True)
        cert, key = self.work_dir / "rdp-cert.pem", self.work_dir / "rdp-key.pem"  # written by the agent
        port = free_port()
        self.children.append(start_child("rdptarget", [sys.executable, str(Path(__file__).parent / "rdptarget.py"),
                                                       "--port", str(port), "--cert", str(cert), "--key", str(key)],
                                         logs, port))
        self.estate = estate = Estate(EMBEDDED, f"127.0.0.1:{port}",
                                      agent_args=["--rdp-cert", str(cert), "--rdp-key", str(key)])
        estate.start()
        self.fingerprint = estate.wait_rdp_certificate()
        self.tickets = estate.web_tickets(browser_connections, TICKET_LIFETIME)
        assert estate.plane is not None and estate.ca_file is not None and estate.rdp is not None
        origin, gateway = estate.plane.base_url.rstrip("/"), estate.rdp
        context = client_tls_context(estate.ca_file)

        async def direct():
            return await RdpTlsStream.open(await TcpStream.open("127.0.0.1", port), self.fingerprint)

        async def rd_gateway():
            return await RdpTlsStream.open(await estate.open_session(), self.fingerprint)

        async def browser():
            stream = await BrowserStream.open(gateway.gateway_host, gateway.gateway_port, self.tickets.pop(),
                                              origin, ssl_context=context)
            if not stream.chain or hashlib.sha256(stream.chain[0]).hexdigest() != self.fingerprint:
                raise WorkloadError("the gateway answered with another certificate than the host's")
            return stream

        self.openers = {"direct": direct, "RD Gateway": rd_gateway, "browser": browser}

    def stop(self) -> None:
        if self.estate is not None:
            self.estate.stop()
        for child in self.children:
            child.stop()


@dataclass
class Cell:
    """One (workload, path): each round's MB/s, the CPU the gateway and agent spent, the bytes moved."""

    rates: list[float] = field(default_factory=list)
    gateway_cpu: float = 0.0
    agent_cpu: float = 0.0
    moved: int = 0
    intact: bool = True


async def measure_throughput(bench: Bench, cases: list[tuple[str, str, int]], rounds: int) -> dict:
    estate = bench.estate
    assert estate is not None
    serve, agent = estate.serve_pid, estate.agent_pids[0]
    results: dict[str, dict[str, Cell]] = {label: {name: Cell() for name in PATHS} for label, _, _ in cases}
    expectations: dict[tuple[str, int, bool], Expected] = {}

    def expected(command: str, count: int, rewritten: bool) -> Expected:
        key = (command, count, rewritten)
        if key not in expectations:
            expectations[key] = expected_bytes(command, count, rewritten)
        return expectations[key]

    async def once(command: str, count: int, name: str) -> tuple[float, bool, int]:
        stream = await bench.openers[name]()
        try:
            async with asyncio.timeout(TRANSFER_TIMEOUT):
                return await transfer(stream, command, count, name)
        except TimeoutError:
            raise WorkloadError(f"{name}: {command} {count} took longer than {TRANSFER_TIMEOUT} s") from None
        finally:
            await stream.close()

    async def transfer(stream, command: str, count: int, name: str) -> tuple[float, bool, int]:
        if command == "SINK":  # raises WorkloadError unless the host confirms every byte
            return await workloads.client_to_host(stream, count, 64 * 1024, rdptarget.done_pdu()), True, count
        seconds, intact = await host_to_client(stream, command, count, expected(command, count, name == "browser"))
        return seconds, intact, host_length(command, count)

    for label, command, count in cases:
        for name in PATHS:  # one untimed warm-up each: first connections pay for imports and caches
            await once(command, max(1, count // 8), name)
        for index in range(rounds):
            order = PATHS[index % len(PATHS):] + PATHS[:index % len(PATHS)]
            for name in order:
                cell = results[label][name]
                gateway_before, agent_before = cpu_seconds(serve), cpu_seconds(agent)
                seconds, intact, moved = await once(command, count, name)
                cell.gateway_cpu += cpu_seconds(serve) - gateway_before
                cell.agent_cpu += cpu_seconds(agent) - agent_before
                cell.moved += moved
                cell.rates.append(moved / seconds / 1e6)
                cell.intact = cell.intact and intact
    return results


async def measure_round_trips(bench: Bench, count: int, blocks: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in PATHS}
    streams = {}
    try:
        async with asyncio.timeout(TRANSFER_TIMEOUT):
            for name in PATHS:
                streams[name] = await bench.openers[name]()
                await streams[name].write(b"ECHO\n")
                await ping_pong(streams[name], 50)  # warm-up
            per_block = max(1, count // blocks)
            for index in range(blocks):
                order = PATHS[index % len(PATHS):] + PATHS[:index % len(PATHS)]
                for name in order:
                    times[name] += await ping_pong(streams[name], per_block)
    finally:
        for stream in streams.values():
            await stream.close()
    return times


def ms_per_mb(seconds: float, moved: int) -> str:
    return f"{seconds * 1e3 / (moved / 1e6):.2f}" if moved else "–"


def throughput_table(results: dict, rounds: int) -> str:
    rows = []
    for label, cells in results.items():
        mbs = {name: median(cell.rates) for name, cell in cells.items()}
        rows.append([
            label, *(f"{mbs[name]:,.1f}" for name in PATHS), f"{mbs['browser'] / mbs['RD Gateway']:.2f}",
            *(ms_per_mb(cells[name].gateway_cpu, cells[name].moved) for name in RELAYED),
            *(ms_per_mb(cells[name].agent_cpu, cells[name].moved) for name in RELAYED),
            "yes" if all(cell.intact for cell in cells.values()) else "NO",
        ])
    headers = ["workload", *(f"{name} MB/s" for name in PATHS), "browser / RD Gateway",
               "gateway CPU ms/MB (RD Gateway)", "gateway CPU ms/MB (browser)",
               "agent CPU ms/MB (RD Gateway)", "agent CPU ms/MB (browser)", "intact"]
    return markdown_table(headers, rows) + (
        f"\n\nMB/s = 10^6 bytes the host sent (or the client, client → host) per second, median of {rounds} "
        "alternating rounds. CPU ms/MB = the process's user + system CPU time (/proc/<pid>/stat) over all "
        "rounds ÷ the MB moved. Intact: every transfer's bytes had the SHA-256 expected (on the browser path "
        "for xrdp's bitmaps: the rewriter's output, larger than what the host sent).")


def round_trip_table(times: dict[str, list[float]]) -> str:
    direct50, direct99 = percentile(times["direct"], 50), percentile(times["direct"], 99)
    rows = []
    for name, values in times.items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        rows.append([name, len(values), f"{p50 * 1e6:,.0f}", f"{p99 * 1e6:,.0f}",
                     "" if name == "direct" else f"{(p50 - direct50) * 1e6:,.0f}",
                     "" if name == "direct" else f"{(p99 - direct99) * 1e6:,.0f}"])
    return markdown_table(["path", "round trips", "p50 µs", "p99 µs", "added p50 µs", "added p99 µs"], rows)


async def run(options: argparse.Namespace, bench: Bench) -> str:
    pdus = max(1, options.size * MiB // rdptarget.PDU_SIZE)
    unit = len(rdptarget.bitmap_stream()[1])
    repeats = max(1, int(options.bitmap_size * MiB) // unit)
    cases = [("host → client, 16 KiB PDUs", "SOURCE", pdus),
             ("host → client, xrdp bitmaps", "BITMAP", repeats),
             ("client → host, 64 KiB writes", "SINK", options.size * MiB)]
    machine = machine_description()  # the load average before this run's own load
    started = time.monotonic()
    results = await measure_throughput(bench, cases, options.rounds)
    times = await measure_round_trips(bench, options.round_trips, options.rtt_blocks)
    return "\n\n".join([
        f"## bench/browser.py{' --quick' if options.quick else ''}",
        machine,
        f"### Throughput, one connection: {pdus * rdptarget.PDU_SIZE / MiB:g} MiB bulk, "
        f"{repeats * unit / MiB:.2f} MiB of xrdp bitmap PDUs ({repeats} × GREEN_BLOCK + BUTTON)",
        throughput_table(results, options.rounds),
        "### Round trip, 64-byte TPKT ping-pong (alternating blocks)",
        round_trip_table(times),
        f"Run took {time.monotonic() - started:.0f} s (setup excluded).",
    ])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI size: small transfers, one round")
    parser.add_argument("--size", type=int, help="MiB per bulk transfer (default 128; quick 2)")
    parser.add_argument("--bitmap-size", type=float, help="MiB of xrdp bitmap PDUs per transfer (default 8; quick 0.25)")
    parser.add_argument("--rounds", type=int, help="alternating rounds per cell (default 3; quick 1)")
    parser.add_argument("--round-trips", type=int, help="ping-pongs per path (default 3000; quick 100)")
    options = parser.parse_args(argv)
    quick = options.quick
    options.size = options.size or (2 if quick else 128)
    options.bitmap_size = options.bitmap_size or (0.25 if quick else 8)
    options.rounds = options.rounds or (1 if quick else 3)
    options.round_trips = options.round_trips or (100 if quick else 3000)
    options.rtt_blocks = 1 if quick else 5
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    exit_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="wvd-bench-browser-") as work:
        bench = Bench(Path(work))
        try:
            # Browser connections: a warm-up and the rounds of three workloads, and one for the round trips.
            bench.start(browser_connections=3 * (1 + options.rounds) + 1)
            print(asyncio.run(run(options, bench)), flush=True)
        finally:
            bench.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
