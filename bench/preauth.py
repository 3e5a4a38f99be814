"""What unauthenticated load costs one gateway instance: many TLS connections that upgrade and then only
ping, never presenting a ticket.

    .venv/bin/python bench/preauth.py                      # 2,000 connections, a 10 s deadline
    .venv/bin/python bench/preauth.py --quick              # 200 connections, a 5 s deadline
    .venv/bin/python bench/preauth.py --connections 4000 --deadline 20

It starts a control plane (embedded default) with one agent bridging to bench/target.py and the
pre-authentication deadline set to --deadline (WVD_GATEWAY_PREAUTH_SECONDS). Then it opens --connections
TLS connections from many loopback addresses (127.0.0.2 and up, --per-address each, under the per-address
cap), upgrades each to RD Gateway's WebSocket (RDG_OUT_DATA) and sends a WebSocket ping every second,
never a TSGU packet. While they are held, a real client opens a session through the gateway as FreeRDP
does and makes a round trip through the relay. The figures: how many were held, how long each lasted
until the gateway closed it (a ping never extends the deadline), the gateway's RSS before, at its peak
and after, and whether the real client got through. The 2,000 unauthenticated connections held for 60 s
took the gateway from 125 MB to 722 MB before the deadline existed.
"""
from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from websockets.protocol import Protocol, Side, State  # noqa: E402

from bench import workloads  # noqa: E402
from bench.clients import client_tls_context, freerdp2_websocket_key  # noqa: E402
from bench.harness import (  # noqa: E402
    EMBEDDED,
    Estate,
    exit_on_sigterm,
    machine_description,
    markdown_table,
    percentile,
    rss_bytes,
    sampling_rss,
    start_target,
    verdict,
)

MiB = 1 << 20
RSS_TARGET = 32 * MiB  # back within this of where it started once the deadline closed them
SLACK = 5.0  # seconds past the deadline a close may take on a loaded 2-core machine
SETTLE = 8.0  # seconds after the last close before the RSS is read again (the gateway trims after 5)
OPEN_PARALLEL = 64  # TLS handshakes in flight at once


class Unauthenticated:
    """One connection that upgrades and pings; records when the gateway closed it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.connecting_at = 0.0  # before the TCP connect: no later than the gateway's accept
        self.opened_at = 0.0  # the upgrade's answer: no earlier than the accept
        self.closed_after: float | None = None  # from opened_at: an upper bound on how long the gateway held it
        self.closed_since_connect: float | None = None  # from connecting_at: a lower bound's reference
        self.error = ""

    async def run(self, host: str, port: int, context: ssl.SSLContext, held: asyncio.Event,
                  gate: asyncio.Semaphore) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with gate:
                self.connecting_at = loop.time()
                reader, writer = await asyncio.open_connection(host, port, ssl=context, local_addr=(self.source, 0))
                writer.write((f"RDG_OUT_DATA /remoteDesktopGateway/ HTTP/1.1\r\nHost: {host}\r\n"
                              f"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                              f"Sec-WebSocket-Key: {freerdp2_websocket_key()}\r\nRDG-Connection-Id: {{{uuid.uuid4()}}}\r\n"
                              f"RDG-Auth-Scheme: PAA\r\nContent-Length: 0\r\n\r\n").encode())
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            self.opened_at = loop.time()
            if not head.startswith(b"HTTP/1.1 101"):
                self.error = head.split(b"\r\n", 1)[0].decode(errors="replace")
                writer.close()
                return
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            self.error = exc.__class__.__name__
            return
        held.set()
        ws = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
        pinging = asyncio.ensure_future(self._ping(ws, writer))
        try:
            while await reader.read(4096):
                pass
        except (OSError, ssl.SSLError):
            pass
        finally:
            closed_at = loop.time()
            self.closed_after = closed_at - self.opened_at
            self.closed_since_connect = closed_at - self.connecting_at
            pinging.cancel()
            writer.close()

    @staticmethod
    async def _ping(ws: Protocol, writer: asyncio.StreamWriter) -> None:
        while True:
            ws.send_ping(b"still here")
            writer.write(b"".join(ws.data_to_send()))
            await asyncio.sleep(1.0)


async def warm_up(estate: Estate) -> None:
    stream = await estate.open_session()
    try:
        await workloads.ping_pong(stream, 1)
    finally:
        await stream.close()


def sources(count: int, per_address: int) -> list[str]:
    """``count`` local addresses to connect from, ``per_address`` connections each (127.0.0.2 and up)."""
    result = []
    for index in range(count):
        n = 2 + index // per_address
        result.append(f"127.0.{n // 250}.{n % 250 + 1}" if n >= 250 else f"127.0.0.{n}")
    return result


async def load(estate: Estate, count: int, per_address: int, deadline: float) -> dict:
    assert estate.rdp is not None
    host, port = estate.rdp.gateway_host, estate.rdp.gateway_port
    assert estate.ca_file is not None
    context = client_tls_context(estate.ca_file)
    gate = asyncio.Semaphore(OPEN_PARALLEL)
    held = asyncio.Event()
    peers = [Unauthenticated(source) for source in sources(count, per_address)]
    started = time.monotonic()
    tasks = [asyncio.ensure_future(peer.run(host, port, context, held, gate)) for peer in peers]
    await asyncio.wait_for(held.wait(), 60)
    # A real client while they are held: its ticket, placement, the agent, a round trip through the relay.
    real_started = time.monotonic()
    real = "no"
    try:
        stream = await estate.open_session()
        try:
            await workloads.ping_pong(stream, 3)
            real = f"yes, set up in {stream.timings.setup * 1e3:.0f} ms"
        finally:
            await stream.close()
    except Exception as exc:  # noqa: BLE001 - shown in the table
        real = f"no: {exc.__class__.__name__}: {exc}"
    real_elapsed = time.monotonic() - real_started
    await asyncio.wait(tasks, timeout=deadline + SLACK + 60)
    for task in tasks:
        task.cancel()
    return {"peers": peers, "elapsed": time.monotonic() - started, "real": real, "real_elapsed": real_elapsed}


def run(count: int, per_address: int, deadline: float, work: Path) -> tuple[str, bool]:
    target, target_port = start_target(work / "logs")
    try:
        with Estate(EMBEDDED, f"127.0.0.1:{target_port}",
                    extra_env={"WVD_GATEWAY_PREAUTH_SECONDS": str(int(deadline))}) as estate:
            pid = estate.serve_pid
            asyncio.run(warm_up(estate))  # the gateway's first session loads what every later one reuses
            time.sleep(1.0)
            before = rss_bytes(pid)
            with sampling_rss(pid) as samples:
                outcome = asyncio.run(load(estate, count, per_address, deadline))
                time.sleep(SETTLE)
            after = rss_bytes(pid)
    finally:
        target.stop()
    peers = outcome["peers"]
    lasted = [peer.closed_after for peer in peers if peer.closed_after is not None]
    refused = [peer for peer in peers if peer.error]
    closed_in_time = len(lasted) == len(peers) - len(refused) and all(t <= deadline + SLACK for t in lasted)
    # A ping never extended it, nothing cut it short. Counted from before the connect, which precedes the
    # gateway's accept (where the deadline starts) however loaded the machine: the upgrade's answer may come
    # seconds after the accept when the handshakes queue behind one another on two busy cores.
    since_connect = [peer.closed_since_connect for peer in peers if peer.closed_since_connect is not None]
    not_early = all(t >= deadline - 0.5 for t in since_connect)
    rss_ok = after - before <= RSS_TARGET
    real_ok = outcome["real"].startswith("yes")
    rows = [[
        len(peers), len(peers) - len(refused), len(refused), f"{deadline:g}",
        f"{percentile(lasted, 0):.1f}" if lasted else "-", f"{percentile(lasted, 50):.1f}" if lasted else "-",
        f"{percentile(lasted, 100):.1f}" if lasted else "-",
        f"{before / MiB:.0f}", f"{max(samples) / MiB:.0f}", f"{after / MiB:.0f}", f"{(after - before) / MiB:+.1f}",
        outcome["real"],
        verdict(closed_in_time and not_early), verdict(rss_ok), verdict(real_ok),
    ]]
    table = markdown_table(
        ["connections", "held", "refused", "deadline s", "closed after s (min)", "p50", "max",
         "gateway RSS before MiB", "peak MiB", "after MiB", "after - before MiB", "a real client meanwhile",
         "all closed by the deadline", f"RSS back within {RSS_TARGET // MiB} MiB", "real client connected"], rows)
    notes = sorted({peer.error for peer in refused})
    text = table + (f"\n\nRefused at connect: {', '.join(notes[:5])}" if notes else "")
    return text, closed_in_time and not_early and rss_ok and real_ok


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI size: 200 connections, a 5 s deadline")
    parser.add_argument("--connections", type=int, help="unauthenticated connections (default 2000; quick 200)")
    parser.add_argument("--deadline", type=float, help="WVD_GATEWAY_PREAUTH_SECONDS (default 10; quick 5)")
    parser.add_argument("--per-address", type=int, default=20,
                        help="connections from each loopback address (under the per-address cap of 32)")
    options = parser.parse_args(argv)
    options.connections = options.connections or (200 if options.quick else 2000)
    options.deadline = options.deadline or (5.0 if options.quick else 10.0)
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    exit_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="wvd-bench-preauth-") as work:
        table, ok = run(options.connections, options.per_address, options.deadline, Path(work))
    print("\n\n".join([
        f"## bench/preauth.py{' --quick' if options.quick else ''}",
        machine_description(),
        f"### {options.connections} unauthenticated connections, upgraded and pinging every second",
        table,
        ("closed after = from the upgrade's answer to the gateway closing the connection (the deadline counts "
         "from the accept, a little earlier). RSS of the `serve` process; 'after' is read "
         f"{SETTLE:g} s after the last close."),
    ]), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
