"""Host-channel capacity: N simulated agents, authenticated and heartbeating, against one daphne process.

    .venv/bin/python bench/host_channels.py                     # 1,000 agents, then 3,000
    .venv/bin/python bench/host_channels.py --agents 1000 5000 --interval 30 --measure 60
    WVD_REDIS_URL=redis://127.0.0.1:6379/8 .venv/bin/python bench/host_channels.py   # Redis channel layer

It starts its own `manage.py serve` with a fresh data dir and SQLite file (or the PostgreSQL database
named by --database-url), creates a CA, a pool and one session host per simulated agent with a real
host-agent certificate, then raises the number of connected agents step by step. Each simulated
agent does what the real one does on the wire: answers the challenge by signing the nonce with its
key, then sends a heartbeat (three checks, an empty session list) every interval and waits for the
acknowledgement. Per step it prints the connections held, how long connecting took, the heartbeat
round trip (p50/p99), the server's RSS per channel and its CPU use. Everything runs on loopback and
stops by itself; only processes it started are signalled, by their PID.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import websockets  # noqa: E402
from cryptography import x509  # noqa: E402

from hostagent.agent.state import make_csr, new_key  # noqa: E402
from wire import hostchannel, proof  # noqa: E402

CHECKS: list[hostchannel.HealthCheck] = [
    {"name": "rdp_listener", "ok": True, "fatal": True, "detail": "127.0.0.1:3389 accepts connections"},
    {"name": "disk_space", "ok": True, "fatal": False, "detail": "/: 40.1 GiB free (61%)"},
    {"name": "agent_version", "ok": True, "fatal": False, "detail": "1.0.0"},
]

PROVISION = """
import json, os
from django.db import transaction
from broker.models import HostPool, SessionHost
from core import ca
requests = json.load(open(os.environ["BENCH_REQUESTS"]))
with transaction.atomic():
    pool = HostPool.objects.create(name="bench-pool", max_session_limit=10)
    certificates = []
    for name, csr in requests:
        record = ca.issue_from_csr(csr.encode(), "host-agent", common_name=name)
        SessionHost.objects.create(host_pool=pool, name=name, certificate=record)
        certificates.append(record.pem)
json.dump(certificates, open(os.environ["BENCH_ANSWERS"], "w"))
"""


def make_root(directory: Path) -> tuple[Path, Path]:
    from datetime import datetime, timedelta, timezone

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA")])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=400))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(mode=0o700)
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def raise_nofile_limit(wanted: int = 0) -> int:
    """Raise this process's open-file limit (inherited by the processes it starts, nothing machine-wide) to
    the hard limit, or to ``wanted`` when that is more and we may raise the hard limit (as root); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if wanted > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            pass
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def provision(agents: list[SimulatedAgent], work_dir: Path, manage: Callable[..., object]) -> None:
    """One session host per agent, each with a host-agent certificate our CA issues from the agent's CSR, in
    one `manage.py shell` (``manage(*args, **extra_env)`` runs manage.py against the plane's database)."""
    requests = work_dir / "csrs.json"
    answers = work_dir / "certificates.json"
    requests.write_text(json.dumps([[agent.name, make_csr(agent.key, agent.name)] for agent in agents]))
    manage("shell", "-c", PROVISION, BENCH_REQUESTS=str(requests), BENCH_ANSWERS=str(answers))
    for agent, pem in zip(agents, json.loads(answers.read_text())):
        agent.certificate_pem = pem


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`manage.py serve` in a fresh data dir; stopped by its PID."""

    def __init__(self, interval: int, database_url: str, redis_url: str) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="wvd-bench-"))
        self.port = free_port()
        env = {key: value for key, value in os.environ.items() if not key.startswith("WVD_")}
        env.update(DJANGO_SETTINGS_MODULE="wvdportal.settings", PYTHONUNBUFFERED="1", WVD_LOG_LEVEL="WARNING",
                   WVD_DATA_DIR=str(self.data_dir), WVD_SECRET_KEY=secrets.token_urlsafe(50),
                   WVD_HEARTBEAT_INTERVAL=str(interval), WVD_GATEWAY_LISTEN=f"127.0.0.1:{free_port()}")
        if database_url:
            env["WVD_DATABASE_URL"] = database_url
        if redis_url:
            env.update(WVD_REDIS_URL=redis_url, WVD_REDIS_NAMESPACE=f"bench-{secrets.token_hex(4)}")
        self.env = env
        self.process: subprocess.Popen | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """Trusting the bench's CA only: `serve` terminates TLS with a certificate that CA issues."""
        return ssl.create_default_context(cafile=str(self.data_dir / "ca" / "ca.crt"))

    def manage(self, *args: str, **extra_env: str) -> str:
        done = subprocess.run([sys.executable, str(REPO / "manage.py"), *args], cwd=REPO, env={**self.env, **extra_env},
                              capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise SystemExit(f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def start(self) -> None:
        self.manage("migrate", "--noinput")
        # An EC root adopted with initca: core.ca loads the CA key for every certificate it
        # issues, and an RSA 3072 key takes ~90 ms to load, which would make provisioning the bench
        # (not the channels it measures) take minutes.
        cert_path, key_path = make_root(self.data_dir / "bench-root")
        self.manage("initca", "--cert", str(cert_path), "--key", str(key_path))
        self.log = open(self.data_dir / "serve.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "manage.py"), "serve", "--listen", f"127.0.0.1:{self.port}"],
            cwd=REPO, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"https://127.0.0.1:{self.port}/admin/login/", timeout=2,
                                       context=self.ssl_context()).read()
                return
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.2)
        raise SystemExit(f"serve did not start:\n{(self.data_dir / 'serve.log').read_text()[-3000:]}")

    def provision(self, agents: list[SimulatedAgent]) -> None:
        provision(agents, self.data_dir, self.manage)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)


@dataclass
class Stats:
    connected: int = 0
    failed: int = 0
    lost: int = 0
    measuring: bool = False
    round_trips: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, exc: BaseException) -> None:
        key = f"{type(exc).__name__}: {exc}"[:120]
        self.errors[key] = self.errors.get(key, 0) + 1


@dataclass
class SimulatedAgent:
    name: str
    key: object = field(default_factory=new_key)
    certificate_pem: str = ""

    async def run(self, url: str, context: ssl.SSLContext | None, stats: Stats, handshakes: asyncio.Semaphore,
                  online: asyncio.Event) -> None:
        """Connect to ``url`` (wss:// with ``context``; ws:// to a plain listener behind a proxy with None),
        authenticate, then heartbeat until cancelled."""
        certificate = x509.load_pem_x509_certificate(self.certificate_pem.encode())
        tls = {"ssl": context} if context is not None else {}
        try:
            async with handshakes:
                ws = await websockets.connect(url, **tls, max_size=hostchannel.MAX_FRAME_BYTES, compression=None,
                                              open_timeout=120, ping_interval=None, close_timeout=2)
                challenge = hostchannel.decode_server_message(await ws.recv())
                signature = proof.sign_challenge(self.key, hostchannel.decode_base64url(challenge["nonce"]), certificate)
                await ws.send(hostchannel.encode(hostchannel.hello(self.certificate_pem, signature, "1.0.0")))
                welcome = hostchannel.decode_server_message(await ws.recv())
                if welcome["type"] != "welcome":
                    raise RuntimeError(f"refused: {welcome}")
        except (OSError, asyncio.TimeoutError, websockets.WebSocketException, RuntimeError) as exc:
            stats.failed += 1
            stats.error(exc)
            online.set()
            return
        stats.connected += 1
        online.set()
        interval = welcome["heartbeat_interval"]
        try:
            await asyncio.sleep(random.uniform(0, interval))  # spread the fleet over the interval
            seq = 0
            while True:
                started = time.perf_counter()
                await ws.send(hostchannel.encode(hostchannel.heartbeat(seq, "1.0.0", CHECKS, [])))
                ack = hostchannel.decode_server_message(await ws.recv())
                elapsed = time.perf_counter() - started
                if ack["type"] != "heartbeat_ack":
                    raise RuntimeError(f"unexpected {ack['type']}")
                if stats.measuring:
                    stats.round_trips.append(elapsed)
                seq += 1
                await asyncio.sleep(max(0.0, interval - elapsed))
        except asyncio.CancelledError:
            await ws.close()
            raise
        except (OSError, websockets.WebSocketException, RuntimeError) as exc:
            stats.connected -= 1
            stats.lost += 1
            stats.error(exc)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


async def bench(args: argparse.Namespace) -> None:
    steps = sorted(set(args.agents))
    nofile = raise_nofile_limit()
    if steps[-1] + 200 > nofile:
        raise SystemExit(f"RLIMIT_NOFILE is {nofile}: at most {nofile - 200} agents per process")
    server = Server(args.interval, args.database_url, os.environ.get("WVD_REDIS_URL", ""))
    tasks: list[asyncio.Task] = []
    try:
        print(f"starting serve (channel layer: {'Redis' if 'WVD_REDIS_URL' in server.env else 'in-memory'}, "
              f"database: {'PostgreSQL' if args.database_url else 'SQLite'}), heartbeat every {args.interval} s")
        server.start()
        agents = [SimulatedAgent(f"bench-{index:05d}") for index in range(steps[-1])]
        began = time.monotonic()
        server.provision(agents)
        print(f"provisioned {len(agents)} hosts with certificates in {time.monotonic() - began:.1f} s")
        baseline_kib = server.rss_kib()
        url = f"wss://127.0.0.1:{server.port}/ws/hostagent/"
        context = server.ssl_context()
        stats = Stats()
        handshakes = asyncio.Semaphore(args.concurrent_handshakes)
        print(f"{'agents':>7} {'held':>6} {'failed':>6} {'connect s':>9} {'hb p50 ms':>9} {'hb p99 ms':>9} "
              f"{'samples':>7} {'RSS MiB':>8} {'KiB/chan':>8} {'CPU %':>6}")
        for target in steps:
            began = time.monotonic()
            waiting = []
            for agent in agents[len(tasks):target]:
                online = asyncio.Event()
                waiting.append(online)
                tasks.append(asyncio.ensure_future(agent.run(url, context, stats, handshakes, online)))
            await asyncio.gather(*(event.wait() for event in waiting))
            connect_seconds = time.monotonic() - began
            await asyncio.sleep(args.interval)  # let every new agent send its first heartbeat
            stats.round_trips.clear()
            stats.measuring = True
            cpu_before = server.cpu_seconds()
            await asyncio.sleep(args.measure)
            stats.measuring = False
            cpu_percent = 100 * (server.cpu_seconds() - cpu_before) / args.measure
            rss = server.rss_kib()
            per_channel = (rss - baseline_kib) / stats.connected if stats.connected else float("nan")
            p50, p99 = (1000 * percentile(stats.round_trips, fraction) for fraction in (0.5, 0.99))
            print(f"{target:>7} {stats.connected:>6} {stats.failed:>6} {connect_seconds:>9.1f} {p50:>9.1f} {p99:>9.1f} "
                  f"{len(stats.round_trips):>7} {rss / 1024:>8.1f} {per_channel:>8.1f} {cpu_percent:>6.1f}", flush=True)
        if stats.errors or stats.lost:
            print(f"lost after connecting: {stats.lost}; errors: {json.dumps(stats.errors, indent=1)}")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[1000, 3000],
                        help="numbers of connected agents to measure at, in steps (default 1000 3000)")
    parser.add_argument("--interval", type=int, default=30, help="heartbeat interval in seconds (default 30)")
    parser.add_argument("--measure", type=int, default=60, help="seconds measured per step (default 60)")
    parser.add_argument("--concurrent-handshakes", type=int, default=50)
    parser.add_argument("--database-url", default="", help="a PostgreSQL database to use instead of SQLite "
                        "(it must be empty or migrated; the bench adds a pool named bench-pool)")
    args = parser.parse_args()
    if min(args.agents) < 1 or args.interval < 1 or args.measure < 1:
        parser.error("agents, interval and measure must be positive")
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
