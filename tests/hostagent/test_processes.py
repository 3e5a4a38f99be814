"""The host channel with real processes: a daphne `serve` (and a Celery worker with Redis) and real
agent processes, talking over loopback. Statuses are read from the plane's own database."""
from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import websockets

from testbed.lifecycle import read_log, start_logged, stop_group
from testbed.processes import REPO_ROOT, ControlPlane
from wire import hostchannel

pytestmark = pytest.mark.slow

HEARTBEAT_INTERVAL = 1
MISSED_HEARTBEATS = 2
WAIT = 60.0  # an upper bound for a loaded 2-core machine, not a speed assertion


class RdpListener:
    """Stands in for xrdp's port as the agent's health check sees it: accepts and closes."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            connection.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def plane(tmp_path):
    control_plane = ControlPlane(data_dir=tmp_path / "plane", extra_env={
        "WVD_HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL), "WVD_MISSED_HEARTBEATS": str(MISSED_HEARTBEATS)})
    control_plane.start()
    try:
        control_plane.manage("initca")
        yield control_plane
    finally:
        control_plane.stop()


@pytest.fixture
def rdp_listener():
    listener = RdpListener()
    yield listener
    listener.close()


def query(plane: ControlPlane, sql: str, *params) -> list[tuple]:
    """Read the plane's database directly (SQLite file or its PostgreSQL database)."""
    url = plane.env.get("WVD_DATABASE_URL")
    if url:
        import psycopg

        with psycopg.connect(url.replace("pgsql://", "postgresql://", 1)) as connection:
            return connection.execute(sql.replace("?", "%s"), params).fetchall()
    with sqlite3.connect(plane.data_dir / "wvd.sqlite3", timeout=20) as connection:
        return connection.execute(sql, params).fetchall()


def host_row(plane: ControlPlane, name: str) -> tuple | None:
    rows = query(plane, "SELECT id, status, status_reason, last_heartbeat_at FROM broker_sessionhost WHERE name = ?",
                 name)
    return rows[0] if rows else None


def wait_for(condition: Callable[[], object], what: str, *logs: Path) -> object:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    details = "\n".join(f"--- {path.name}\n{read_log(path)[-5000:]}" for path in logs)
    raise AssertionError(f"timed out waiting for {what}\n{details}")


def status_is(plane: ControlPlane, name: str, status: str) -> Callable[[], bool]:
    return lambda: (row := host_row(plane, name)) is not None and row[1] == status


def agent_env() -> dict[str, str]:
    # The agent runs with no Django settings at all, as on a session host.
    return {"PATH": os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT)}


def start_agent(state_dir: Path, rdp_port: int, log: Path) -> subprocess.Popen:
    return start_logged([sys.executable, "-m", "hostagent.agent", "run", "--state-dir", str(state_dir),
                         "--rdp-target", f"127.0.0.1:{rdp_port}", "--backoff-max", "2",
                         # Independent of how full this machine's disk is.
                         "--disk-min-free-percent", "0.01"],
                        log, env=agent_env(), cwd=REPO_ROOT)


def api_post(plane: ControlPlane, path: str, token: str, body: dict | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPSConnection(plane.host, plane.port, timeout=60, context=plane.ssl_context())
    try:
        connection.request("POST", path, body=json.dumps(body or {}),
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_agents_register_heartbeat_go_unavailable_come_back_and_answer_commands(plane, rdp_listener, tmp_path):
    setup = plane.manage("shell", "-c", (
        "from broker.models import HostPool\n"
        "from django.contrib.auth.models import User\n"
        "from core.models import ApiToken\n"
        "pool = HostPool.objects.create(name='pool-e2e')\n"
        "admin = User.objects.create_user('admin', is_staff=True, is_superuser=True)\n"
        "print(pool.issue_registration_token()[0], ApiToken.issue(admin)[1])\n"
    )).stdout.split()
    registration_token, api_token = setup[-2], setup[-1]
    logs = tmp_path / "logs"

    # A wrong token: a clear refusal and exit code 2.
    refused = subprocess.run([sys.executable, "-m", "hostagent.agent", "register", "--server", plane.base_url,
                              "--ca-file", str(plane.ca_file),
                              "--token", "wvdreg_not-the-token", "--name", "e2e-host-1",
                              "--state-dir", str(tmp_path / "refused")],
                             env=agent_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "not valid" in refused.stderr

    names = ["e2e-host-1", "e2e-host-2"]
    for name in names:
        registered = subprocess.run(
            [sys.executable, "-m", "hostagent.agent", "register", "--server", plane.base_url,
             "--ca-file", str(plane.ca_file),
             "--token", registration_token, "--name", name, "--state-dir", str(tmp_path / name)],
            env=agent_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert registered.returncode == 0, registered.stderr + plane.failure_report()
    # The same name again with the same token (a copied token on another machine): refused, the host stays.
    again = subprocess.run([sys.executable, "-m", "hostagent.agent", "register", "--server", plane.base_url,
                            "--ca-file", str(plane.ca_file),
                            "--token", registration_token, "--name", "e2e-host-1",
                            "--state-dir", str(tmp_path / "impostor")],
                           env=agent_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "(409)" in again.stderr and "already registered" in again.stderr, again.stderr
    agents = {name: start_agent(tmp_path / name, rdp_listener.port, logs / f"{name}.log") for name in names}
    serve_log = plane.log_dir / "serve.log"
    try:
        for name in names:
            wait_for(status_is(plane, name, "available"), f"{name} available", logs / f"{name}.log", serve_log)
        first_beat = host_row(plane, "e2e-host-1")[3]
        wait_for(lambda: host_row(plane, "e2e-host-1")[3] != first_beat, "a later heartbeat")

        # A command round trip through the API, the channel layer and the agent: certificate renewal
        # (new key, CSR over the channel, certificate back, files swapped).
        host_id = host_row(plane, "e2e-host-1")[0]
        before = json.loads((tmp_path / "e2e-host-1" / "agent.json").read_text())
        status, body = api_post(plane, f"/api/v1/hostagent/session-hosts/{host_id}/renew-certificate/", api_token)
        assert (status, body["status"], body["message"]) == (200, "ok", "Certificate renewed."), body
        after = json.loads((tmp_path / "e2e-host-1" / "agent.json").read_text())
        assert after["certificate_file"] != before["certificate_file"]
        assert not (tmp_path / "e2e-host-1" / before["key_file"]).exists()
        revoked = query(plane, "SELECT COUNT(*) FROM wvdportal_certificate WHERE common_name = ? "
                        "AND revoked_at IS NOT NULL", "e2e-host-1")
        assert revoked == [(1,)]

        # Frozen agent: its channel stays open but heartbeats stop; the beat task marks it Unavailable.
        frozen = agents["e2e-host-2"]
        os.killpg(frozen.pid, signal.SIGSTOP)
        time.sleep(HEARTBEAT_INTERVAL * MISSED_HEARTBEATS + 1)
        plane.manage("shell", "-c", "from hostagent.tasks import mark_missed_heartbeats; mark_missed_heartbeats()")
        assert host_row(plane, "e2e-host-2")[1:3] == ("unavailable", "No heartbeat for 2 intervals of 1 s.")
        os.killpg(frozen.pid, signal.SIGCONT)
        wait_for(status_is(plane, "e2e-host-2", "available"), "e2e-host-2 back after SIGCONT")

        # Killed agent: its channel closes, the host goes Unavailable; restarted (with the renewed
        # certificate), it comes back.
        os.killpg(agents["e2e-host-1"].pid, signal.SIGKILL)
        agents["e2e-host-1"].wait(timeout=30)
        wait_for(status_is(plane, "e2e-host-1", "unavailable"), "e2e-host-1 unavailable", serve_log)
        agents["e2e-host-1"] = start_agent(tmp_path / "e2e-host-1", rdp_listener.port, logs / "e2e-host-1.log")
        wait_for(status_is(plane, "e2e-host-1", "available"), "e2e-host-1 available again", logs / "e2e-host-1.log")
        assert host_row(plane, "e2e-host-2")[1] == "available"  # the other host never noticed

        # SIGTERM: the agent says goodbye, the host is Shut down, the agent exits 0.
        agents["e2e-host-1"].send_signal(signal.SIGTERM)
        assert agents["e2e-host-1"].wait(timeout=30) == 0
        wait_for(status_is(plane, "e2e-host-1", "shutdown"), "e2e-host-1 shut down")
        changes = query(plane, "SELECT old_status, new_status FROM broker_sessionhoststatuschange "
                        "WHERE session_host_id = ? ORDER BY at, id", host_id)
        assert changes == [("unavailable", "available"), ("available", "unavailable"),
                           ("unavailable", "available"), ("available", "shutdown")]
        agent_log = read_log(logs / "e2e-host-1.log")
        assert "online as e2e-host-1" in agent_log and "stopped (received SIGTERM)" in agent_log
        assert "Traceback" not in agent_log and "Traceback" not in read_log(serve_log)
    finally:
        for process in agents.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGCONT)
                stop_group(process, grace=10)


def test_an_oversized_frame_on_the_host_channel_is_refused_with_our_close_code(plane):
    """Under daphne, not just in a communicator: the close code must be one an application may send (it was
    1009, which daphne turned into 1011 "internal error")."""

    async def send_too_much() -> tuple[list[dict], int | None]:
        messages = []
        async with websockets.connect(plane.ws_url + "/ws/hostagent/", max_size=None, ssl=plane.ssl_context()) as ws:
            messages.append(json.loads(await ws.recv()))  # the challenge
            await ws.send(json.dumps({"type": "shutdown", "reason": "x" * hostchannel.MAX_FRAME_BYTES}))
            try:
                async for frame in ws:
                    messages.append(json.loads(frame))
            except websockets.ConnectionClosed:
                pass
            return messages, ws.close_code

    messages, close_code = asyncio.run(send_too_much())

    assert close_code == hostchannel.CLOSE_TOO_BIG == 4413
    assert messages[-1]["type"] == "error" and messages[-1]["code"] == 4413
    assert "Traceback" not in read_log(plane.log_dir / "serve.log")
