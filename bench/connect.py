"""Connection setup time through the gateway with an agent already online: TUNNEL_CREATE → CHANNEL_RESPONSE.

    .venv/bin/python bench/connect.py                      # 200 connections on each shape
    .venv/bin/python bench/connect.py --quick              # 10 connections, embedded shape only
    .venv/bin/python bench/connect.py --shapes redis --redis-url redis://127.0.0.1:6379/0 \
        --database-url postgres://postgres@127.0.0.1:5432/postgres

For each deployment shape it starts a control plane (the embedded default: SQLite, in-memory channel
layer, tasks in-process; or Redis + a Celery worker, on PostgreSQL when --database-url names a server:
a fresh database is made and dropped), registers one agent bridging to bench/target.py, and opens
connections one after another as FreeRDP 2.11 does (TLS, RDG_OUT_DATA upgrade, HANDSHAKE, TUNNEL_CREATE
with the served ticket, TUNNEL_AUTH, CHANNEL_CREATE). The figure is the client's time from sending
TUNNEL_CREATE to receiving CHANNEL_RESPONSE: the ticket check and Connection record, placement, the
connect order over the host channel, the agent dialling back and authenticating. Each connection then
makes one round trip through the relay (so it really is connected) and closes.

Then every host is drained and as many connections are refused (a tenth as many, at least 10): the
figure is the time from TUNNEL_CREATE to the refusal in CHANNEL_RESPONSE, i.e. how fast the broker's
verdict (placement refuses: no host accepts new sessions) reaches the client waiting in the gateway.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import workloads  # noqa: E402
from bench.clients import GatewayRefused  # noqa: E402
from bench.harness import (  # noqa: E402
    EMBEDDED,
    Estate,
    Shape,
    exit_on_sigterm,
    machine_description,
    markdown_table,
    percentile,
    redis_shape,
    start_target,
    verdict,
)

P50_TARGET = 0.150
P99_TARGET = 0.500
WARM_UP = 5


async def measure(estate: Estate, count: int) -> tuple[list, list[str]]:
    timings, errors = [], []
    for index in range(WARM_UP + count):
        try:
            stream = await estate.open_session()
        except Exception as exc:  # noqa: BLE001 - counted and shown, the run goes on
            errors.append(f"{exc.__class__.__name__}: {exc}")
            continue
        try:
            await workloads.ping_pong(stream, 1)
            if index >= WARM_UP:
                timings.append(stream.timings)
        except workloads.WorkloadError as exc:
            errors.append(str(exc))
        finally:
            await stream.close()
    return timings, errors


async def measure_refusals(estate: Estate, count: int) -> tuple[list[float], list[str]]:
    """Seconds from TUNNEL_CREATE to the refused CHANNEL_RESPONSE, with every host drained."""
    refused, errors = [], []
    for index in range(WARM_UP + count):
        try:
            stream = await estate.open_session()
        except GatewayRefused as refusal:
            if refusal.after and index >= WARM_UP:
                refused.append(refusal.after)
            continue
        except Exception as exc:  # noqa: BLE001 - counted and shown, the run goes on
            errors.append(f"{exc.__class__.__name__}: {exc}")
            continue
        errors.append("a connection to a drained pool was not refused")
        await stream.close()
    return refused, errors


def ms(values: list[float], pct: float) -> str:
    return f"{percentile(values, pct) * 1e3:.1f}"


def run_shape(shape: Shape, count: int, work: Path) -> list:
    target, port = start_target(work / shape.name / "logs")
    try:
        with Estate(shape, f"127.0.0.1:{port}") as estate:
            started = time.monotonic()
            timings, errors = asyncio.run(measure(estate, count))
            elapsed = time.monotonic() - started
            estate.allow_new_sessions(False)
            refused, refusal_errors = asyncio.run(measure_refusals(estate, max(10, count // 10)))
    finally:
        target.stop()
    setup = [t.setup for t in timings]
    p50, p99 = percentile(setup, 50), percentile(setup, 99)
    ok = bool(setup) and not errors and p50 < P50_TARGET and p99 < P99_TARGET
    return [shape.label, len(timings), len(errors), ms(setup, 50), ms(setup, 99), ms(setup, 100),
            ms([t.tunnel for t in timings], 50), ms([t.channel for t in timings], 50),
            ms([t.tls + t.upgrade for t in timings], 50), f"{elapsed:.0f}",
            verdict(ok) if shape.redis_url else f"({verdict(ok)})"], errors, [
        shape.label, len(refused), len(refusal_errors),
        ms(refused, 50) if refused else "-", ms(refused, 99) if refused else "-"], refusal_errors


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI size: 10 connections, embedded shape")
    parser.add_argument("--connections", type=int, help="connections per shape (default 200; quick 10)")
    parser.add_argument("--shapes", help="comma-separated: embedded, redis (default both; quick embedded)")
    parser.add_argument("--redis-url", default=os.environ.get("WVD_REDIS_URL") or "redis://127.0.0.1:6379/0",
                        help="Redis for the redis shape (default WVD_REDIS_URL or redis://127.0.0.1:6379/0); "
                             "the plane uses a namespace of its own and never flushes it")
    parser.add_argument("--database-url", default=os.environ.get("WVD_DATABASE_URL", ""),
                        help="PostgreSQL server for the redis shape (default WVD_DATABASE_URL; empty: SQLite)")
    options = parser.parse_args(argv)
    options.connections = options.connections or (10 if options.quick else 200)
    options.shapes = (options.shapes or ("embedded" if options.quick else "embedded,redis")).split(",")
    for name in options.shapes:
        if name not in ("embedded", "redis"):
            parser.error(f"unknown shape {name!r}")
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    exit_on_sigterm()
    shapes = {"embedded": EMBEDDED, "redis": redis_shape(options.redis_url, options.database_url)}
    rows, refusal_rows, notes = [], [], []
    with tempfile.TemporaryDirectory(prefix="wvd-bench-connect-") as work:
        for name in options.shapes:
            row, errors, refusal_row, refusal_errors = run_shape(shapes[name], options.connections, Path(work))
            rows.append(row)
            refusal_rows.append(refusal_row)
            notes += [f"- {name}: {error}" for error in (errors + refusal_errors)[:5]]
    table = markdown_table(
        ["shape", "connections", "errors", "setup p50 ms", "setup p99 ms", "max ms", "tunnel p50 ms",
         "channel p50 ms", "TLS + upgrade p50 ms", "run s", "p50 < 150 ms, p99 < 500 ms"], rows)
    print("\n\n".join([
        f"## bench/connect.py{' --quick' if options.quick else ''}",
        machine_description(),
        f"### Connection setup, {options.connections} connections one after another, agent already online",
        table,
        ("setup = TUNNEL_CREATE sent → CHANNEL_RESPONSE received (host connected), as the client sees it; "
         "tunnel = TUNNEL_CREATE → TUNNEL_RESPONSE (ticket checked, Connection recorded); channel = "
         "CHANNEL_CREATE → CHANNEL_RESPONSE (placement, connect order, the agent dials in). The target is "
         "stated for Redis + Celery; the embedded row's verdict is in parentheses, for reference."),
        "### Refused connections, every host drained",
        markdown_table(["shape", "refused", "errors", "refusal p50 ms", "refusal p99 ms"], refusal_rows),
        ("refusal = TUNNEL_CREATE sent → the refused CHANNEL_RESPONSE received: the ticket check, placement "
         "refusing, and the broker's verdict reaching the waiting client."),
        *(["Errors:\n" + "\n".join(notes)] if notes else []),
    ]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
