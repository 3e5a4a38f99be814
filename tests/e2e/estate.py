"""The estate the end-to-end tests share, for steps 1-12 with real parts: a stock FreeRDP client (2.11 or
3.10) opens the .rdp file our feed served, reaches our RD Gateway over TLS, the broker orders a real agent
process to dial the same instance, and RDP runs end to end to xrdp.

The estate is built through the REST API as an admin would; the agent registers with the pool's token and
runs as its own process; the user signs in, downloads the file and trusts the control plane's CA from
``/ca.pem``; no client is ever told to ignore a certificate. Runs on the embedded default and, when the
test process has WVD_DATABASE_URL/WVD_REDIS_URL, on PostgreSQL + Redis with a separate Celery worker.
``running_estate`` builds it (with more settings for the control plane where a test needs them, e.g.
test_directory_user.py's WVD_LDAP_*); ``estate`` is the module-scoped fixture most tests share.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from testbed.lifecycle import read_log, start_logged, stop_group
from testbed.processes import REPO_ROOT, ControlPlane
from testbed.xrdp import FREERDP2, XrdpServer, Xvfb, run_xfreerdp
from wire import rdpfile

PORTAL_PASSWORD = "e2e-portal-password-1"
POOL_NAME = "e2e-pool"  # also the .rdp's `full address`: the name the session host's certificate must carry
CHECKPOINTS = ("ticket_accepted_at", "host_selected_at", "host_notified_at", "host_connected_at",
               "relay_started_at", "ended_at")


@dataclass
class Estate:
    plane: ControlPlane
    xrdp: XrdpServer
    admin_token: str
    user_token: str
    pool_id: int
    host_name: str
    state_dir: Path
    ca_file: Path  # the control plane's CA as a user downloads it from /ca.pem
    agent: subprocess.Popen | None = None
    logs: dict[str, Path] = field(default_factory=dict)

    def api(self, method: str, path: str, body: dict | None = None, token: str | None = None) -> tuple[int, object]:
        return self.plane.call(method, path, body, token or self.admin_token)

    def failure_report(self) -> str:
        """Every process's log, for a failed test's report (tests/e2e/fixtures.py's hook reads this)."""
        parts = [self.plane.failure_report()]
        parts += [f"--- {name}.log\n{read_log(path)}" for name, path in self.logs.items()]
        return "\n".join(parts)

    def start_agent(self) -> None:
        log = self.plane.log_dir / "agent.log"
        self.logs["agent"] = log
        self.agent = start_logged(
            [sys.executable, "-m", "hostagent.agent", "run", "--state-dir", str(self.state_dir),
             "--rdp-target", self.xrdp.address, "--heartbeat-interval", "1", "--backoff-max", "1",
             # The host's RDP certificate from our CA, where the bed's xrdp reads it (no reload needed).
             "--rdp-cert", str(self.xrdp.rdp_cert_path), "--rdp-key", str(self.xrdp.rdp_key_path)],
            log, env=self.plane.env, cwd=REPO_ROOT,
        )

    def wait_rdp_certificate(self, timeout: float = 30) -> dict:
        """The host once its agent has installed our RDP certificate and xrdp presents it (verified)."""
        deadline = time.monotonic() + timeout
        while True:
            host = self.host()
            if host["rdp_certificate"] and host["rdp_certificate_sha256"] == self.presented_rdp_certificate():
                return host
            if time.monotonic() > deadline:
                raise AssertionError(f"the host's RDP certificate was not verified: {host}")
            time.sleep(0.3)

    def presented_rdp_certificate(self) -> str:
        """The SHA-256 of the certificate xrdp presents: the leaf in the file its xrdp.ini names."""
        try:
            chain = x509.load_pem_x509_certificates(self.xrdp.rdp_cert_path.read_bytes())
        except (FileNotFoundError, ValueError):
            return ""
        return chain[0].fingerprint(hashes.SHA256()).hex()

    def stop_agent(self) -> None:
        if self.agent is not None:
            stop_group(self.agent, grace=5)
            self.agent = None

    def host(self) -> dict:
        status, body = self.api("GET", f"/api/v1/sessionhosts/?name={self.host_name}")
        assert status == 200, body
        return body["results"][0]

    def wait_host(self, *statuses: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            host = self.host()
            if host["status"] in statuses:
                return host
            if time.monotonic() > deadline:
                raise AssertionError(f"host stayed {host['status']} (wanted {statuses}): {host}")
            time.sleep(0.3)

    def download_rdp(self, path: Path, token: str | None = None) -> str:
        """The .rdp file of the first desktop in the feed of ``token``'s user (alice's by default)."""
        token = token or self.user_token
        status, feed = self.api("GET", "/api/v1/feed/", token=token)
        assert status == 200, feed
        desktops = [r for r in feed if r["type"].lower() == "desktop"]
        request = urllib.request.Request(desktops[0]["rdp_url"], headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10, context=self.plane.ssl_context()) as response:
            assert response.headers["Content-Type"].startswith("application/x-rdp")
            data = response.read()
        path.write_bytes(data)
        return rdpfile.decode(data)

    def connect(self, rdp: Path | str, *options: str, client: str = FREERDP2, timeout: float = 25) -> tuple[int, str]:
        """Open ``rdp`` (a file, or ``/v:HOST:PORT``) with ``client``, our CA trusted, ``options`` after it."""
        target = str(rdp) if isinstance(rdp, Path) else rdp
        return run_xfreerdp([target, *options, f"/u:{self.xrdp.user}", f"/p:{self.xrdp.password}", "/size:800x600"],
                            timeout=timeout, client=client, ca_file=self.ca_file)

    def last_connection(self) -> dict:
        status, body = self.api("GET", "/api/v1/connections/?ordering=-created_at&limit=1")
        assert status == 200, body
        return body["results"][0]

    def connection_count(self) -> int:
        status, body = self.api("GET", "/api/v1/connections/?limit=1")
        assert status == 200, body
        return body["count"]

    def assert_refused_unrecorded(self, recorded_before: int) -> None:
        """A ticket that is not ours proves no user: it writes no Connection record, it is counted and
        logged (gateway/preauth.py) instead."""
        assert self.connection_count() == recorded_before
        assert "requests refused: not one of our tickets" in self.plane.logs()["serve"]


def download_ca(plane: ControlPlane, path: Path) -> Path:
    status, _, body = plane.get("/ca.pem")
    assert status == 200, body
    path.write_bytes(body)
    return path


def sign_in(plane: ControlPlane, username: str, password: str) -> str:
    status, body = plane.call("POST", "/api/v1/auth/token/", {"username": username, "password": password}, None)
    assert status == 201, body
    return body["token"]


@contextmanager
def running_estate(xrdp_server: XrdpServer, data_dir: Path, extra_env: Mapping[str, str] | None = None,
                   ) -> Iterator[Estate]:
    """The estate, built through the API in ``data_dir``, its agent bridging to ``xrdp_server``; stopped at
    the end. ``extra_env`` adds settings for the control plane's processes (the directory's WVD_LDAP_*)."""
    # Short heartbeats so a stopped agent turns the host Unavailable within seconds.
    plane = ControlPlane(data_dir=data_dir / "wvd", extra_env={
        "WVD_HEARTBEAT_INTERVAL": "1", "WVD_MISSED_HEARTBEATS": "2", **(extra_env or {}),
    })
    plane.start()
    estate_: Estate | None = None
    try:
        plane.manage("shell", "--no-imports", "-c", (
            "from django.contrib.auth import get_user_model; U = get_user_model();"
            f"U.objects.create_superuser('e2e-admin', '', {PORTAL_PASSWORD!r});"
            f"U.objects.create_user('alice', '', {PORTAL_PASSWORD!r});"
            f"U.objects.create_user('bob', '', {PORTAL_PASSWORD!r})"
        ))
        admin_token = sign_in(plane, "e2e-admin", PORTAL_PASSWORD)

        def api(method: str, path: str, body: dict | None = None) -> dict:
            status, answer = plane.call(method, path, body, admin_token)
            assert status in (200, 201), (method, path, status, answer)
            return answer

        ids = plane.manage("shell", "--no-imports", "-c", (
            "from django.contrib.auth import get_user_model; import json;"
            "print(json.dumps({u.username: u.pk for u in get_user_model().objects.all()}))"
        )).stdout.strip().splitlines()[-1]
        user_ids = json.loads(ids)
        workspace = api("POST", "/api/v1/workspaces/", {"name": "e2e", "friendly_name": "E2E Workspace"})
        pool = api("POST", "/api/v1/hostpools/", {"name": POOL_NAME, "pool_type": "pooled",
                                                 "load_balancer": "breadth_first", "max_session_limit": 5})
        other_pool = api("POST", "/api/v1/hostpools/", {"name": "other-pool", "pool_type": "pooled"})
        group = api("POST", "/api/v1/applicationgroups/", {"name": "e2e-desktops", "group_type": "desktop",
                                                          "host_pool": pool["id"], "workspace": workspace["id"]})
        other = api("POST", "/api/v1/applicationgroups/", {"name": "bob-desktops", "group_type": "desktop",
                                                          "host_pool": other_pool["id"]})
        api("POST", "/api/v1/assignments/", {"application_group": group["id"], "user": user_ids["alice"]})
        api("POST", "/api/v1/assignments/", {"application_group": other["id"], "user": user_ids["bob"]})
        token = api("POST", f"/api/v1/hostpools/{pool['id']}/registration-token/", {})["token"]

        state_dir = data_dir / "agent-state"
        registered = subprocess.run(
            [sys.executable, "-m", "hostagent.agent", "register", "--server", plane.base_url, "--token", token,
             "--name", "e2e-host", "--state-dir", str(state_dir), "--ca-file", str(plane.ca_file)],
            env=plane.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        )
        assert registered.returncode == 0, registered.stderr
        estate_ = Estate(plane=plane, xrdp=xrdp_server, admin_token=admin_token,
                         user_token=sign_in(plane, "alice", PORTAL_PASSWORD), pool_id=pool["id"],
                         host_name="e2e-host", state_dir=state_dir,
                         ca_file=download_ca(plane, data_dir / "wvd-ca.pem"))
        estate_.start_agent()
        estate_.wait_host("available")
        estate_.wait_rdp_certificate()
        yield estate_
    finally:
        if estate_ is not None:
            estate_.stop_agent()
        plane.stop()


@pytest.fixture(scope="module")
def estate(xrdp_server: XrdpServer, xvfb: Xvfb, tmp_path_factory) -> Iterator[Estate]:
    with running_estate(xrdp_server, tmp_path_factory.mktemp("plane")) as estate_:
        yield estate_


def tampered(text: str) -> str:
    def flip(match: re.Match) -> str:
        token = match.group(1)
        middle = len(token) // 2
        return "gatewayaccesstoken:s:" + token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1:]

    return re.sub(r"gatewayaccesstoken:s:(\S+)", flip, text)
