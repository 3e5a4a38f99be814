"""Scale figures on the production shape (testbed/cluster.py): idle host channels held across two `serve`
instances with Redis, and connection set-up with clients spread over both instances beside one instance.

    flock /tmp/wvd-heavy.lock .venv/bin/python bench/cluster.py      # 2,000 → 5,000 → 10,000 channels
    .venv/bin/python bench/cluster.py --quick                         # CI size (tests/bench/test_bench_quick.py)
    .venv/bin/python bench/cluster.py --agents 1000 3000 --interval 30 --measure 60 --connections 100

One cluster: a private PostgreSQL and Redis, two `serve` instances (gw1, gw2) behind nginx, a Celery
worker and beat, all from docs/deploy/systemd's units. Then, in this order:

1. **Set-up, two instances.** A few real agents (`python -m hostagent.agent`, registered through nginx,
   which spreads their host channels over both instances) bridge to bench/target.py. Connections are
   opened one after another as FreeRDP does (bench/connect.py's ``measure``), alternately to gw1's and
   gw2's RD Gateway listener; the figure is TUNNEL_CREATE → CHANNEL_RESPONSE.
2. **Set-up, one instance (the peer figure).** gw2 is stopped as systemd stops it; its agents re-attach to
   gw1 through nginx; the same connections all go to gw1. Ratios are two instances ÷ one instance.
3. **Idle host channels.** gw2 is started again; one session host per simulated agent is provisioned with
   a real host-agent certificate (bench/host_channels.py's agent: nonce signature, heartbeats, acks), and the
   agents connect in steps, alternately **straight to gw1's and gw2's plain web listener** (ws://, as
   nginx passes them on: TLS ends at the proxy in this shape). Not through the cluster's nginx: one nginx
   worker with 4,096 connections holds about 2,000 proxied WebSockets, and on these two cores its TLS for
   10,000 agents would be measured as the gateway's cost; a deployment's proxy runs on its own machines.
   Per step: heartbeat round trip p50/p99 per instance and overall, RSS per channel per instance, file
   descriptors, CPU of every process of the cluster and of the agents' process, the agents' event loop lag.
4. **Set-up with the channels held**: step 1's connections again, with the largest step still connected.

Every process is ours and stopped by its id when the run ends; nothing machine-wide is changed (the
open-file limit is raised for this process and the cluster it starts, not for anyone else).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import connect  # noqa: E402
from bench.clients import RdgStream, client_tls_context  # noqa: E402
from bench.harness import (  # noqa: E402
    BenchError,
    RdpFile,
    exit_on_sigterm,
    fetch_rdp_file,
    machine_busy,
    machine_description,
    main_thread_cpu_seconds,
    markdown_table,
    open_files,
    own_cpu_seconds,
    percentile,
    rss_bytes,
    start_target,
    tree_cpu_seconds,
    verdict,
)
from bench.host_channels import SimulatedAgent, Stats, make_root, provision, raise_nofile_limit  # noqa: E402
from testbed.cluster import LOOPBACK, Cluster  # noqa: E402
from testbed.processes import run_manage  # noqa: E402

HEARTBEAT_P99_TARGET = 0.250
PASSWORD = "scale-user-password-1"
INSTANCES = (1, 2)


# --- connection set-up -----------------------------------------------------------------------------------

@dataclass
class Spread:
    """RD Gateway clients, each opened to the next of ``instances``' listeners in turn: what bench/connect.py's
    ``measure`` calls ``open_session`` on."""

    cluster: Cluster
    rdp: RdpFile
    instances: tuple[int, ...]
    opened: int = 0

    async def open_session(self) -> RdgStream:
        index = self.instances[self.opened % len(self.instances)]
        self.opened += 1
        return await RdgStream.open(LOOPBACK, self.cluster.instance(index).gateway_port, self.rdp.ticket,
                                    self.rdp.resource, ssl_context=client_tls_context(self.cluster.ca_file))


@dataclass
class SetupRun:
    label: str
    timings: list = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def values(self, what: str) -> list[float]:
        return [getattr(t, what) for t in self.timings]

    def ok(self) -> bool:
        setup = self.values("setup")
        return (bool(setup) and not self.errors and percentile(setup, 50) < connect.P50_TARGET
                and percentile(setup, 99) < connect.P99_TARGET)


async def measure_setup(label: str, cluster: Cluster, user_token: str, instances: tuple[int, ...],
                        count: int) -> SetupRun:
    # A fresh .rdp file (its ticket) for each run: the runs are minutes apart.
    rdp = await asyncio.to_thread(fetch_rdp_file, cluster.base_url, user_token, cluster.ssl_context())
    started = time.monotonic()
    timings, errors = await connect.measure(Spread(cluster, rdp, instances), count)
    return SetupRun(label, timings, errors, time.monotonic() - started)


# --- host channels ---------------------------------------------------------------------------------------

@dataclass
class ChannelStep:
    agents: int
    held: dict[int, int]
    failed: int
    lost: int
    connect_seconds: float
    round_trips: dict[int, list[float]]
    rss: dict[int, int]
    per_channel_kib: dict[int, float]
    fds: dict[str, int]
    cpu: dict[str, float]  # share of one core over the measured window
    lag_p99: float

    @property
    def all_round_trips(self) -> list[float]:
        return [value for values in self.round_trips.values() for value in values]

    def ok(self) -> bool:
        trips = self.all_round_trips
        return (sum(self.held.values()) == self.agents and bool(trips)
                and percentile(trips, 99) < HEARTBEAT_P99_TARGET)


class Processes:
    """The CPU time of every process of the run, by role, read from /proc."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def sample(self) -> dict[str, float]:
        c = self.cluster
        found = {}
        for index in INSTANCES:
            pid = c.instance(index).pid
            found[f"gw{index}"] = tree_cpu_seconds(pid)
            found[f"gw{index} loop"] = main_thread_cpu_seconds(pid)
        found["agents (this process)"] = own_cpu_seconds()
        found["redis"] = tree_cpu_seconds(c.redis.process.pid) if c.redis.process else 0.0
        found["postgres"] = tree_cpu_seconds(c.postgres.pid) if c.postgres.pid else 0.0
        found["worker + beat"] = tree_cpu_seconds(c.worker.pid) + tree_cpu_seconds(c.beat.pid)
        found["nginx + real agents + target"] = (tree_cpu_seconds(c.nginx.pid)
                                                 + sum(tree_cpu_seconds(a.pid) for a in c.agents))
        return found


class LoopLag:
    """How late this process's event loop wakes up: the agents' own delay, part of every round trip."""

    def __init__(self, period: float = 0.1) -> None:
        self.period = period
        self.samples: list[float] = []
        self.measuring = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            await asyncio.sleep(self.period)
            if self.measuring:
                self.samples.append(loop.time() - began - self.period)


async def hold_channels(cluster: Cluster, options: argparse.Namespace,
                        work: Path) -> tuple[list[ChannelStep], list[asyncio.Task], dict[str, int]]:
    """Provision the agents, then connect them step by step and measure each step; the agents stay connected
    (their tasks are returned, to cancel)."""
    steps = options.agents
    agents = [SimulatedAgent(f"bench-{index:05d}") for index in range(steps[-1])]
    began = time.monotonic()

    def manage(*args: str, **extra_env: str) -> object:
        return run_manage({**cluster.env, **extra_env}, *args, timeout=3600)

    await asyncio.to_thread(provision, agents, work, manage)
    print(f"provisioned {len(agents)} session hosts with certificates in {time.monotonic() - began:.0f} s",
          flush=True)
    urls = {index: f"ws://{LOOPBACK}:{cluster.instance(index).web_port}/ws/hostagent/" for index in INSTANCES}
    stats = {index: Stats() for index in INSTANCES}
    baseline = {index: rss_bytes(cluster.instance(index).pid) for index in INSTANCES}
    handshakes = asyncio.Semaphore(options.concurrent_handshakes)
    lag = LoopLag()
    processes = Processes(cluster)
    tasks: list[asyncio.Task] = [asyncio.ensure_future(lag.run())]
    results = []
    started = 0
    for target in steps:
        began = time.monotonic()
        waiting = []
        for number in range(started, target):
            agent, index = agents[number], INSTANCES[number % len(INSTANCES)]
            online = asyncio.Event()
            waiting.append(online)
            tasks.append(asyncio.ensure_future(agent.run(urls[index], None, stats[index], handshakes, online)))
        started = target
        try:
            await asyncio.wait_for(asyncio.gather(*(event.wait() for event in waiting)), options.connect_deadline)
        except asyncio.TimeoutError:
            pass  # those not connected yet still try; the step is measured with the channels held by now
        connect_seconds = time.monotonic() - began
        await asyncio.sleep(options.interval)  # every new agent sends its first heartbeat
        for each in stats.values():
            each.round_trips.clear()
            each.measuring = True
        lag.samples.clear()
        lag.measuring = True
        cpu_before, busy_before, wall_before = processes.sample(), machine_busy(), time.monotonic()
        await asyncio.sleep(options.measure)
        cpu_after, busy_after, wall = processes.sample(), machine_busy(), time.monotonic() - wall_before
        lag.measuring = False
        for each in stats.values():
            each.measuring = False
        cpu = {name: (cpu_after[name] - cpu_before[name]) / wall for name in cpu_before}
        total, idle = busy_after[0] - busy_before[0], busy_after[1] - busy_before[1]
        cpu["machine"] = (os.cpu_count() or 1) * (1 - idle / total) if total else 0.0
        ours = sum(value for name, value in cpu.items() if name != "machine" and not name.endswith(" loop"))
        cpu["others"] = max(0.0, cpu["machine"] - ours)
        rss = {index: rss_bytes(cluster.instance(index).pid) for index in INSTANCES}
        held = {index: stats[index].connected for index in INSTANCES}
        fds = {f"gw{index}": open_files(cluster.instance(index).pid) for index in INSTANCES}
        fds["agents"] = open_files(os.getpid())
        step = ChannelStep(
            agents=target, held=held, failed=sum(s.failed for s in stats.values()),
            lost=sum(s.lost for s in stats.values()), connect_seconds=connect_seconds,
            round_trips={index: list(stats[index].round_trips) for index in INSTANCES}, rss=rss,
            per_channel_kib={index: (rss[index] - baseline[index]) / 1024 / held[index] if held[index] else float("nan")
                             for index in INSTANCES},
            fds=fds, cpu=cpu, lag_p99=percentile(lag.samples, 99))
        results.append(step)
        trips = step.all_round_trips
        print(f"step {target}: held {sum(held.values())}, heartbeat p50 {ms(trips, 50)} ms p99 {ms(trips, 99)} ms, "
              f"gw1 {cpu['gw1']:.0%} gw2 {cpu['gw2']:.0%} agents {cpu['agents (this process)']:.0%} "
              f"machine {cpu['machine']:.0%}", flush=True)
        if not step.ok() and not options.every_step:
            print(f"step {target} missed the target: no larger step tried", flush=True)
            break
    errors: dict[str, int] = {}
    for each in stats.values():
        for key, count in each.errors.items():
            errors[key] = errors.get(key, 0) + count
    return results, tasks, errors


# --- the run ---------------------------------------------------------------------------------------------

def ms(values: list[float], pct: float) -> str:
    return f"{percentile(values, pct) * 1e3:.1f}" if values else "-"


def wait_for(what: str, condition, cluster: Cluster, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}\n{cluster.failure_report(3000)}")
        time.sleep(0.2)


def hosts_ready(cluster: Cluster, hosts: list[str], instances: tuple[int, ...]) -> bool:
    """Every real host available in the API and its channel held by one of ``instances``."""
    rows = cluster.api("GET", "/api/v1/sessionhosts/?page_size=1000")["results"]  # type: ignore[index]
    available = {row["name"] for row in rows if row["status"] == "available"}
    return all(host in available and cluster.channel_instance(host) in instances for host in hosts)


def spread_hosts(cluster: Cluster, hosts: list[str]) -> None:
    """Wait for the real hosts, restarting an agent on the busier instance until both instances hold host
    channels (nginx balances round robin, so a reconnect soon lands on the other one)."""
    for _attempt in range(10):
        wait_for("the real hosts to be available", lambda: hosts_ready(cluster, hosts, INSTANCES), cluster)
        where = {host: cluster.channel_instance(host) for host in hosts}
        counts = {index: sum(1 for held in where.values() if held == index) for index in INSTANCES}
        if min(counts.values()) >= len(hosts) // len(INSTANCES):
            return
        busier = max(counts, key=lambda index: counts[index])
        agent = next(agent for agent in cluster.agents if where.get(agent.host_name) == busier)
        agent.stop()
        cluster.run_agent(agent)
    raise BenchError(f"the real hosts' channels never spread over both instances\n{cluster.failure_report(3000)}")


async def run(options: argparse.Namespace, cluster: Cluster, target_port: int, work: Path) -> dict:
    found: dict = {}
    user_id = await asyncio.to_thread(cluster.create_user, "scale-user", PASSWORD)
    desktop = await asyncio.to_thread(cluster.publish_desktop, "scale", [user_id], 10_000)
    hosts = [f"scale-host-{index}" for index in range(options.hosts)]
    for host in hosts:
        await asyncio.to_thread(cluster.start_agent, host, desktop.registration_token, f"{LOOPBACK}:{target_port}")
    await asyncio.to_thread(spread_hosts, cluster, hosts)
    found["host channels"] = {host: cluster.channel_instance(host) for host in hosts}
    token = await asyncio.to_thread(cluster.sign_in, "scale-user", PASSWORD)
    print(f"real hosts' channels: {found['host channels']}", flush=True)

    two = await measure_setup("two instances, clients alternating gw1 / gw2", cluster, token, INSTANCES,
                              options.connections)
    print(f"set-up over two instances: p50 {ms(two.values('setup'), 50)} ms", flush=True)
    await asyncio.to_thread(cluster.stop_instance, 2)
    await asyncio.to_thread(wait_for, "the real hosts to re-attach to gw1", lambda: hosts_ready(cluster, hosts, (1,)),
                            cluster)
    one = await measure_setup("one instance (gw2 stopped), every client to gw1", cluster, token, (1,),
                              options.connections)
    print(f"set-up on one instance: p50 {ms(one.values('setup'), 50)} ms", flush=True)
    await asyncio.to_thread(cluster.start_instance, 2)
    found["setup"] = [one, two]

    steps, tasks, errors = await hold_channels(cluster, options, work)
    found["steps"], found["channel errors"] = steps, errors
    try:
        if options.held_connections:
            held = await measure_setup(f"two instances, clients alternating, {sum(steps[-1].held.values()):,} "
                                       "idle channels held", cluster, token, INSTANCES, options.held_connections)
            found["setup"].append(held)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return found


def setup_table(runs: list[SetupRun]) -> str:
    peer = runs[0]
    rows = []
    for each in runs:
        setup = each.values("setup")
        ratio = (lambda pct: f"{percentile(setup, pct) / percentile(peer.values('setup'), pct):.2f}"
                 if setup and peer.timings else "-")
        rows.append([each.label, len(each.timings), len(each.errors), ms(setup, 50), ms(setup, 99), ms(setup, 100),
                     ms(each.values("tunnel"), 50), ms(each.values("channel"), 50), ratio(50), ratio(99),
                     f"{each.seconds:.0f}", verdict(each.ok())])
    return markdown_table(["shape", "connections", "errors", "setup p50 ms", "setup p99 ms", "max ms",
                           "tunnel p50 ms", "channel p50 ms", "p50 ÷ one instance", "p99 ÷ one instance", "run s",
                           "p50 < 150 ms, p99 < 500 ms"], rows)


def channel_tables(steps: list[ChannelStep]) -> list[str]:
    overall = []
    for step in steps:
        trips = step.all_round_trips
        overall.append([f"{step.agents:,}", f"{sum(step.held.values()):,}", step.failed, step.lost,
                        f"{step.connect_seconds:.0f}", len(trips), ms(trips, 50), ms(trips, 99), ms(trips, 100),
                        f"{step.lag_p99 * 1e3:.1f}", verdict(step.ok())])
    per_instance = []
    for step in steps:
        for index in INSTANCES:
            trips = step.round_trips[index]
            per_instance.append([f"gw{index}", f"{step.agents:,}", f"{step.held[index]:,}", ms(trips, 50),
                                 ms(trips, 99), f"{step.rss[index] / (1 << 20):.0f}",
                                 f"{step.per_channel_kib[index]:.1f}", step.fds[f"gw{index}"],
                                 f"{step.cpu[f'gw{index}']:.0%}", f"{step.cpu[f'gw{index} loop']:.0%}"])
    names = ["gw1", "gw2", "agents (this process)", "redis", "postgres", "worker + beat",
             "nginx + real agents + target", "machine", "others"]
    cpu = [[f"{step.agents:,}", *(f"{step.cpu[name]:.0%}" for name in names), step.fds["agents"]] for step in steps]
    return [
        markdown_table(["agents", "held", "failed", "lost", "connect s", "heartbeats", "hb p50 ms", "hb p99 ms",
                        "hb max ms", "agents' loop lag p99 ms", "p99 < 250 ms, all held"], overall),
        markdown_table(["instance", "agents", "channels", "hb p50 ms", "hb p99 ms", "RSS MiB", "KiB per channel",
                        "open files", "CPU", "CPU, event loop thread"], per_instance),
        markdown_table(["step", *(f"{name} CPU" for name in names), "agents' open files"], cpu),
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI size: 30 then 60 channels, 10 connections")
    parser.add_argument("--agents", type=int, nargs="+", help="channel steps (default 2000 5000 10000)")
    parser.add_argument("--interval", type=int, help="heartbeat interval in s (default 30, the product's)")
    parser.add_argument("--measure", type=int, help="seconds measured per step (default 60)")
    parser.add_argument("--connections", type=int, help="connections per set-up run (default 200)")
    parser.add_argument("--held-connections", type=int,
                        help="connections with the channels held (default 100; 0 to skip)")
    parser.add_argument("--hosts", type=int, help="real agents for the set-up runs (default 4)")
    parser.add_argument("--concurrent-handshakes", type=int, default=8,
                        help="simulated agents connecting at once (default 8: each instance authenticates hellos "
                             "one at a time, and a hello waiting 15 s is refused)")
    parser.add_argument("--connect-deadline", type=float, default=600,
                        help="seconds a step's new agents may take to connect before it is measured (default 600)")
    parser.add_argument("--every-step", action="store_true", help="go on to the next step after a missed one")
    parser.add_argument("--keep-logs", type=Path, help="copy the cluster's logs (every process's) here at the end")
    options = parser.parse_args(argv)
    quick = options.quick
    options.agents = sorted(set(options.agents or ([30, 60] if quick else [2000, 5000, 10000])))
    options.interval = options.interval or (2 if quick else 30)
    options.measure = options.measure or (3 if quick else 60)
    options.connections = options.connections or (10 if quick else 200)
    if options.held_connections is None:
        options.held_connections = 6 if quick else 100
    options.hosts = options.hosts or (2 if quick else 4)
    options.every_step = options.every_step or quick  # the quick test reads every step's row
    if min(options.agents) < 2 or options.hosts < 2 or options.connections < 1:
        parser.error("at least 2 agents per step, 2 hosts and 1 connection")
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    exit_on_sigterm()
    # Each channel is a socket in the agents' process and one in an instance: raised here, for this process
    # and what it starts only.
    nofile = raise_nofile_limit(options.agents[-1] + 4096)
    load = machine_description()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wvd-bench-cluster-") as directory:
        work = Path(directory)
        # An EC root: each host certificate issued loads the CA key, and an RSA 3072 one takes ~90 ms to load.
        root = make_root(work / "root")
        target, target_port = start_target(work / "target")
        cluster = Cluster(instances=2, work_dir=work / "cluster", ca=root,
                          extra_env={"WVD_HEARTBEAT_INTERVAL": str(options.interval)})
        try:
            cluster.start()
            found = asyncio.run(run(options, cluster, target_port, work))
        finally:
            cluster.stop()
            target.stop()
            if options.keep_logs:
                shutil.copytree(cluster.log_dir, options.keep_logs, dirs_exist_ok=True)
    steps: list[ChannelStep] = found["steps"]
    meeting = [step.agents for step in steps if step.ok()]
    largest = max(meeting) if meeting else 0
    ports = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    summary = markdown_table(
        ["largest step held with heartbeat p99 < 250 ms", "target", "verdict"],
        [[f"{largest:,}" if largest else "none", "≥ 10,000 across two instances",
          verdict(largest >= 10_000)]])
    setup_runs: list[SetupRun] = found["setup"]
    notes = [f"- {run.label}: {error}" for run in setup_runs for error in run.errors[:3]]
    notes += [f"- host channels: {count} × {error}" for error, count in list(found["channel errors"].items())[:5]]
    print("\n\n".join([
        f"## bench/cluster.py{' --quick' if options.quick else ''}",
        load,
        (f"The cluster: private PostgreSQL 15 and Redis, two `serve` instances (gw1, gw2) behind nginx, a Celery "
         f"worker and beat (testbed/cluster.py, from docs/deploy/systemd). Heartbeat every {options.interval} s. "
         f"Open-file limit of this process tree: {nofile:,}; loopback source ports "
         f"{ports[0]}–{ports[1]} per destination."),
        f"### Connection set-up, {options.connections} connections one after another, "
        f"{options.hosts} real agents",
        setup_table(setup_runs),
        ("setup = TUNNEL_CREATE sent → CHANNEL_RESPONSE received, as the client sees it (bench/connect.py); "
         "tunnel = ticket checked and Connection recorded; channel = placement, the connect order to the host's "
         "instance and the agent dialling the client's instance. Real hosts' channels at the start: "
         + ", ".join(f"{host} on gw{index}" for host, index in found["host channels"].items()) + "."),
        f"### Idle host channels across two instances, steps {' → '.join(f'{n:,}' for n in options.agents)}",
        *channel_tables(steps),
        (f"Heartbeat = the agent's heartbeat sent → its ack received (each agent every {options.interval} s, "
         f"spread over the interval), measured for {options.measure} s per step after every new agent's first "
         "heartbeat. Agents connect straight to each instance's plain web listener, alternately gw1 / gw2. "
         "KiB per channel = (RSS now − RSS before the first agent) ÷ channels held. CPU in % of one core over "
         "the measured window ('event loop thread' = the instance's main thread, the rest of its CPU is its "
         "database threads); 'others' = busy time of processes not in this run."),
        summary,
        f"Whole run, cluster start and stop included: {time.monotonic() - began:.0f} s.",
        *(["Errors:\n" + "\n".join(notes)] if notes else []),
    ]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
