"""The production shape on one machine: N `serve` instances behind nginx, a Celery worker and beat, and a
private PostgreSQL and Redis, all started from the repository's own files.

    with Cluster(instances=2) as cluster:
        token = cluster.admin_token()
        cluster.call("GET", "/api/v1/sessionhosts/", token=token)       # through the proxy, as an admin would
        cluster.instance(1).gateway_port                                # one instance's RD Gateway listener
        cluster.kill_instance(1)                                        # SIGKILL, as a crash
        cluster.restart_redis(); cluster.restart_postgres()

What runs (each a process group of ours, stopped by its id, its output in ``log_dir/<name>.log``):

* ``postgres``: a private PostgreSQL 15 (``initdb`` + ``pg_ctl`` from /usr/lib/postgresql/15/bin) on a free
  loopback port, in a directory of its own; as root it runs as the ``postgres`` user (PostgreSQL refuses
  root). Private so that a fault test may restart it without touching the machine's own server.
* ``redis``: a private ``redis-server`` on a free loopback port, nothing saved to disk.
* ``serve-gw1`` … ``serve-gwN``: the instances, from ``docs/deploy/systemd/wvd-serve@.service`` (its
  ExecStart and Environment lines, %i = ``gwI``), each with its own web and gateway port, behind
* ``nginx``: Debian's nginx terminating TLS for the web side (``docs/deploy.md``'s shape 2, with the
  gateway-tls certificate our CA issues) and balancing over the instances' plain web listeners, passing
  to the next instance when one does not answer. ``base_url`` is this proxy: the API, the feed and the
  host channel of every agent go through it, so an agent whose instance dies re-attaches to a survivor.
  RDP clients reach an instance's RD Gateway listener directly (``instance(i).gateway_port``), as the
  .rdp files served by that instance say (in production each instance has its own public address).
* ``worker`` and ``beat``: Celery, from ``wvd-worker.service`` and ``wvd-beat.service``.
* host agents started with ``start_agent`` (``python -m hostagent.agent register`` then ``run``,
  registered against the proxy).

Each instance and the worker expose /metrics on a loopback port of their own (``instance(i).metrics_port``,
``worker_metrics_port``, ``scrape(port)``), the worker's prefork pool counting through its unit's runtime
directory. Every process shares one data dir (the CA, server keys) and one WVD_SECRET_KEY. Heartbeats are short by
default (``FAST_ENV``) so a fault is noticed in seconds; ``extra_env`` overrides any WVD_* setting.
"""
from __future__ import annotations

import http.client
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from testbed.api import call
from testbed.lifecycle import read_log, start_logged, stop_group
from testbed.ports import free_port, is_listening
from testbed.processes import REPO_ROOT, ControlPlaneError, run_manage

UNITS_DIR = REPO_ROOT / "docs" / "deploy" / "systemd"
# One unit per process kind; the harness starts each of its processes from one of these.
SERVE_UNIT, WORKER_UNIT, BEAT_UNIT = "wvd-serve@.service", "wvd-worker.service", "wvd-beat.service"
UNIT_FILES = (SERVE_UNIT, WORKER_UNIT, BEAT_UNIT)
# Where the units expect the release (docs/deploy.md): the harness runs this checkout and its interpreter.
INSTALL_DIR = "/opt/wvd"
INSTALL_PYTHON = f"{INSTALL_DIR}/.venv/bin/python"
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
LOOPBACK = "127.0.0.1"

# Faults noticed in seconds, not minutes: instance rows refreshed every second and taken for lost after
# three missed refreshes; agents' heartbeats every 2 s, the host Unavailable after 3 missed.
FAST_ENV = {
    "WVD_GATEWAY_INSTANCE_HEARTBEAT": "1",
    "WVD_GATEWAY_INSTANCE_MISSED_HEARTBEATS": "3",
    "WVD_HEARTBEAT_INTERVAL": "2",
    "WVD_MISSED_HEARTBEATS": "3",
    "WVD_LOG_LEVEL": "INFO",
}


def missing_tools() -> list[str]:
    """What this machine lacks to run a cluster (nginx, redis-server, PostgreSQL 15's server binaries)."""
    return [tool for tool, present in (
        ("nginx", shutil.which("nginx")), ("redis-server", shutil.which("redis-server")),
        ("PostgreSQL 15 server", (POSTGRES_BIN / "pg_ctl").exists())) if not present]


class ClusterError(ControlPlaneError):
    """A process of the cluster did not start or stop (the message carries its log)."""


# --- the systemd units ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Unit:
    """What the harness takes from a systemd unit: its ExecStart and its Environment assignments."""

    path: Path
    exec_start: tuple[str, ...]
    environment: tuple[tuple[str, str], ...]
    runtime_directories: tuple[str, ...] = ()  # RuntimeDirectory=: made under the runtime root (%t) at start

    @classmethod
    def read(cls, name: str, units_dir: Path = UNITS_DIR) -> Unit:
        path = units_dir / name
        exec_start: list[str] = []
        environment: list[tuple[str, str]] = []
        runtime: list[str] = []
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if not sep or line.lstrip().startswith(("#", ";")):
                continue
            if key.strip() == "ExecStart":
                exec_start = shlex.split(value)
            elif key.strip() == "Environment":
                for assignment in shlex.split(value):
                    variable, _, setting = assignment.partition("=")
                    environment.append((variable, setting))
            elif key.strip() == "RuntimeDirectory":
                runtime.extend(shlex.split(value))
        if not exec_start:
            raise ClusterError(f"{path} has no ExecStart")
        return cls(path, tuple(exec_start), tuple(environment), tuple(runtime))

    def command(self, env: Mapping[str, str], instance: str = "",
                runtime_root: Path | None = None) -> tuple[list[str], dict[str, str]]:
        """The argv and environment this unit starts with on this machine: the unit's Environment over
        ``env``, specifiers (%i, %t, %%) and ${VAR} expanded as systemd does, the install dir mapped to this
        checkout and its interpreter. With ``runtime_root`` (the harness's %t, for /run) the unit's
        RuntimeDirectory= entries are made there, empty, as systemd makes them at each start."""
        root = str(runtime_root) if runtime_root is not None else "/run"
        if runtime_root is not None:
            for name in self.runtime_directories:
                shutil.rmtree(runtime_root / name, ignore_errors=True)
                (runtime_root / name).mkdir(parents=True)
        merged = dict(env)
        for variable, setting in self.environment:
            merged[variable] = _specifiers(setting, instance, root)
        argv = [_local_path(_variables(_specifiers(word, instance, root), merged)) for word in self.exec_start]
        return argv, merged


def _specifiers(text: str, instance: str, runtime_root: str = "/run") -> str:
    def one(match: re.Match) -> str:
        letter = match.group(1)
        if letter == "%":
            return "%"
        if letter == "i":
            return instance
        if letter == "t":
            return runtime_root
        raise ClusterError(f"unit specifier %{letter} is not supported by the harness")

    return re.sub(r"%(.)", one, text)


def _variables(text: str, env: Mapping[str, str]) -> str:
    def one(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in env:
            raise ClusterError(f"the unit uses ${name}, which the harness does not set")
        return env[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, text)


def _local_path(word: str) -> str:
    if word == INSTALL_PYTHON:
        return sys.executable
    if word == INSTALL_DIR or word.startswith(INSTALL_DIR + "/"):
        return str(REPO_ROOT) + word[len(INSTALL_DIR):]
    return word


# --- private PostgreSQL and Redis ----------------------------------------------------------------------

class PrivatePostgres:
    """A PostgreSQL server of our own on a free loopback port (trust auth, user postgres), in a fresh directory
    of its own under the system's temp dir (as root it runs as ``postgres``, which must reach that directory;
    ``remove()`` deletes it). Its log is ``directory/postgres.log``."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="wvd-cluster-pg-"))
        self.log = self.directory / "postgres.log"
        self.port = 0
        # PostgreSQL refuses to run as root: then it runs as the system's postgres user.
        self.run_as = "postgres" if os.geteuid() == 0 else ""

    @property
    def url(self) -> str:
        return f"postgres://postgres@{LOOPBACK}:{self.port}/wvd"

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", self.run_as, "--"] if self.run_as else []
        completed = subprocess.run([*prefix, *argv], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                   timeout=timeout)
        if completed.returncode != 0:
            raise ClusterError(f"{' '.join(argv)} exited with {completed.returncode}\n{completed.stdout}"
                               f"{completed.stderr}\n{read_log(self.log)[-4000:]}")
        return completed

    def create(self) -> None:
        self.log.touch()
        if self.run_as:
            account = pwd.getpwnam(self.run_as)
            for path in (self.directory, self.log):
                os.chown(path, account.pw_uid, account.pw_gid)
        self._run(str(POSTGRES_BIN / "initdb"), "-D", str(self.directory / "data"), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--no-sync")
        self.port = free_port()
        self.start()
        self._run(str(POSTGRES_BIN / "createdb"), "-h", LOOPBACK, "-p", str(self.port), "-U", "postgres", "wvd")

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses={LOOPBACK} -k {self.directory} "
                   "-c fsync=off -c max_connections=200")
        self._run(str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.directory / "data"), "-l", str(self.log),
                  "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Fast shutdown (clients disconnected, no waiting for them), by our own data directory's pid file."""
        if (self.directory / "data" / "postmaster.pid").exists():
            self._run(str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "fast", "-w",
                      "-t", "60", "stop")

    @property
    def pid(self) -> int:
        try:
            return int((self.directory / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def remove(self) -> None:
        """Delete the server's directory (stop it first)."""
        shutil.rmtree(self.directory, ignore_errors=True)


class PrivateRedis:
    """A redis-server of our own on a free loopback port, nothing persisted."""

    def __init__(self, directory: Path, log: Path) -> None:
        self.directory = directory
        self.log = log
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self, timeout: float = 20) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.process = start_logged(
            ["redis-server", "--bind", LOOPBACK, "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)], self.log)
        _wait(lambda: is_listening(self.port), timeout, self.process, f"redis-server on {self.port}", self.log)

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process, grace=10)
            self.process = None


# --- the cluster's own processes -----------------------------------------------------------------------

@dataclass
class Process:
    """One process of the cluster (its own process group), with its log."""

    name: str
    log: Path
    process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to this process's group (it and its children)."""
        if self.alive:
            os.killpg(self.pid, sig)

    def stop(self, grace: float = 10) -> int | None:
        if self.process is None:
            return None
        code = stop_group(self.process, grace=grace)
        self.process = None
        return code

    def text(self) -> str:
        return read_log(self.log)


@dataclass
class Instance(Process):
    """One `serve` instance: its name (WVD_GATEWAY_INSTANCE_NAME), plain web port and RD Gateway port."""

    index: int = 0
    web_port: int = 0
    gateway_port: int = 0
    metrics_port: int = 0  # its WVD_METRICS_LISTEN (loopback)
    log_offset: int = 0  # where this run's output starts in the log (a restart appends to it)

    def this_run(self) -> str:
        """This run's output (since the last start)."""
        try:
            with open(self.log, "rb") as log:
                log.seek(self.log_offset)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def holds_channel(self, host_name: str) -> bool:
        """Whether this running instance holds ``host_name``'s host channel (hostagent/consumers.py logs each
        channel's connect and disconnect)."""
        text = self.this_run()
        return self.alive and (text.count(f"({host_name}) connected from")
                               > text.count(f"({host_name}) disconnected from"))

    @property
    def instance_name(self) -> str:
        return f"gw{self.index}"

    @property
    def base_url(self) -> str:
        """This instance's own web listener (plain HTTP, as behind the proxy; requests from loopback count as
        the proxy's). Clients and agents use the cluster's ``base_url`` instead."""
        return f"http://{LOOPBACK}:{self.web_port}"


@dataclass(frozen=True)
class Desktop:
    """A published desktop (``Cluster.publish_desktop``): its pool, its group and the registration token."""

    pool_id: int
    group_id: int
    registration_token: str


@dataclass
class Agent(Process):
    """A host agent (``python -m hostagent.agent run``) registered as ``host_name``."""

    host_name: str = ""
    state_dir: Path = field(default_factory=Path)
    rdp_target: str = ""


class Cluster:
    """The production shape as real processes on loopback; a context manager, or call start()/stop().

    After start: ``base_url`` (the proxy, https), ``ca_file``/``ssl_context()`` to trust it, ``instance(i)``
    (1-based), ``worker``, ``beat``, ``nginx``, ``postgres``, ``redis``, ``env`` (the processes' common
    environment), ``manage(*args)``, ``call(...)``, ``admin_token()``, ``start_agent(...)``, ``logs()``.
    """

    def __init__(self, instances: int = 2, *, work_dir: Path | None = None,
                 extra_env: Mapping[str, str] | None = None, start_timeout: float = 90.0, grace: float = 10.0,
                 ca: tuple[Path, Path] | None = None):
        if instances < 1:
            raise ValueError("a cluster has at least one instance")
        self._own_work_dir = work_dir is None
        self.work_dir = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="wvd-cluster-"))
        self.extra_env = dict(extra_env or {})
        # An existing CA (certificate, key) adopted with `initca --cert --key` instead of a new one: a bench
        # issuing thousands of host certificates adopts an EC root, quicker to load for each than RSA.
        self.ca_files = ca
        self.start_timeout = start_timeout
        self.grace = grace
        self.data_dir = self.work_dir / "data"
        self.log_dir = self.work_dir / "logs"
        self.postgres = PrivatePostgres()
        self.redis = PrivateRedis(self.work_dir / "redis", self.log_dir / "redis.log")
        self.instances = [Instance(f"serve-gw{i}", self.log_dir / f"serve-gw{i}.log", index=i)
                          for i in range(1, instances + 1)]
        self.worker = Process("worker", self.log_dir / "worker.log")
        self.beat = Process("beat", self.log_dir / "beat.log")
        self.nginx = Process("nginx", self.log_dir / "nginx.log")
        self.agents: list[Agent] = []
        self.proxy_port = 0
        self.worker_metrics_port = 0  # the worker's WVD_METRICS_LISTEN (loopback)
        self.env: dict[str, str] = {}
        self._admin_token = ""
        self._stopped = False

    # --- addresses -------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The web side as clients and agents reach it: nginx, terminating TLS."""
        return f"https://{LOOPBACK}:{self.proxy_port}"

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "ca" / "ca.crt"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting the cluster's CA only, with host name checks."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def instance(self, index: int) -> Instance:
        """Instance ``index``, counted from 1 (``gw1``, ``gw2``, …)."""
        if not 1 <= index <= len(self.instances):
            raise IndexError(f"instance {index}: the cluster has instances 1..{len(self.instances)}")
        return self.instances[index - 1]

    # --- lifecycle -------------------------------------------------------------------------------------
    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """PostgreSQL, Redis, migrate and the CA once, the instances one by one, nginx, the worker, beat."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.postgres.create()
            self.redis.start()
            self.env = self._environment()
            self.manage("migrate", "--noinput", timeout=300)
            adopt = ["--cert", str(self.ca_files[0]), "--key", str(self.ca_files[1])] if self.ca_files else []
            self.manage("initca", *adopt)
            for instance in self.instances:  # one by one: the first one issues the shared certificates
                self.start_instance(instance.index)
            self._start_nginx()
            self.start_worker()
            self.start_beat()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop everything this cluster started (agents first, the databases last) and remove its files."""
        if self._stopped:
            return
        self._stopped = True
        for process in [*self.agents, self.beat, self.worker, self.nginx, *self.instances]:
            process.stop(grace=self.grace)
        self.redis.stop()
        try:
            self.postgres.stop()
        finally:
            self.postgres.remove()
            if self._own_work_dir:
                shutil.rmtree(self.work_dir, ignore_errors=True)

    # --- the instances ---------------------------------------------------------------------------------
    def start_instance(self, index: int) -> Instance:
        """Start instance ``index`` (again, after a kill: same name and ports) and wait until it answers."""
        instance = self.instance(index)
        if instance.alive:
            raise ClusterError(f"{instance.name} is already running")
        instance.web_port = instance.web_port or free_port()
        instance.gateway_port = instance.gateway_port or free_port()
        instance.metrics_port = instance.metrics_port or free_port()
        env = {**self.env,
               "WVD_WEB_LISTEN": f"{LOOPBACK}:{instance.web_port}",
               "WVD_GATEWAY_LISTEN": f"{LOOPBACK}:{instance.gateway_port}",
               "WVD_METRICS_LISTEN": f"{LOOPBACK}:{instance.metrics_port}"}
        argv, env = Unit.read(SERVE_UNIT).command(env, instance.instance_name)
        instance.log_offset = instance.log.stat().st_size if instance.log.exists() else 0
        instance.process = start_logged(argv, instance.log, env=env, cwd=REPO_ROOT)
        _wait(lambda: is_listening(instance.gateway_port) and _answers(instance.web_port), self.start_timeout,
              instance.process, instance.name, instance.log)
        return instance

    def kill_instance(self, index: int, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal instance ``index`` (SIGKILL by default: a crash, nothing cleaned up) and reap it."""
        instance = self.instance(index)
        instance.signal(sig)
        if instance.process is not None:
            instance.process.wait(timeout=self.grace)
            instance.process = None

    def stop_instance(self, index: int) -> int | None:
        """Stop instance ``index`` as systemd does (SIGTERM, SIGKILL after the grace period)."""
        return self.instance(index).stop(grace=self.grace)

    # --- Celery ----------------------------------------------------------------------------------------
    def start_worker(self) -> None:
        """Start the worker (again: its runtime directory, the metrics' files, starts empty as under systemd)."""
        self.worker_metrics_port = self.worker_metrics_port or free_port()
        argv, env = Unit.read(WORKER_UNIT).command(
            {**self.env, "WVD_METRICS_LISTEN": f"{LOOPBACK}:{self.worker_metrics_port}"},
            runtime_root=self.work_dir / "run")
        self.worker.process = start_logged(argv, self.worker.log, env=env, cwd=REPO_ROOT)
        seen = len(self.worker.text())
        # Celery prints "<name> ready." once it consumes from the broker.
        _wait(lambda: " ready." in self.worker.text()[seen:], self.start_timeout, self.worker.process, "worker",
              self.worker.log)

    def kill_worker(self, sig: signal.Signals = signal.SIGKILL) -> None:
        self.worker.signal(sig)
        if self.worker.process is not None:
            self.worker.process.wait(timeout=self.grace)
            self.worker.process = None

    def start_beat(self) -> None:
        state = self.work_dir / "beat-state"
        state.mkdir(exist_ok=True)
        argv, env = Unit.read(BEAT_UNIT).command({**self.env, "STATE_DIRECTORY": str(state)})
        self.beat.process = start_logged(argv, self.beat.log, env=env, cwd=REPO_ROOT)
        seen = len(self.beat.text())
        _wait(lambda: "beat: Starting" in self.beat.text()[seen:], self.start_timeout, self.beat.process, "beat",
              self.beat.log)

    # --- the databases ---------------------------------------------------------------------------------
    def restart_redis(self, down_for: float = 0.0) -> None:
        """Stop the private Redis (its data is gone: nothing is persisted), wait ``down_for`` s, start it
        again on the same port."""
        self.redis.stop()
        time.sleep(down_for)
        self.redis.start()

    def restart_postgres(self, down_for: float = 0.0) -> None:
        """Fast-stop the private PostgreSQL (its clients are disconnected), wait ``down_for`` s, start it."""
        self.postgres.stop()
        time.sleep(down_for)
        self.postgres.start()

    # --- running things --------------------------------------------------------------------------------
    def manage(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        """``manage.py ARGS`` with the cluster's environment (its database, Redis and data dir)."""
        return run_manage(self.env, *args, timeout=timeout, check=check)

    def call(self, method: str, path: str, body: dict | None = None, token: str | None = None,
             timeout: float = 30) -> tuple[int, object]:
        """One JSON API request through the proxy (testbed.api.call)."""
        return call(self.base_url, method, path, body, token, timeout=timeout, context=self.ssl_context())

    def api(self, method: str, path: str, body: dict | None = None, token: str | None = None) -> object:
        """``call`` as the admin (or ``token``), raising unless the answer is 2xx; the decoded body."""
        status, answer = self.call(method, path, body, token or self.admin_token())
        if not 200 <= status < 300:
            raise ClusterError(f"{method} {path}: {status} {answer}")
        return answer

    def create_user(self, username: str, password: str, *, superuser: bool = False) -> int:
        """A user made in the database (as `createsuperuser` would); returns its id."""
        make = "create_superuser" if superuser else "create_user"
        out = self.manage("shell", "--no-imports", "-c", (
            "from django.contrib.auth import get_user_model;"
            f"print(get_user_model().objects.{make}({username!r}, '', {password!r}).pk)"))
        return int(out.stdout.strip().splitlines()[-1])

    def sign_in(self, username: str, password: str) -> str:
        """An API token for ``username`` (POST /api/v1/auth/token/ through the proxy)."""
        status, body = self.call("POST", "/api/v1/auth/token/", {"username": username, "password": password})
        if status != 201:
            raise ClusterError(f"sign-in of {username} failed: {status} {body}")
        return body["token"]  # type: ignore[index]

    def admin_token(self) -> str:
        """A token of the cluster's admin (``cluster-admin``, made on first use)."""
        if not self._admin_token:
            password = secrets.token_urlsafe(16)
            self.create_user("cluster-admin", password, superuser=True)
            self._admin_token = self.sign_in("cluster-admin", password)
        return self._admin_token

    def scrape(self, port: int) -> str:
        """A process's /metrics (``instance(i).metrics_port``, ``worker_metrics_port``), Prometheus' text format."""
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            body = response.read().decode()
        finally:
            conn.close()
        if response.status != 200:
            raise ClusterError(f"/metrics on {port}: {response.status}")
        return body

    def channel_instance(self, host_name: str) -> int | None:
        """The index of the running instance holding ``host_name``'s host channel, None when none does."""
        holders = [instance.index for instance in self.instances if instance.holds_channel(host_name)]
        return holders[0] if len(holders) == 1 else None

    def publish_desktop(self, name: str, user_ids: Sequence[int], max_sessions: int = 100) -> Desktop:
        """As an admin through the API: a workspace, a pooled host pool (breadth-first), its desktop group
        assigned to ``user_ids`` (from ``create_user``) and the pool's registration token for ``start_agent``."""
        workspace = self.api("POST", "/api/v1/workspaces/", {"name": name, "friendly_name": name.title()})
        pool = self.api("POST", "/api/v1/hostpools/", {"name": f"{name}-pool", "pool_type": "pooled",
                                                      "load_balancer": "breadth_first",
                                                      "max_session_limit": max_sessions})
        group = self.api("POST", "/api/v1/applicationgroups/", {
            "name": f"{name}-desktops", "group_type": "desktop", "host_pool": pool["id"],
            "workspace": workspace["id"]})
        for user_id in user_ids:
            self.api("POST", "/api/v1/assignments/", {"application_group": group["id"], "user": user_id})
        token = self.api("POST", f"/api/v1/hostpools/{pool['id']}/registration-token/", {})["token"]
        return Desktop(pool_id=pool["id"], group_id=group["id"], registration_token=token)

    def start_agent(self, host_name: str, registration_token: str, rdp_target: str,
                    args: Sequence[str] = ()) -> Agent:
        """Register a host agent through the proxy with ``registration_token`` and run it, bridging to
        ``rdp_target`` (host:port); ``args`` go to ``agent run``. Does not wait for the host to be available."""
        state_dir = self.work_dir / "agents" / host_name
        registered = subprocess.run(
            [sys.executable, "-m", "hostagent.agent", "register", "--server", self.base_url,
             "--token", registration_token, "--name", host_name, "--state-dir", str(state_dir),
             "--ca-file", str(self.ca_file)],
            env=self.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if registered.returncode != 0:
            raise ClusterError(f"agent {host_name} did not register: {registered.stderr[-3000:]}")
        agent = Agent(f"agent-{host_name}", self.log_dir / f"agent-{host_name}.log", host_name=host_name,
                      state_dir=state_dir, rdp_target=rdp_target)
        self.agents.append(agent)
        self.run_agent(agent, args)
        return agent

    def run_agent(self, agent: Agent, args: Sequence[str] = ()) -> None:
        """Start (again) a registered agent's ``run``; it reconnects within a second when its channel drops."""
        agent.process = start_logged(
            [sys.executable, "-m", "hostagent.agent", "run", "--state-dir", str(agent.state_dir),
             "--rdp-target", agent.rdp_target, "--backoff-max", "1", *args],
            agent.log, env=self.env, cwd=REPO_ROOT)

    def logs(self) -> dict[str, str]:
        """Each process's output so far, by name."""
        processes = [*self.instances, self.worker, self.beat, self.nginx, *self.agents]
        found = {process.name: process.text() for process in processes}
        found["postgres"] = read_log(self.postgres.log)
        found["redis"] = read_log(self.redis.log)
        return found

    def failure_report(self, limit: int = 8000) -> str:
        return "\n".join(f"--- {name}.log\n{text[-limit:]}" for name, text in self.logs().items())

    # --- internals -------------------------------------------------------------------------------------
    def _environment(self) -> dict[str, str]:
        # Nothing of the test process's own WVD_* settings leaks in (its data dir, its database).
        env = {key: value for key, value in os.environ.items() if not key.startswith("WVD_")}
        self.proxy_port = free_port()
        proxy_origin = f"https://{LOOPBACK}:{self.proxy_port}"
        env.update(FAST_ENV)
        env.update(
            DJANGO_SETTINGS_MODULE="wvdportal.settings",
            PYTHONUNBUFFERED="1",
            WVD_DATA_DIR=str(self.data_dir),
            WVD_SECRET_KEY=secrets.token_urlsafe(50),
            WVD_DATABASE_URL=self.postgres.url,
            WVD_REDIS_URL=self.redis.url,
            WVD_WEB_TLS="off",
            WVD_TRUSTED_PROXIES=LOOPBACK,
            WVD_WEB_ORIGINS=proxy_origin,
            WVD_CSRF_TRUSTED_ORIGINS=proxy_origin,
        )
        env.update(self.extra_env)
        return env

    def _start_nginx(self) -> None:
        directory = self.work_dir / "nginx"
        (directory / "tmp").mkdir(parents=True, exist_ok=True)
        # The web side's certificate as `serve` would present it: the gateway-tls one our CA issued.
        out = self.manage("shell", "--no-imports", "-c", (
            "from pathlib import Path; from gateway.tls import write_web_credentials;"
            f"print(*write_web_credentials(Path({str(directory)!r})), sep='\\n')"))
        cert, key, chain = (out.stdout.strip().splitlines()[-3:] + ["None"])[:3]
        full_chain = directory / "web-fullchain.crt"
        full_chain.write_bytes(Path(cert).read_bytes() + (Path(chain).read_bytes() if chain != "None" else b""))
        config = directory / "nginx.conf"
        config.write_text(nginx_config(directory, self.proxy_port, full_chain, Path(key),
                                       [instance.web_port for instance in self.instances]))
        self.nginx.process = start_logged(["nginx", "-p", str(directory), "-c", str(config)], self.nginx.log)
        _wait(lambda: is_listening(self.proxy_port), self.start_timeout, self.nginx.process, "nginx", self.nginx.log)


def nginx_config(directory: Path, port: int, certificate: Path, key: Path, upstreams: Sequence[int]) -> str:
    """The proxy of docs/deploy.md (shape 2) for ``upstreams`` (the instances' plain web ports): TLS here,
    WebSocket upgrades passed on, a request that finds an instance down passed to the next one."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # nginx's workers: the invoking user, not nobody
    servers = "\n".join(f"        server {LOOPBACK}:{p} max_fails=1 fail_timeout=2s;" for p in upstreams)
    tmp = directory / "tmp"
    return f"""{user}daemon off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 4096; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream wvd_web {{
{servers}
    }}
    server {{
        listen {LOOPBACK}:{port} ssl;
        ssl_certificate {certificate};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://wvd_web;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_connect_timeout 2s;
            proxy_next_upstream error timeout http_502;
            proxy_read_timeout 1h;
        }}
    }}
}}
"""


def _answers(port: int) -> bool:
    """Whether an HTTP server answers on loopback ``port`` (any status)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=2)
    try:
        conn.request("GET", "/admin/login/")
        conn.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        conn.close()


def _wait(condition: Callable[[], bool], timeout: float, process: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise ClusterError(f"{what} exited with {process.returncode}\n{read_log(log)[-6000:]}")
        if time.monotonic() > deadline:
            raise ClusterError(f"{what} did not start within {timeout:.0f} s\n{read_log(log)[-6000:]}")
        time.sleep(0.1)


__all__ = ["FAST_ENV", "UNITS_DIR", "UNIT_FILES", "Agent", "Cluster", "ClusterError", "Desktop", "Instance", "PrivatePostgres",
           "PrivateRedis", "Process", "Unit", "missing_tools", "nginx_config"]
