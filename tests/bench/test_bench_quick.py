"""Each benchmark's --quick mode runs to the end against real processes and prints its markdown table.

No timed assertions: the figures depend on the machine. What must hold is that every script sets up its
real stack (control plane, agents, target, contenders), measures, prints its tables (with a PASS/MISS verdict
where a target is set), and stops every process it started.
"""
from __future__ import annotations

import math
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.cluster import missing_tools

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def marked_processes(mark: str) -> list[int]:
    """PIDs of living processes whose environment carries ``BENCH_TEST_MARK=mark`` (inherited by every
    child the benchmark starts, so leftovers are found even after they were re-parented)."""
    needle = f"BENCH_TEST_MARK={mark}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if needle in Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def run_bench(script: str, *args: str, timeout: float = 240) -> str:
    """Run ``bench/<script> --quick ARGS``; fail with its output unless it exits 0 leaving no process."""
    mark = secrets.token_hex(8)
    env = {key: value for key, value in os.environ.items() if not key.startswith("WVD_")}
    env["BENCH_TEST_MARK"] = mark
    process = subprocess.Popen([sys.executable, str(REPO / "bench" / script), "--quick", *args], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output[-5000:]
    assert not marked_processes(mark), "the benchmark left processes behind"
    return output


def table_rows(output: str, first_header: str) -> list[list[str]]:
    """The rows of the markdown table whose first column is ``first_header``."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} "))
    assert set(lines[start + 1].replace("|", "").split()) == {"-" * len(cell) for cell in
                                                             lines[start + 1].replace("|", "").split()}
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_relay_benchmark_prints_throughput_round_trip_and_memory_tables():
    output = run_bench("relay.py", "--size", "2", "--round-trips", "50", "--slow-size", "2")

    throughput = table_rows(output, "direction")
    assert [row[:2] for row in throughput] == [["host → client", "16 KiB"], ["host → client", "64 KiB"],
                                               ["client → host", "16 KiB"], ["client → host", "64 KiB"]]
    assert all(row[-1] in ("PASS", "MISS") and row[-2] in ("PASS", "MISS") for row in throughput)
    assert all(float(cell.replace(",", "")) > 0 for row in throughput for cell in row[2:6])
    round_trips = {row[0]: row for row in table_rows(output, "path")}
    assert set(round_trips) == {"direct", "tcp relay", "websockify (ws)", "websockify (wss)", "gateway"}
    assert round_trips["gateway"][-1] in ("PASS", "MISS")
    assert table_rows(output, "slow reader")[0][-1] in ("PASS", "MISS")


def test_connect_benchmark_prints_setup_percentiles_per_shape():
    shapes = "embedded,redis" if os.environ.get("WVD_REDIS_URL") else "embedded"
    args = ["--connections", "5", "--shapes", shapes]
    if os.environ.get("WVD_REDIS_URL"):
        args += ["--redis-url", os.environ["WVD_REDIS_URL"], "--database-url", os.environ.get("WVD_DATABASE_URL", "")]

    output = run_bench("connect.py", *args)

    rows = table_rows(output, "shape")
    assert len(rows) == len(shapes.split(","))
    for row in rows:
        assert row[1] == "5" and row[2] == "0", row  # every connection set up, none refused
        assert float(row[3]) > 0 and row[-1].strip("()") in ("PASS", "MISS")


def test_concurrency_benchmark_holds_a_few_sessions_and_prints_the_largest():
    output = run_bench("concurrency.py", "--steps", "2", "4", "--seconds", "2")

    rows = table_rows(output, "N")
    assert [row[0] for row in rows] == ["2", "4"]
    assert all(row[1] == row[0] for row in rows)  # every session set up
    summary = table_rows(output, "largest N held")[0]
    assert summary[-1] in ("PASS", "MISS")


def test_tls_relay_benchmark_prints_the_cost_of_each_tls_side():
    output = run_bench("tlsrelay.py", "--size", "2")

    rows = table_rows(output, "relay")
    assert [row[0] for row in rows] == ["plain → plain", "TLS → plain (websockify's shape)",
                                        "TLS → TLS (the gateway's shape)"]
    assert all(float(row[1]) > 0 and float(row[2]) >= 0 for row in rows)
    assert rows[0][3] in ("1.00", "–")  # "–" when 2 MiB took the plain relay less than a clock tick


def test_the_gateway_outlasts_2000_unauthenticated_connections():
    """The process test of the pre-authentication limits (gateway/preauth.py): 2,000 TLS connections that
    upgrade and then only ping are all closed by the deadline (a ping never extends it), a real client
    connects meanwhile, and the gateway's RSS comes back within 32 MiB of where it started."""
    output = run_bench("preauth.py", "--connections", "2000", "--deadline", "10")

    (row,) = table_rows(output, "connections")
    assert row[:3] == ["2000", "2000", "0"], row  # every one held (none refused by a cap) until the deadline
    assert row[-3:] == ["PASS", "PASS", "PASS"], row  # closed by the deadline, RSS back, the real client got in


def test_browser_benchmark_measures_the_browser_path_beside_the_rd_gateway_path():
    output = run_bench("browser.py", "--round-trips", "30")

    rows = {row[0]: row for row in table_rows(output, "workload")}
    assert list(rows) == ["host → client, 16 KiB PDUs", "host → client, xrdp bitmaps", "client → host, 64 KiB writes"]
    for row in rows.values():
        assert all(float(cell.replace(",", "")) > 0 for cell in row[1:4]), row  # direct, RD Gateway, browser
        assert all(cell != "" for cell in row[4:9]), row  # the ratio and CPU per MB of gateway and agent
        assert row[-1] == "yes", row  # every transfer's bytes arrived intact (rewritten ones as rewritten)
    round_trips = {row[0]: row for row in table_rows(output, "path")}
    assert set(round_trips) == {"direct", "RD Gateway", "browser"}
    assert all(row[1] == "30" for row in round_trips.values())



@pytest.mark.cluster
@pytest.mark.skipif(bool(missing_tools()), reason=f"the cluster needs {', '.join(missing_tools())}")
@pytest.mark.skipif("cluster" in os.environ.get("WVD_TEST_SKIP", "").split(","),
                    reason="WVD_TEST_SKIP=cluster: CI runs the cluster's benchmark on the PostgreSQL + Redis shape")
def test_cluster_benchmark_holds_channels_on_two_instances_and_sets_up_beside_one():
    output = run_bench("cluster.py", timeout=300)

    setup = table_rows(output, "shape")
    assert [row[0].split(",")[0] for row in setup] == ["one instance (gw2 stopped)", "two instances", "two instances"]
    for row in setup:
        assert row[2] == "0" and float(row[3]) > 0, row  # every connection set up, none failed
        assert row[-1] in ("PASS", "MISS"), row
    assert setup[0][8] == "1.00" and float(setup[1][8]) > 0  # ratios against the one-instance run
    steps = table_rows(output, "agents")
    assert [row[:4] for row in steps] == [["30", "30", "0", "0"], ["60", "60", "0", "0"]]  # all held, none lost
    assert all(int(row[5]) > 0 and row[-1] in ("PASS", "MISS") for row in steps)  # heartbeats were measured
    instances = table_rows(output, "instance")
    assert [(row[0], row[1], row[2]) for row in instances] == [
        ("gw1", "30", "15"), ("gw2", "30", "15"), ("gw1", "60", "30"), ("gw2", "60", "30")]  # spread over both
    # Heartbeat p99 measured; KiB per channel computed (a few channels can sit in memory freed since the
    # baseline, so its sign means nothing at this size: the figure is for the large steps).
    assert all(float(row[4]) > 0 and math.isfinite(float(row[6])) for row in instances), instances
    assert [row[0] for row in table_rows(output, "step")] == ["30", "60"]  # the CPU of every process per step
    assert table_rows(output, "largest step held with heartbeat p99 < 250 ms")[0][-1] in ("PASS", "MISS")
