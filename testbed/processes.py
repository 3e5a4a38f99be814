"""The control plane as real processes, for black-box tests and benchmarks: migrate, `serve`, and a Celery worker.

Each ``ControlPlane`` gets a fresh data dir and a fresh database: the SQLite file in its data dir by
default, or, when this test process runs with ``WVD_DATABASE_URL`` pointing at PostgreSQL, a new
database ``wvd_e2e_<random>`` on that server, dropped on stop. With ``WVD_REDIS_URL`` set the plane uses
that Redis (channel layer, cache, Celery broker) under a namespace of its own (WVD_REDIS_NAMESPACE),
so planes running at once never take each other's tasks or messages; Redis is never flushed.

The web side speaks HTTPS like `serve`'s default, with the certificate `serve` has our CA issue; the
harness trusts that CA only (``ssl_context()``, from the plane's data dir), never "any certificate". With
``WVD_WEB_TLS=off`` in ``extra_env`` or ``--web-plain`` in ``serve_args`` it speaks plain HTTP.
"""
from __future__ import annotations

import http.client
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

from testbed.api import call
from testbed.lifecycle import group_members, read_log, start_logged, stop_group
from testbed.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql"}


class ControlPlaneError(RuntimeError):
    """The control plane did not start (the message carries the processes' logs)."""


def fresh_postgres_database(server_url: str) -> tuple[str, str]:
    """Create an empty database ``wvd_e2e_<random>`` on the server of ``server_url``.

    Returns ``(database name, URL of the new database)``; the URL keeps credentials and options.
    """
    import psycopg  # only needed when PostgreSQL is in play

    name = f"wvd_e2e_{secrets.token_hex(6)}"
    with psycopg.connect(maintenance_url(server_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


def drop_postgres_database(server_url: str, name: str) -> None:
    """Drop a database made by ``fresh_postgres_database`` (closing any connection left to it)."""
    import psycopg

    if not name.startswith("wvd_e2e_"):
        raise ValueError(f"refusing to drop {name!r}: not a database this test bed created")
    with psycopg.connect(maintenance_url(server_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_manage(env: Mapping[str, str], *args: str, timeout: float = 120, check: bool = True
               ) -> subprocess.CompletedProcess:
    """Run ``manage.py ARGS`` from the repository with ``env``; raise with its output when it fails (``check``)."""
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "manage.py"), *args],
        cwd=REPO_ROOT, env=dict(env), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout,
    )
    if check and completed.returncode != 0:
        raise ControlPlaneError(
            f"manage.py {' '.join(args)} exited with {completed.returncode}\n"
            f"--- stdout\n{completed.stdout}\n--- stderr\n{completed.stderr}"
        )
    return completed


def maintenance_url(server_url: str) -> str:
    # libpq knows postgres:// and postgresql://, not dj-database-url's pgsql://.
    return urlunsplit(urlsplit(server_url)._replace(scheme="postgresql", path="/postgres"))


class ControlPlane:
    """The control plane started as real processes; a context manager, or call start()/stop().

    After start: ``base_url`` (https://), ``ws_url`` (wss://), ``ca_file`` and ``ssl_context()`` to trust it,
    ``port``, ``gateway_port``, ``env`` (the processes' environment), ``data_dir``, ``manage(*args)`` to run
    management commands in that same environment, ``get()`` and ``call()`` for requests, ``logs()``.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        extra_env: Mapping[str, str] | None = None,
        serve_args: Sequence[str] = (),
        start_timeout: float = 60.0,
        grace: float = 10.0,
        web_ca_file: Path | None = None,
        metrics: bool = False,
        worker_pool: str = "solo",
    ):
        self._own_data_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="wvd-e2e-"))
        self.extra_env = dict(extra_env or {})
        self.serve_args = list(serve_args)
        self.start_timeout = start_timeout
        self.grace = grace
        self.web_ca_file = web_ca_file  # the CA the web side's certificate chains to, when not the plane's own
        # metrics: each process gets WVD_METRICS_LISTEN on a free port of its own (``metrics_url(name)``),
        # the worker a PROMETHEUS_MULTIPROC_DIR in the data dir (it may run a prefork pool: ``worker_pool``).
        self.metrics = metrics
        self.worker_pool = worker_pool
        self.metrics_ports: dict[str, int] = {}
        self.host = "127.0.0.1"
        self.port = 0
        self.gateway_port = 0
        self.env: dict[str, str] = {}
        self.database_name = ""
        self.exit_codes: dict[str, int] = {}
        self._server_url = ""  # the PostgreSQL server we made a database on, if any
        self._processes: dict[str, subprocess.Popen] = {}
        self._stopped = False

    # --- addresses -----------------------------------------------------------------------------------
    @property
    def tls(self) -> bool:
        """Whether `serve` terminates TLS for the web side (its default)."""
        plain = self.extra_env.get("WVD_WEB_TLS", "").strip().lower() in {"0", "false", "no", "off"}
        return not (plain or "--web-plain" in self.serve_args)

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The plane's CA certificate (what GET /ca.pem serves), created by `serve` on its first start."""
        return self.data_dir / "ca" / "ca.crt"

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context trusting the plane's CA only (or ``web_ca_file``, for a plane given certificate
        files), with host name checks; None for a plain plane."""
        return ssl.create_default_context(cafile=str(self.web_ca_file or self.ca_file)) if self.tls else None

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def uses_redis(self) -> bool:
        return bool(self.env.get("WVD_REDIS_URL"))

    # --- lifecycle -----------------------------------------------------------------------------------
    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Create the database, migrate, start serve (and a worker with Redis), wait until HTTP answers."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.env = self._environment()
            self.manage("migrate", "--noinput", timeout=300)
            self._start_serve()
            if self.uses_redis:
                self._start_worker()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM every process (SIGKILL after the grace period), drop the database, remove own files."""
        if self._stopped:
            return
        self._stopped = True
        # Worker first: it may still be finishing a task against the database we drop next.
        for name in sorted(self._processes, key=lambda n: n != "worker"):
            self.exit_codes[name] = stop_group(self._processes[name], grace=self.grace)
        if self._server_url and self.database_name:
            drop_postgres_database(self._server_url, self.database_name)
        if self._own_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def pids(self) -> list[int]:
        """PIDs of the processes this plane started (serve, and the worker with Redis)."""
        return [process.pid for process in self._processes.values()]

    def leftover_pids(self) -> set[int]:
        """Processes still alive in any of this plane's process groups (empty after a clean stop)."""
        found: set[int] = set()
        for process in self._processes.values():
            found |= group_members(process.pid)
        return found

    # --- running things ------------------------------------------------------------------------------
    def manage(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``manage.py ARGS`` with the plane's environment; raise with its output when it fails.

        e.g. ``plane.manage("shell", "-c", "from django.contrib.auth.models import User; ...")``
        """
        return run_manage(self.env, *args, timeout=timeout, check=check)

    def get(
        self, path: str, headers: Mapping[str, str] | None = None, timeout: float = 10
    ) -> tuple[int, dict[str, str], bytes]:
        """GET ``path`` from the plane: ``(status, headers with lower-case names, body)``."""
        if self.tls:
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.ssl_context())
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers=dict(headers or {}))
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def call(self, method: str, path: str, body: dict | None = None, token: str | None = None,
             timeout: float = 30) -> tuple[int, object]:
        """One JSON API request (testbed.api.call) trusting the plane's CA."""
        return call(self.base_url, method, path, body, token, timeout=timeout, context=self.ssl_context())

    def metrics_url(self, name: str) -> str:
        """Where process ``name`` (``serve``, ``worker``) serves /metrics (the plane started with metrics)."""
        return f"http://{self.host}:{self.metrics_ports[name]}/metrics"

    def scrape(self, name: str, timeout: float = 10) -> str:
        """Process ``name``'s /metrics, in Prometheus' text format."""
        conn = http.client.HTTPConnection(self.host, self.metrics_ports[name], timeout=timeout)
        try:
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise ControlPlaneError(f"GET {self.metrics_url(name)}: {response.status}")
            return body.decode("utf-8")
        finally:
            conn.close()

    def _process_env(self, name: str) -> dict[str, str]:
        """The environment of process ``name``: the plane's, and its own metrics listener when asked for."""
        if not self.metrics:
            return self.env
        self.metrics_ports[name] = free_port(self.host)
        env = {**self.env, "WVD_METRICS_LISTEN": f"{self.host}:{self.metrics_ports[name]}"}
        if name == "worker":
            directory = self.data_dir / "metrics-worker"  # must exist before the worker imports prometheus_client
            directory.mkdir(exist_ok=True)
            env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
        return env

    def logs(self) -> dict[str, str]:
        """Each process's output so far, by name (``serve``, ``worker``)."""
        return {name: read_log(self.log_dir / f"{name}.log") for name in self._processes}

    def failure_report(self) -> str:
        return "\n".join(f"--- {name}.log\n{text[-20_000:]}" for name, text in self.logs().items())

    # --- internals -----------------------------------------------------------------------------------
    def _environment(self) -> dict[str, str]:
        # Nothing of the test process's own WVD_* settings leaks in (its data dir, its database).
        env = {key: value for key, value in os.environ.items() if not key.startswith("WVD_")}
        env.update(
            DJANGO_SETTINGS_MODULE="wvdportal.settings",
            PYTHONUNBUFFERED="1",
            WVD_DATA_DIR=str(self.data_dir),
            WVD_SECRET_KEY=secrets.token_urlsafe(50),
            WVD_LOG_LEVEL="INFO",
        )
        database_url = os.environ.get("WVD_DATABASE_URL", "").strip()
        if urlsplit(database_url).scheme in POSTGRES_SCHEMES:
            self._server_url = database_url
            self.database_name, env["WVD_DATABASE_URL"] = fresh_postgres_database(database_url)
        # Otherwise no WVD_DATABASE_URL: the settings' default SQLite file inside the data dir.
        redis_url = os.environ.get("WVD_REDIS_URL", "").strip()
        if redis_url:
            env["WVD_REDIS_URL"] = redis_url
            # Its own channel groups, cache keys and task queue: planes sharing one Redis stay apart.
            env["WVD_REDIS_NAMESPACE"] = f"wvd-e2e-{secrets.token_hex(4)}"
        env.update(self.extra_env)
        return env

    def _start_serve(self) -> None:
        for _attempt in range(3):
            self.port = free_port(self.host)
            # A free port of its own for the RD Gateway listener `serve` runs beside the web server,
            # so planes and other tests never collide on the default 8443.
            self.gateway_port = free_port(self.host)
            if "WVD_GATEWAY_LISTEN" not in self.extra_env:
                self.env["WVD_GATEWAY_LISTEN"] = f"{self.host}:{self.gateway_port}"
            log = self.log_dir / "serve.log"
            process = start_logged(
                [sys.executable, str(REPO_ROOT / "manage.py"), "serve", "--listen", f"{self.host}:{self.port}",
                 *self.serve_args],
                log, env=self._process_env("serve"), cwd=REPO_ROOT,
            )
            self._processes["serve"] = process
            if self._wait_http(process):
                return
            # Lost the race for a port between free_port() and the bind: try another one.
            if "Address already in use" not in read_log(log):
                break
            stop_group(process, grace=self.grace)
        raise ControlPlaneError(f"serve did not answer HTTP on {self.base_url}\n{self.failure_report()}")

    def _wait_http(self, process: subprocess.Popen) -> bool:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                self.get("/admin/login/", timeout=2)
                return True
            except OSError:  # not listening yet, or the CA file not written yet (FileNotFoundError)
                time.sleep(0.1)
        return False

    def _start_worker(self) -> None:
        name = f"wvd-e2e-{secrets.token_hex(4)}@%h"
        log = self.log_dir / "worker.log"
        process = start_logged(
            [sys.executable, "-m", "celery", "-A", "wvdportal", "worker", "-l", "info", f"--pool={self.worker_pool}",
             *(["--concurrency=2"] if self.worker_pool == "prefork" else []),
             "-n", name, "--without-gossip", "--without-mingle"],
            log, env=self._process_env("worker"), cwd=REPO_ROOT,
        )
        self._processes["worker"] = process
        deadline = time.monotonic() + self.start_timeout
        # Celery prints "<name> ready." once it consumes from the broker.
        while " ready." not in read_log(log):
            if process.poll() is not None or time.monotonic() >= deadline:
                raise ControlPlaneError(f"the Celery worker did not become ready\n{self.failure_report()}")
            time.sleep(0.1)
