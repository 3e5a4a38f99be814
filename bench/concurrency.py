"""How many relayed sessions one gateway instance holds, each streaming 1 MB/s host → client.

    .venv/bin/python bench/concurrency.py             # steps of 50, 100, 200, 300 sessions, 30 s each
    .venv/bin/python bench/concurrency.py --quick     # 4 and 8 sessions, 3 s each
    .venv/bin/python bench/concurrency.py --steps 150 250 --seconds 20

One control plane (embedded default) with several registered agents (a pool of --hosts session hosts)
bridging to bench/target.py. At each step N sessions are opened through the gateway as FreeRDP opens
them; then every session asks the target for a paced stream (1,000,000 bytes/s in 16 KiB writes, each
starting with its send time) and the client records how long each write took to arrive. A step holds
when every session was set up, received everything, and the p99 latency added over a direct connection
under the same load shape stayed under 50 ms. The steps go up until one fails; then up to two midpoints
between the best pass and that failure are tried. CPU is each process's share of one core during the streaming window.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import workloads  # noqa: E402
from bench.clients import TcpStream  # noqa: E402
from bench.harness import (  # noqa: E402
    EMBEDDED,
    Estate,
    cpu_seconds,
    exit_on_sigterm,
    machine_busy,
    machine_description,
    markdown_table,
    own_cpu_seconds,
    percentile,
    rss_bytes,
    start_target,
    verdict,
)

MiB = 1 << 20
RATE = 1_000_000  # bytes/s per session
LATENCY_TARGET = 0.050  # p99 added, seconds
SESSIONS_TARGET = 200
OPEN_PARALLEL = 16  # connections being set up at once
GRACE = 10.0  # seconds after the stream's end for the last bytes to arrive


@dataclass
class Step:
    sessions: int
    opened: int = 0
    complete: int = 0
    errors: int = 0
    p50: float = float("nan")
    p99: float = float("nan")
    received_mb_s: float = 0.0
    cpu: dict | None = None
    serve_rss: int = 0
    serve_rss_growth: int = 0
    first_error: str = ""

    def held(self, baseline_p99: float) -> bool:
        return (self.errors == 0 and self.complete == self.sessions
                and self.p99 - baseline_p99 < LATENCY_TARGET)


async def open_all(opener, count: int) -> tuple[list, list[str]]:
    streams, errors = [], []
    semaphore = asyncio.Semaphore(OPEN_PARALLEL)

    async def one() -> None:
        async with semaphore:
            try:
                streams.append(await opener())
            except Exception as exc:  # noqa: BLE001 - a refused or failed setup counts as an error
                errors.append(f"{exc.__class__.__name__}: {exc}")

    await asyncio.gather(*(one() for _ in range(count)))
    return streams, errors


async def run_step(opener, count: int, seconds: float, chunk: int, pids: dict[str, list[int]]) -> Step:
    step = Step(count)
    streams, errors = await open_all(opener, count)
    step.opened = len(streams)
    step.errors = len(errors)
    step.first_error = errors[0] if errors else ""
    serve = pids.get("gateway", [])
    rss_before = rss_bytes(serve[0]) if serve else 0
    reports = [workloads.StreamReport() for _ in streams]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds + GRACE
    cpu_before = {name: sum(cpu_seconds(pid) for pid in group) for name, group in pids.items()}
    own_before, busy_before, wall_before = own_cpu_seconds(), machine_busy(), time.monotonic()
    try:
        await asyncio.gather(*(workloads.paced_stream(stream, RATE, chunk, seconds, report, deadline)
                               for stream, report in zip(streams, reports)))
    finally:
        wall = time.monotonic() - wall_before
        busy_after = machine_busy()
        step.cpu = {name: (sum(cpu_seconds(pid) for pid in group) - cpu_before[name]) / wall
                    for name, group in pids.items()}
        step.cpu["client"] = (own_cpu_seconds() - own_before) / wall
        total, idle = busy_after[0] - busy_before[0], busy_after[1] - busy_before[1]
        step.cpu["machine"] = 2 * (1 - idle / total) if total else 0.0
        step.serve_rss = rss_bytes(serve[0]) if serve else 0
        step.serve_rss_growth = step.serve_rss - rss_before
        await asyncio.gather(*(stream.close() for stream in streams))
    latencies = [value for report in reports for value in report.latencies]
    step.complete = sum(1 for report in reports if report.complete)
    failed = [report.error for report in reports if not report.complete]
    step.errors += len(failed)
    step.first_error = step.first_error or (failed[0] if failed else "")
    step.p50, step.p99 = percentile(latencies, 50), percentile(latencies, 99)
    step.received_mb_s = len(latencies) * chunk / wall / 1e6
    return step


def plan_next(tried: dict[int, bool], steps: list[int], refinements: int = 2) -> int | None:
    """The next step: the planned ones up to the first failure, then up to ``refinements`` midpoints
    between the best pass (or none) and the failure above it (bisection, in tens above 20)."""
    for n in steps:
        if n not in tried:
            if any(not ok for m, ok in tried.items() if m < n):
                break
            return n
    extra = [n for n in tried if n not in steps]
    passes = [n for n, ok in tried.items() if ok]
    if len(extra) >= refinements:
        return None
    low = max(passes, default=0)
    above = [n for n, ok in tried.items() if not ok and n > low]
    if not above:
        return None
    high = min(above)
    middle = (low + high) // 2
    middle -= middle % 10 if middle >= 20 else 0
    return middle if low < middle < high and middle not in tried else None


async def run(options: argparse.Namespace, estate: Estate, target_port: int, target_pid: int) -> str:
    # The baseline: the same number of paced streams straight to the target, no relay in between.
    base_count = min(max(options.steps), 50)
    baseline = await run_step(lambda: TcpStream.open("127.0.0.1", target_port), base_count,
                              min(options.seconds, 10), options.chunk, {})
    pids = {"gateway": [estate.serve_pid], "agents": estate.agent_pids, "target": [target_pid]}
    tried: dict[int, bool] = {}
    steps: dict[int, Step] = {}
    while (n := plan_next(tried, options.steps)) is not None:
        step = await run_step(estate.open_session, n, options.seconds, options.chunk, pids)
        steps[n] = step
        tried[n] = step.held(baseline.p99)
        await asyncio.sleep(2)  # let the closed sessions finish their records before the next step
    rows = []
    for n in sorted(steps):
        s = steps[n]
        cpu = s.cpu or {}
        rows.append([n, s.opened, s.complete, s.errors, f"{s.received_mb_s:.0f}", f"{s.p50 * 1e3:.1f}",
                     f"{s.p99 * 1e3:.1f}", f"{(s.p99 - baseline.p99) * 1e3:.1f}",
                     f"{cpu.get('gateway', 0) * 100:.0f}%", f"{cpu.get('agents', 0) * 100:.0f}%",
                     f"{cpu.get('client', 0) * 100:.0f}%", f"{cpu.get('target', 0) * 100:.0f}%",
                     f"{cpu.get('machine', 0) * 100:.0f}%",
                     f"{(cpu.get('machine', 0) - sum(v for k, v in cpu.items() if k != 'machine')) * 100:.0f}%",
                     f"{s.serve_rss / MiB:.0f}", f"{s.serve_rss_growth / MiB:+.0f}",
                     "held" if tried[n] else "not held"])
    held = [n for n, ok in tried.items() if ok]
    best = max(held) if held else 0
    errors = [f"- {n} sessions: {s.first_error}" for n, s in sorted(steps.items()) if s.first_error]
    summary = markdown_table(["largest N held", "target", "verdict"],
                             [[best, f"≥ {SESSIONS_TARGET}", verdict(best >= SESSIONS_TARGET)]])
    return "\n\n".join([
        f"## bench/concurrency.py{' --quick' if options.quick else ''}",
        machine_description(),
        (f"### Concurrent sessions through one instance, each {RATE / 1e6:.0f} MB/s host → client in "
         f"{options.chunk // 1024} KiB writes for {options.seconds:g} s ({options.hosts} session hosts)"),
        markdown_table(["N", "set up", "complete", "errors", "MB/s total", "latency p50 ms", "latency p99 ms",
                        "added p99 ms", "gateway CPU", "agents CPU", "client CPU", "target CPU", "machine CPU (of 200%)",
                        "others' CPU",
                        "gateway RSS MiB", "RSS growth MiB", "result"], rows),
        summary,
        (f"Latency = the target's write to the last byte of that write at the client. Direct baseline "
         f"({base_count} streams, no relay): p50 {baseline.p50 * 1e3:.2f} ms, p99 {baseline.p99 * 1e3:.2f} ms; "
         "added p99 = p99 − the baseline's p99. Held = every session set up and complete, no errors, added p99 "
         "< 50 ms. CPU in % of one core; the client (this process) and the target are on the same 2 cores; "
         "others' CPU = the machine's busy time not used by this benchmark's processes (other users)."),
        *(["First error per step:\n" + "\n".join(errors)] if errors else []),
    ])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI size: 4 and 8 sessions for 3 s")
    parser.add_argument("--steps", type=int, nargs="+", help="session counts to try (default 50 100 200 300)")
    parser.add_argument("--seconds", type=float, help="streaming time per step (default 30; quick 3)")
    parser.add_argument("--chunk", type=int, default=16 * 1024, help="bytes per paced write (default 16 KiB)")
    parser.add_argument("--hosts", type=int, help="session hosts (agent processes) in the pool (default 4; quick 1)")
    options = parser.parse_args(argv)
    options.steps = sorted(options.steps or ([4, 8] if options.quick else [50, 100, 200, 300]))
    options.seconds = options.seconds or (3.0 if options.quick else 30.0)
    options.hosts = options.hosts or (1 if options.quick else 4)
    if options.chunk < 64 or options.chunk > 1 << 20:
        parser.error("--chunk must be 64 B .. 1 MiB")
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    exit_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="wvd-bench-concurrency-") as work:
        target, port = start_target(Path(work) / "logs")
        try:
            with Estate(EMBEDDED, f"127.0.0.1:{port}", hosts=options.hosts) as estate:
                print(asyncio.run(run(options, estate, port, target.pid)), flush=True)
        finally:
            target.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
