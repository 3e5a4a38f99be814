"""What a heartbeat costs the host channels' database thread, by how `serve` gets its PostgreSQL connection.

    flock /tmp/wvd-heavy.lock .venv/bin/python bench/dbconn.py --database-url postgres://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/dbconn.py --database-url … --quick

Every host channel's heartbeat is one hostagent.health.record_heartbeat call through Channels'
database_sync_to_async, and all of an instance's such calls queue for one thread (bench/RESULTS.md). This runs
that call, as the consumer does, in a fresh PostgreSQL database (made on the given server and dropped after)
under each way of connecting, each in a process of its own, the ways taking turns over the rounds:

- a new connection for every call (CONN_MAX_AGE = 0, `WVD_DATABASE_CONN_MAX_AGE=0`): the previous default;
- a kept connection checked before each reuse (CONN_MAX_AGE + CONN_HEALTH_CHECKS): the default now;
- a kept connection, unchecked (what a restarted PostgreSQL would cost one failed call per thread);
- psycopg's pool (Django's OPTIONS "pool", checked on each borrow), when psycopg_pool is importable: the
  answer Django's documentation gives for ASGI.

For each: one heartbeat after another (the time of each call as the event loop sees it: p50, p99), and
``--in-flight`` heartbeats at once (they queue for the one thread: heartbeats per second it stores); both for a
heartbeat whose channel remembers the last checks (one UPDATE … RETURNING) and one that reads them first (the
channel's first heartbeat; before this change, every heartbeat: a read, then the UPDATE). Ratios are against the
new-connection-per-call row of the same kind.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import exit_on_sigterm, machine_description, machine_busy, markdown_table, percentile  # noqa: E402
from testbed.processes import drop_postgres_database, fresh_postgres_database, run_manage  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HOSTS = 50

WAYS = {
    "new connection per call": {"WVD_DATABASE_CONN_MAX_AGE": "0"},
    "kept, checked before reuse (default)": {"WVD_DATABASE_CONN_MAX_AGE": "300"},
    "kept, unchecked": {"WVD_DATABASE_CONN_MAX_AGE": "300", "BENCH_UNCHECKED": "1"},
    "psycopg pool, checked on borrow": {"WVD_DATABASE_CONN_MAX_AGE": "0", "BENCH_POOL": "1"},
}
KINDS = ("last checks remembered", "last checks read first")


# --- the child: one way of connecting ----------------------------------------------------------------

def child(calls: int, in_flight: int) -> None:
    import django
    from django.conf import settings

    database = settings.DATABASES["default"]
    if os.environ.get("BENCH_UNCHECKED"):
        database["CONN_HEALTH_CHECKS"] = False
    if os.environ.get("BENCH_POOL"):
        database["CONN_HEALTH_CHECKS"] = True
        database.setdefault("OPTIONS", {})["pool"] = {"min_size": 2, "max_size": 4}
    django.setup()
    from channels.db import database_sync_to_async

    from broker.models import HostPool, SessionHost
    from hostagent import health

    checks = [{"name": "rdp_listener", "ok": True, "fatal": True, "detail": ""},
              {"name": "disk_space", "ok": True, "fatal": False, "detail": "40% free"}]
    heartbeat = {"type": "heartbeat", "seq": 1, "agent_version": "1.0.0", "checks": checks, "sessions": []}

    def hosts() -> list[int]:
        pool, _ = HostPool.objects.get_or_create(name="bench", defaults={"friendly_name": "bench"})
        for index in range(HOSTS - pool.session_hosts.count()):
            SessionHost.objects.create(host_pool=pool, name=f"bench-{secrets.token_hex(4)}-{index}")
        return list(pool.session_hosts.values_list("pk", flat=True))

    async def run() -> dict:
        host_ids = await database_sync_to_async(hosts)()
        record = database_sync_to_async(health.record_heartbeat)
        results = {}
        for kind in KINDS:
            previous = checks if kind == KINDS[0] else None
            for index in range(20):  # warm-up: the thread, its connection, the pool
                await record(host_ids[index % HOSTS], heartbeat, sync_sessions=False, previous_checks=previous)
            times = []
            for index in range(calls):
                started = time.perf_counter()
                await record(host_ids[index % HOSTS], heartbeat, sync_sessions=False, previous_checks=previous)
                times.append(time.perf_counter() - started)
            started = time.perf_counter()
            await asyncio.gather(*(record(host_ids[index % HOSTS], heartbeat, sync_sessions=False,
                                          previous_checks=previous) for index in range(in_flight)))
            rate = in_flight / (time.perf_counter() - started)
            results[kind] = {"times": times, "rate": rate}
        return results

    print(json.dumps(asyncio.run(run())))


# --- the parent: a database, the ways in turn, the table ---------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="a PostgreSQL server (postgres://user@host:port/db)")
    parser.add_argument("--calls", type=int, default=2000, help="heartbeats one after another, per way and round")
    parser.add_argument("--in-flight", type=int, default=500, help="heartbeats at once, per way and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200 calls, 100 at once, one round")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.calls, args.in_flight, args.rounds = 200, 100, 1
    if args.child:
        child(args.calls, args.in_flight)
        return
    exit_on_sigterm()
    try:
        import psycopg_pool  # noqa: F401
        ways = list(WAYS)
    except ImportError:
        ways = [way for way in WAYS if "pool" not in way]
        print("psycopg_pool is not installed: the pool's row is left out")
    name, database_url = fresh_postgres_database(args.database_url)
    try:
        env = {key: value for key, value in os.environ.items() if not key.startswith("WVD_")}
        env.update(WVD_DATABASE_URL=database_url, WVD_DATA_DIR=str(REPO / "data" / "bench"),
                   WVD_LOG_LEVEL="WARNING", DJANGO_SETTINGS_MODULE="wvdportal.settings")
        run_manage(env, "migrate", "--noinput", "-v", "0")
        print(machine_description())
        collected: dict[str, dict[str, dict]] = {way: {kind: {"times": [], "rates": []} for kind in KINDS} for way in ways}
        busy_before = machine_busy()
        for round_index in range(args.rounds):
            order = ways[round_index % len(ways):] + ways[:round_index % len(ways)]
            for way in order:
                out = subprocess.run([sys.executable, __file__, "--child", "--calls", str(args.calls), "--in-flight",
                                      str(args.in_flight), "--database-url", args.database_url],
                                     cwd=REPO, env={**env, **WAYS[way]}, check=True, capture_output=True, text=True)
                result = json.loads(out.stdout.strip().splitlines()[-1])
                for kind in KINDS:
                    collected[way][kind]["times"] += result[kind]["times"]
                    collected[way][kind]["rates"].append(result[kind]["rate"])
        total, idle = (after - before for after, before in zip(machine_busy(), busy_before))
        busy = total - idle
    finally:
        drop_postgres_database(args.database_url, name)
    rows = []
    for kind in KINDS:
        peer = collected[ways[0]][kind]
        peer_p50, peer_rate = percentile(peer["times"], 50), sorted(peer["rates"])[len(peer["rates"]) // 2]
        for way in ways:
            times, rates = collected[way][kind]["times"], sorted(collected[way][kind]["rates"])
            p50, rate = percentile(times, 50), rates[len(rates) // 2]
            rows.append([kind, way, len(times), f"{p50 * 1e3:.2f}", f"{percentile(times, 99) * 1e3:.2f}",
                         f"{rate:,.0f}", f"{p50 / peer_p50:.2f}", f"{rate / peer_rate:.2f}"])
    print()
    print(markdown_table(["heartbeat", "connection", "calls", "p50 ms", "p99 ms", f"per s, {args.in_flight} at once",
                          "p50 ÷ new per call", "per s ÷ new per call"], rows))
    print(f"\nMachine busy during the run: {100 * busy / total if total else float('nan'):.0f}% of its CPUs "
          f"(this run's processes and everything else). Rounds: {args.rounds}, the ways taking turns.")


if __name__ == "__main__":
    main()
