"""What the benchmarks share: a real control plane with an estate and agents, child processes, figures.

``Estate`` starts the control plane as real processes (``testbed/processes.py``'s ControlPlane: migrate,
``serve``, and a Celery worker with Redis), builds the estate through the REST API as an admin would
(workspace, pool, desktop group, an assignment), registers real agents (``python -m hostagent.agent
register``/``run``) whose ``--rdp-target`` is the benchmark's own TCP server (bench/target.py), and
downloads the user's signed .rdp file to take the gateway address, the ticket and the resource from it.
Every process started here is stopped by its own id when the ``with`` block ends, even on error.
"""
from __future__ import annotations

import os
import platform
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from testbed.api import call  # noqa: E402
from testbed.lifecycle import read_log, start_logged, stop_group  # noqa: E402
from testbed.ports import free_port, is_listening  # noqa: E402
from testbed.processes import ControlPlane  # noqa: E402
from wire import rdpfile  # noqa: E402

PASSWORD = "bench-password-1"
BENCH_DIR = Path(__file__).resolve().parent
SHARED_CPU_NOTE = ("2 cores shared by the benchmark client, the gateway (`serve`), the agent(s), the target "
                   "server (and the Celery worker with Redis): every process here competes for the same CPU.")

class BenchError(RuntimeError):
    """A benchmark could not be set up (the message carries the relevant logs)."""

def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so ``finally`` blocks stop every child even when we are stopped."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

# --- deployment shapes ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    """How the plane runs: the embedded default, or Redis + a Celery worker (optionally on PostgreSQL)."""

    name: str
    redis_url: str = ""
    database_url: str = ""  # a PostgreSQL server; the plane makes a fresh database on it and drops it after

    @property
    def label(self) -> str:
        if not self.redis_url:
            return "embedded (SQLite, in-memory layer, in-process tasks)"
        database = "PostgreSQL" if self.database_url else "SQLite"
        return f"Redis + Celery worker ({database})"

EMBEDDED = Shape("embedded")

def redis_shape(redis_url: str, database_url: str = "") -> Shape:
    return Shape("redis", redis_url=redis_url, database_url=database_url)

class BenchPlane(ControlPlane):
    """A ControlPlane whose database and Redis come from the shape, not from this process's environment."""

    def __init__(self, shape: Shape, **kwargs) -> None:
        super().__init__(**kwargs)
        self.shape = shape

    def _environment(self) -> dict[str, str]:
        # ControlPlane takes WVD_DATABASE_URL/WVD_REDIS_URL from os.environ; the benchmark chooses them.
        wanted = {"WVD_DATABASE_URL": self.shape.database_url, "WVD_REDIS_URL": self.shape.redis_url}
        saved = {key: os.environ.get(key) for key in wanted}
        try:
            for key, value in wanted.items():
                if value:
                    os.environ[key] = value
                else:
                    os.environ.pop(key, None)
            return super()._environment()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

# --- child processes ------------------------------------------------------------------------------

@dataclass
class Child:
    """A process this benchmark started (its own process group), with its log."""

    name: str
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        stop_group(self.process, grace=5)

def start_child(name: str, argv: Sequence[str], log_dir: Path, port: int, env: dict[str, str] | None = None,
                timeout: float = 20.0) -> Child:
    """Start ``argv`` and wait until something listens on ``port`` (read from /proc: no probe connection)."""
    log = log_dir / f"{name}.log"
    process = start_logged(argv, log, env=env, cwd=REPO)
    child = Child(name, process, log)
    deadline = time.monotonic() + timeout
    while not is_listening(port):
        if process.poll() is not None or time.monotonic() > deadline:
            child.stop()
            raise BenchError(f"{name} did not listen on {port}\n{read_log(log)[-4000:]}")
        time.sleep(0.05)
    return child

def start_target(log_dir: Path) -> tuple[Child, int]:
    port = free_port()
    return start_child("target", [sys.executable, str(BENCH_DIR / "target.py"), "--port", str(port)], log_dir, port), port

# --- the estate -----------------------------------------------------------------------------------

@dataclass
class RdpFile:
    """What a client takes from the served .rdp file."""

    gateway_host: str
    gateway_port: int
    ticket: str
    resource: str

    @classmethod
    def parse(cls, text: str) -> RdpFile:
        """The served file's settings, read with the project's one .rdp grammar (wire.rdpfile)."""
        settings = rdpfile.read_settings(text)
        host, _, port = settings["gatewayhostname"].value.rpartition(":")
        return cls(gateway_host=host, gateway_port=int(port), ticket=settings["gatewayaccesstoken"].value,
                   resource=settings["full address"].value)

def fetch_rdp_file(base_url: str, user_token: str, context: ssl.SSLContext) -> RdpFile:
    """The user's desktop .rdp file as the user downloads it from the feed at ``base_url`` (a plane, or a
    cluster's proxy): the feed's link is followed on ``base_url``, whatever origin it names."""
    status, feed = call(base_url, "GET", "/api/v1/feed/", None, user_token, timeout=30, context=context)
    if status != 200:
        raise BenchError(f"feed: {status} {feed}")
    desktop = next(r for r in feed if r["type"].lower() == "desktop")  # type: ignore[union-attr]
    path = "/" + desktop["rdp_url"].split("://", 1)[1].split("/", 1)[1]
    request = urllib.request.Request(base_url + path, headers={"Authorization": f"Bearer {user_token}"})
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return RdpFile.parse(rdpfile.decode(response.read()))
    except urllib.error.HTTPError as error:
        raise BenchError(f"GET {path}: {error.code} {error.read()[:300]!r}") from None

@dataclass
class Estate:
    """A running control plane with one pool, ``hosts`` registered agents bridging to ``rdp_target``."""

    shape: Shape
    rdp_target: str
    hosts: int = 1
    max_sessions: int = 5000
    extra_env: dict[str, str] = field(default_factory=dict)
    agent_args: list[str] = field(default_factory=list)  # more options for ``agent run`` (--rdp-cert ...)
    plane: BenchPlane | None = None
    agents: list[Child] = field(default_factory=list)
    rdp: RdpFile | None = None
    admin_token: str = ""
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="wvd-bench-")))
    ca_file: Path | None = None  # the plane's CA from /ca.pem: what the bench's clients trust
    plane_options: dict = field(default_factory=dict)  # more ControlPlane options (metrics=True, worker_pool=...)

    def __enter__(self) -> Estate:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "wvd" / "logs"

    def start(self) -> None:
        # INFO, as in production: the gateway logs a few lines per connection, none per frame.
        self.plane = BenchPlane(self.shape, data_dir=self.data_dir / "wvd",
                                extra_env={"WVD_LOG_LEVEL": "INFO", **self.extra_env}, **self.plane_options)
        self.plane.start()
        plane = self.plane
        status, _, ca_pem = plane.get("/ca.pem")
        if status != 200:
            raise BenchError(f"GET /ca.pem: {status}")
        self.ca_file = self.data_dir / "ca.pem"
        self.ca_file.write_bytes(ca_pem)
        created = plane.manage("shell", "--no-imports", "-c", (
            "from django.contrib.auth import get_user_model; U = get_user_model();"
            f"U.objects.create_superuser('bench-admin', '', {PASSWORD!r});"
            f"print(U.objects.create_user('bench-user', '', {PASSWORD!r}).pk)"
        ))
        user_id = int(created.stdout.strip().splitlines()[-1])
        admin = self.admin_token = self.sign_in("bench-admin")

        def api(method: str, path: str, body: dict | None = None) -> dict:
            status, answer = plane.call(method, path, body, admin)
            if status not in (200, 201):
                raise BenchError(f"{method} {path}: {status} {answer}")
            return answer  # type: ignore[return-value]

        workspace = api("POST", "/api/v1/workspaces/", {"name": "bench", "friendly_name": "Bench"})
        pool = api("POST", "/api/v1/hostpools/", {"name": "bench-pool", "pool_type": "pooled",
                                                 "load_balancer": "breadth_first",
                                                 "max_session_limit": self.max_sessions})
        group = api("POST", "/api/v1/applicationgroups/", {"name": "bench-desktops", "group_type": "desktop",
                                                          "host_pool": pool["id"], "workspace": workspace["id"]})
        api("POST", "/api/v1/assignments/", {"application_group": group["id"], "user": user_id})
        token = api("POST", f"/api/v1/hostpools/{pool['id']}/registration-token/", {})["token"]
        for index in range(self.hosts):
            self._start_agent(index, token)
        for index in range(self.hosts):
            self._wait_available(f"bench-host-{index}", admin)
        self.rdp = self.download_rdp(self.sign_in("bench-user"))

    def allow_new_sessions(self, allow: bool) -> None:
        """Drain every host (False), or end drain mode (True), as an admin does through the API."""
        assert self.plane is not None
        status, body = self.plane.call("GET", "/api/v1/sessionhosts/", token=self.admin_token)
        if status != 200:
            raise BenchError(f"session hosts: {status} {body}")
        for host in body["results"]:  # type: ignore[index]
            status, answer = self.plane.call("POST", f"/api/v1/sessionhosts/{host['id']}/drain/",
                                             {"allow_new_sessions": allow}, self.admin_token)
            if status != 200:
                raise BenchError(f"drain {host['name']}: {status} {answer}")

    def sign_in(self, username: str) -> str:
        assert self.plane is not None
        status, body = self.plane.call("POST", "/api/v1/auth/token/", {"username": username, "password": PASSWORD})
        if status != 201:
            raise BenchError(f"sign-in of {username} failed: {status} {body}")
        return body["token"]  # type: ignore[index]

    def download_rdp(self, user_token: str) -> RdpFile:
        """The served .rdp file, as a user downloads it from the feed (GET with the bearer token)."""
        assert self.plane is not None
        status, feed = self.plane.call("GET", "/api/v1/feed/", token=user_token)
        if status != 200:
            raise BenchError(f"feed: {status} {feed}")
        desktop = next(r for r in feed if r["type"].lower() == "desktop")  # type: ignore[union-attr]
        request = urllib.request.Request(desktop["rdp_url"], headers={"Authorization": f"Bearer {user_token}"})
        with urllib.request.urlopen(request, timeout=30, context=self.plane.ssl_context()) as response:
            return RdpFile.parse(rdpfile.decode(response.read()))

    def _start_agent(self, index: int, token: str) -> None:
        assert self.plane is not None
        name = f"bench-host-{index}"
        state_dir = self.data_dir / f"agent-{index}"
        registered = subprocess.run(
            [sys.executable, "-m", "hostagent.agent", "register", "--server", self.plane.base_url, "--token", token,
             "--name", name, "--state-dir", str(state_dir), "--ca-file", str(self.plane.ca_file)],
            env=self.plane.env, cwd=REPO, capture_output=True, text=True, timeout=120,
        )
        if registered.returncode != 0:
            raise BenchError(f"agent registration failed: {registered.stderr[-2000:]}")
        log = self.log_dir / f"agent-{index}.log"
        process = start_logged(
            [sys.executable, "-m", "hostagent.agent", "run", "--state-dir", str(state_dir),
             "--rdp-target", self.rdp_target, "--backoff-max", "1", *self.agent_args],
            log, env=self.plane.env, cwd=REPO,
        )
        self.agents.append(Child(f"agent-{index}", process, log))

    def _wait_available(self, name: str, admin: str, timeout: float = 60) -> None:
        assert self.plane is not None
        deadline = time.monotonic() + timeout
        status_seen = "?"
        while time.monotonic() < deadline:
            status, body = self.plane.call("GET", f"/api/v1/sessionhosts/?name={name}", token=admin)
            results = body.get("results", []) if isinstance(body, dict) else []
            if status == 200 and results:
                status_seen = results[0]["status"]
                if status_seen == "available":
                    return
            time.sleep(0.2)
        raise BenchError(f"host {name} stayed {status_seen}\n{self.failure_report()}")

    def wait_rdp_certificate(self, name: str = "bench-host-0", timeout: float = 90) -> str:
        """The fingerprint of the RDP certificate the host's agent reported (run with --rdp-cert/--rdp-key):
        what the gateway pins on the browser path, so nothing connects there before it is known."""
        assert self.plane is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.plane.call("GET", f"/api/v1/sessionhosts/?name={name}", token=self.admin_token)
            results = body.get("results", []) if isinstance(body, dict) else []
            if status == 200 and results and results[0].get("rdp_certificate_sha256"):
                return results[0]["rdp_certificate_sha256"]
            time.sleep(0.2)
        raise BenchError(f"host {name} reported no RDP certificate\n{self.failure_report()}")

    def web_tickets(self, count: int, lifetime_seconds: int) -> list[str]:
        """``count`` single-use web tickets for bench-user's desktop, minted by core.tickets.issue_web_ticket
        as the page's POST /web/<group>/<alias>/ticket/ does, in one Django shell. ``lifetime_seconds`` replaces
        the one-minute lifetime for this minting only, so that tickets minted before a long run still hold."""
        assert self.plane is not None
        out = self.plane.manage("shell", "--no-imports", "-c", (
            "from datetime import timedelta; from django.conf import settings;"
            f"settings.WEB_TICKET_LIFETIME = timedelta(seconds={int(lifetime_seconds)});"
            "from django.contrib.auth import get_user_model; from feed.resources import DESKTOP, resources_for;"
            "from core.tickets import issue_web_ticket;"
            "u = get_user_model().objects.get(username='bench-user');"
            "r = [r for r in resources_for(u) if r.kind == DESKTOP][0];"
            f"[print(issue_web_ticket(user=u, application_group_id=r.application_group_id, resource=r.key,"
            f" host_pool_id=r.host_pool_id, host_pool_name=r.host_pool_name)) for _ in range({int(count)})]"
        )).stdout
        tickets = out.strip().splitlines()[-count:]
        if len(tickets) != count:
            raise BenchError(f"minted {len(tickets)} web tickets, not {count}")
        return tickets

    def stop(self) -> None:
        for agent in self.agents:
            agent.stop()
        self.agents = []
        if self.plane is not None:
            self.plane.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)  # the plane leaves a data dir it was given

    def failure_report(self) -> str:
        parts = [self.plane.failure_report()] if self.plane is not None else []
        parts += [f"--- {agent.name}.log\n{read_log(agent.log)[-10_000:]}" for agent in self.agents]
        return "\n".join(parts)

    @property
    def serve_pid(self) -> int:
        assert self.plane is not None
        for pid in self.plane.pids():
            if b"serve" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                return pid
        raise BenchError("no serve process")

    @property
    def agent_pids(self) -> list[int]:
        return [agent.pid for agent in self.agents]

    @property
    def worker_pids(self) -> list[int]:
        assert self.plane is not None
        return [pid for pid in self.plane.pids() if pid != self.serve_pid]

    async def open_session(self):
        """A new RD Gateway connection through this estate, set up as FreeRDP does it."""
        from bench.clients import RdgStream, client_tls_context

        assert self.rdp is not None and self.ca_file is not None
        rdp = self.rdp
        return await RdgStream.open(rdp.gateway_host, rdp.gateway_port, rdp.ticket, rdp.resource,
                                    ssl_context=client_tls_context(self.ca_file))

# --- figures --------------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14 and 15 of stat)

def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0

def process_tree(pid: int) -> list[int]:
    """``pid`` and its living descendants (from /proc: each process's parent), e.g. PostgreSQL's backends."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                parent = int(Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(children.get(current, []))
    return found

def tree_cpu_seconds(pid: int) -> float:
    """CPU time used so far by ``pid`` and its living descendants."""
    return sum(cpu_seconds(each) for each in process_tree(pid))

def main_thread_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid``'s main thread alone (for `serve`: its event loop, without the database threads)."""
    try:
        fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def open_files(pid: int) -> int:
    """How many file descriptors ``pid`` holds."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0

def machine_busy() -> tuple[int, int]:
    """The machine's CPU time so far, in clock ticks: (total, idle + iowait), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]

def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system

def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]

def median(values: Sequence[float]) -> float:
    return percentile(values, 50)

def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)

def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"

def machine_description() -> str:
    load = os.getloadavg()
    return (f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, "
            f"load average at start {load[0]:.2f}. {SHARED_CPU_NOTE}")

@contextmanager
def sampling_rss(pid: int, interval: float = 0.2) -> Iterator[list[int]]:
    """Sample ``pid``'s RSS in a thread while the block runs; yields the list the samples go into."""
    import threading

    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(rss_bytes(pid))
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()
        samples.append(rss_bytes(pid))
